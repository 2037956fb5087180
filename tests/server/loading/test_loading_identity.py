"""Name, version and handler of a source, read from its manifest or file name without loading it."""

from __future__ import annotations

from typing import Any

import pytest

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec, ResolvedSource
from modelfleet.server.models.loading import ModelLoader
from modelfleet.server.settings import ModelSettings


def mar_with(models: Any, **model: str) -> Any:
    model.setdefault("serializedFile", "tiny.pt")
    return models.mar(
        "m.mar",
        {
            "MAR-INF/MANIFEST.json": models.manifest(**model),
            "tiny.pt": models.torchscript().read_bytes(),
        },
    )


def test_archive_version_comes_from_its_manifest(models: Any, identify: Any) -> None:
    identity = identify(mar_with(models, modelName="tiny", handler="default", modelVersion="2.5"), version_hint="9.9")
    assert (identity.name, identity.version, identity.serialized_format) == ("tiny", "2.5", "torchscript")


def test_archive_without_model_version_is_version_1_0(models: Any, identify: Any) -> None:
    assert identify(mar_with(models, modelName="tiny", handler="default")).version == "1.0"


def test_bare_file_version_comes_from_the_url_fragment(models: Any, identify: Any) -> None:
    assert identify(models.torchscript("tiny.pt"), version_hint="3.0+cpu").version == "3.0+cpu"
    assert identify(models.export("tiny.pt2"), version_hint="7").version == "7"


def test_bare_file_without_fragment_is_version_1_0(models: Any, identify: Any) -> None:
    assert identify(models.torchscript("tiny.pt")).version == "1.0"


def test_expected_version_that_differs_is_a_version_mismatch(models: Any, identify: Any) -> None:
    mar = mar_with(models, modelName="tiny", handler="default", modelVersion="2.0")
    assert identify(mar, expected_version="2.0").version == "2.0"
    with pytest.raises(ModelFleetError) as caught:
        identify(mar, expected_version="3.0")
    error = caught.value
    assert (error.kind, error.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.VERSION_MISMATCH)
    assert error.metadata == {"expected": "3.0", "actual": "2.0"}


@pytest.mark.parametrize("version", ["all", "1/2", "-1", "a" * 64])
def test_invalid_manifest_version_is_refused(models: Any, identify: Any, version: str) -> None:
    with pytest.raises(ModelFleetError) as caught:
        identify(mar_with(models, modelName="tiny", handler="default", modelVersion=version))
    assert caught.value.reason is Reason.INVALID_NAME


def test_model_name_overrides_the_manifest_and_the_file_stem(models: Any, identify: Any) -> None:
    assert identify(mar_with(models, modelName="tiny", handler="default"), model_name="renamed").name == "renamed"
    assert identify(models.torchscript("tiny.pt"), model_name="other").name == "other"


def test_bare_file_name_is_its_stem(models: Any, identify: Any) -> None:
    assert identify(models.export("resnet-18.v2.pt2")).name == "resnet-18.v2"


def test_unusable_file_stem_asks_for_model_name(models: Any, identify: Any) -> None:
    path = models.torchscript("my model.pt")
    with pytest.raises(ModelFleetError) as caught:
        identify(path)
    assert caught.value.reason is Reason.INVALID_NAME and "pass model_name" in caught.value.message
    assert identify(path, model_name="mine").name == "mine"


def test_invalid_model_name_override_is_refused(models: Any, identify: Any) -> None:
    with pytest.raises(ModelFleetError) as caught:
        identify(models.torchscript("tiny.pt"), model_name="a/b")
    assert caught.value.reason is Reason.INVALID_NAME


@pytest.mark.parametrize("handler", ["", "default"])
def test_empty_and_default_handler_are_the_builtin_tensor_handler(models: Any, identify: Any, handler: str) -> None:
    assert identify(mar_with(models, modelName="tiny", handler=handler)).handler_name == "default"


@pytest.mark.parametrize("handler", ["handler.py", "densenet_handler", "my_module:handle", "os"])
def test_handler_neither_builtin_nor_trusted_is_refused(models: Any, identify: Any, handler: str) -> None:
    for spec_handler, manifest_handler in ((handler, "default"), ("", handler)):
        mar = mar_with(models, modelName="tiny", handler=manifest_handler)
        with pytest.raises(ModelFleetError) as caught:
            identify(mar, handler=spec_handler)
        error = caught.value
        assert (error.kind, error.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.HANDLER_NOT_ALLOWED)
        assert "never executed" in error.message and "--trusted-handlers" in error.message


def test_request_handler_overrides_the_manifest_handler(models: Any, identify: Any) -> None:
    mar = mar_with(models, modelName="tiny", handler="handler.py")
    assert identify(mar, handler="default").handler_name == "default"


def test_trusted_handler_name_is_accepted_without_importing_it(models: Any) -> None:
    loader = ModelLoader(ModelSettings(trusted_handlers=("not_installed_anywhere",)))
    path = models.torchscript("tiny.pt")
    spec = RegisterSpec(url="tiny.pt", handler="not_installed_anywhere")
    identity = loader.identify(ResolvedSource(url="tiny.pt", path=path), spec)
    assert identity.handler_name == "not_installed_anywhere"
    with pytest.raises(ModelFleetError) as caught:
        loader.load(ResolvedSource(url="tiny.pt", path=path), spec, identity)
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.INTERNAL, Reason.LOAD_FAILED)
    assert "could not be imported" in caught.value.message


def test_missing_source_is_source_not_found(models: Any, identify: Any) -> None:
    with pytest.raises(ModelFleetError) as caught:
        identify(models.root / "absent.pt")
    assert caught.value.reason is Reason.SOURCE_NOT_FOUND
