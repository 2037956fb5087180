"""Every supported format loads and predicts what the model computes; unsupported ones are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.loading import ModelLoader
from modelfleet.server.settings import ModelSettings


def predict(loaded: Any, sample: list[float]) -> torch.Tensor:
    [result] = loaded.make_runner("cpu").run_batch([{"data": json.dumps(sample).encode()}])
    assert isinstance(result, bytes), result
    return torch.tensor(json.loads(result))


def expected(models: Any, sample: list[float]) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = models.eager()(torch.tensor([sample]))[0]
        return out


SAMPLE = [0.1 * i for i in range(16)]


def test_torchscript_file_loads_and_predicts(models: Any, load: Any) -> None:
    loaded = load(models.torchscript("tiny.pt"))
    assert (loaded.name, loaded.version, loaded.serialized_format, loaded.handler_name) == (
        "tiny",
        "1.0",
        "torchscript",
        "default",
    )
    assert loaded.load_info.engine == "torchscript" and loaded.load_info.runtime == "python"
    assert torch.allclose(predict(loaded, SAMPLE), expected(models, SAMPLE), atol=1e-6)


def test_export_program_loads_and_predicts(models: Any, load: Any) -> None:
    loaded = load(models.export("tiny.pt2"))
    assert (loaded.name, loaded.serialized_format) == ("tiny", "export")
    assert torch.allclose(predict(loaded, SAMPLE), expected(models, SAMPLE), atol=1e-6)


@pytest.mark.parametrize("serialized", ["tiny.pt", "tiny.pt2"])
def test_mar_archive_loads_its_serialized_file(models: Any, load: Any, serialized: str) -> None:
    model_file = models.torchscript(serialized) if serialized.endswith(".pt") else models.export(serialized)
    mar = models.mar(
        "tiny.mar",
        {
            "MAR-INF/MANIFEST.json": models.manifest(
                modelName="tinymar", serializedFile=serialized, handler="default", modelVersion="2.0"
            ),
            serialized: model_file.read_bytes(),
        },
    )
    loaded = load(mar)
    assert (loaded.name, loaded.version, loaded.load_info.layout) == ("tinymar", "2.0", "mar")
    assert torch.allclose(predict(loaded, SAMPLE), expected(models, SAMPLE), atol=1e-6)


def test_mar_extraction_leaves_nothing_behind(models: Any, load: Any, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    mar = models.mar(
        "tiny.mar",
        {
            "MAR-INF/MANIFEST.json": models.manifest(modelName="tiny", serializedFile="tiny.pt", handler=""),
            "tiny.pt": models.torchscript().read_bytes(),
        },
    )
    loaded = load(mar, loader_=ModelLoader(ModelSettings(), work_dir=work))
    assert list(work.iterdir()) == []
    assert torch.allclose(predict(loaded, SAMPLE), expected(models, SAMPLE), atol=1e-6)


def test_mar_member_over_the_extraction_limit_is_refused(models: Any, load: Any) -> None:
    mar = models.mar(
        "tiny.mar",
        {
            "MAR-INF/MANIFEST.json": models.manifest(modelName="tiny", serializedFile="tiny.pt", handler="default"),
            "tiny.pt": models.torchscript().read_bytes(),
        },
    )
    with pytest.raises(ModelFleetError) as caught:
        load(mar, loader_=ModelLoader(ModelSettings(), max_extract_bytes=1000))
    assert caught.value.reason is Reason.LOAD_FAILED
    assert "extraction limit" in caught.value.message


def test_model_folder_with_manifest_loads(models: Any, load: Any) -> None:
    folder = models.folder(
        "tinydir",
        {
            "MAR-INF/MANIFEST.json": models.manifest(
                modelName="tinydir", serializedFile="weights/tiny.pt2", handler="default", modelVersion="3.1"
            ),
            "weights/tiny.pt2": models.export().read_bytes(),
        },
    )
    loaded = load(folder)
    assert (loaded.name, loaded.version, loaded.serialized_format, loaded.load_info.layout) == (
        "tinydir",
        "3.1",
        "export",
        "folder",
    )
    assert torch.allclose(predict(loaded, SAMPLE), expected(models, SAMPLE), atol=1e-6)


TRUSTED_TINY = '''
"""A trusted handler installed in the image: builds the architecture for safetensors weights."""
import torch

def build_model():
    return torch.nn.Sequential(torch.nn.Linear(16, 4))
'''


def test_safetensors_weights_load_with_a_trusted_model_class(models: Any, load: Any) -> None:
    handler = models.trusted_module(TRUSTED_TINY)
    weights = models.root / "tiny.safetensors"
    save_file(models.eager().state_dict(), str(weights))
    loader = ModelLoader(ModelSettings(trusted_handlers=(handler,)))
    loaded = load(weights, loader_=loader, handler=handler)
    assert (loaded.name, loaded.serialized_format, loaded.handler_name) == ("tiny", "safetensors", handler)
    assert loaded.load_info.handler_kind == "trusted"
    assert torch.allclose(predict(loaded, SAMPLE), expected(models, SAMPLE), atol=1e-6)


def test_safetensors_weights_that_do_not_fit_the_class_fail_to_load(models: Any, load: Any) -> None:
    handler = models.trusted_module(TRUSTED_TINY)
    weights = models.root / "tiny.safetensors"
    save_file({**models.eager().state_dict(), "extra.weight": torch.zeros(2)}, str(weights))
    loader = ModelLoader(ModelSettings(trusted_handlers=(handler,)))
    with pytest.raises(ModelFleetError) as caught:
        load(weights, loader_=loader, handler=handler)
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.INTERNAL, Reason.LOAD_FAILED)
    assert "extra.weight" in caught.value.message and "Traceback" not in caught.value.message


def test_safetensors_without_a_trusted_handler_is_refused(models: Any, identify: Any) -> None:
    weights = models.root / "tiny.safetensors"
    save_file(models.eager().state_dict(), str(weights))
    with pytest.raises(ModelFleetError) as caught:
        identify(weights)
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT
    assert "--trusted-handlers" in caught.value.message


def test_eager_mode_archive_is_refused_with_how_to_convert(models: Any, identify: Any) -> None:
    mar = models.mar(
        "eager.mar",
        {
            "MAR-INF/MANIFEST.json": models.manifest(
                modelName="eager", serializedFile="model.pth", handler="default", modelFile="model.py"
            ),
            "model.py": b"import torch\nclass Net(torch.nn.Module): pass\n",
            "model.pth": b"not read",
        },
    )
    with pytest.raises(ModelFleetError) as caught:
        identify(mar)
    error = caught.value
    assert (error.kind, error.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)
    assert "torch.jit.script" in error.message and "torch.export.save" in error.message


@pytest.mark.parametrize("file_name", ["model.pth", "model.bin"])
def test_bare_eager_checkpoint_is_refused(models: Any, identify: Any, file_name: str) -> None:
    path = models.root / file_name
    torch.save(models.eager().state_dict(), path)
    with pytest.raises(ModelFleetError) as caught:
        identify(path)
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT and "torch.jit.script" in caught.value.message


def test_pickled_checkpoint_named_pt_is_refused_not_unpickled(models: Any, identify: Any) -> None:
    path = models.root / "model.pt"
    torch.save(models.eager(), path)  # a whole pickled module: loading it would run code
    with pytest.raises(ModelFleetError) as caught:
        identify(path)
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT and "torch.save" in caught.value.message


def test_corrupt_torchscript_is_refused_as_corrupt_before_torch_reads_it(models: Any, load: Any) -> None:
    good = models.torchscript("good.pt")
    broken = models.root / "broken.pt"
    import zipfile

    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[: len(data) // 2] if info.filename.endswith(".py") else data)
    with pytest.raises(ModelFleetError) as caught:
        load(broken)
    error = caught.value
    assert (error.kind, error.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)
    assert error.message.startswith("broken.pt: this TorchScript model cannot be loaded safely")
    assert "is corrupt" in error.message
    assert "Traceback" not in error.message and "frame #" not in error.message


@pytest.mark.parametrize("file_name", ["model.onnx", "model.tar.gz", "model.zip"])
def test_other_files_are_unsupported_formats(models: Any, identify: Any, file_name: str) -> None:
    path = models.root / file_name
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelFleetError) as caught:
        identify(path)
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT


def test_folder_without_manifest_is_unsupported(models: Any, identify: Any) -> None:
    folder = models.folder("plain", {"tiny.pt": models.torchscript().read_bytes()})
    with pytest.raises(ModelFleetError) as caught:
        identify(folder)
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"this is a text file, not a model\n", "corrupt, or not a model file at all"),
        (b"", "corrupt, or not a model file at all"),
        ("truncated", "truncated or corrupt zip archive"),
    ],
    ids=["text", "empty", "truncated"],
)
def test_a_corrupt_pt_is_called_corrupt_not_a_pickle(models: Any, identify: Any, content: Any, said: str) -> None:
    path = models.root / "broken.pt"
    path.write_bytes(models.torchscript().read_bytes()[:200] if content == "truncated" else content)
    with pytest.raises(ModelFleetError) as caught:
        identify(path)
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT
    assert said in caught.value.message
    assert "pickled" not in caught.value.message and "Convert it" not in caught.value.message
