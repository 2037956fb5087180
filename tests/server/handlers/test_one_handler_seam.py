"""Every handler is one ModelHandler made the same way: a hooks module gets its archive's extra files
at load, and a built-in hooks module slots in with one table entry, with no change to the loader."""

from __future__ import annotations

import importlib
import json
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ModelFleetError, Reason
from modelfleet.server.models import handlers
from modelfleet.server.models.contracts import RegisterSpec, ResolvedSource
from modelfleet.server.models.loading import ModelLoader
from modelfleet.server.settings import ModelSettings

LABELLED = """
import json


class Labelled:
    def __init__(self, labels):
        self.labels = labels

    def postprocess(self, output):
        return json.dumps([self.labels[str(int(i))] for i in output.argmax(dim=-1).reshape(-1)]).encode()


def initialize(context):
    SEEN.append((context.name, context.handler_name, context.manifest.model_version, context.files.names()))
    return Labelled(json.loads(context.files.read("index_to_name.json")))


SEEN = []
"""


class Pick(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def write_mar(path: Path, handler: str, *, extra: dict[str, bytes]) -> Path:
    manifest = {"model": {"modelName": "picker", "modelVersion": "2.0", "serializedFile": "m.pt", "handler": handler}}
    model = path.parent / "m.pt"
    torch.jit.script(Pick()).save(str(model))
    with zipfile.ZipFile(path, "w") as mar:
        mar.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        mar.write(model, "m.pt")
        for name, data in extra.items():
            mar.writestr(name, data)
    return path


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> Any:
    name = f"mf_seam_handler_{uuid.uuid4().hex[:12]}"
    (tmp_path / "site").mkdir(exist_ok=True)
    (tmp_path / "site" / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    module = importlib.import_module(name)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def load(path: Path, loader: ModelLoader) -> Any:
    source = ResolvedSource(url=path.name, path=path)
    spec = RegisterSpec(url=path.name)
    return loader.load(source, spec, loader.identify(source, spec))


LABELS = json.dumps({"0": "cat", "1": "dog", "2": "fox"}).encode()


def test_a_trusted_hooks_module_reads_its_archives_labels_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = install(tmp_path, monkeypatch, LABELLED)
    mar = write_mar(tmp_path / "picker.mar", module.__name__, extra={"index_to_name.json": LABELS})
    loaded = load(mar, ModelLoader(ModelSettings(trusted_handlers=(module.__name__,))))
    [answer] = loaded.make_runner("cpu").run_batch([{"data": json.dumps([[0.1, 0.9, 0.0], [0.0, 0.0, 5.0]]).encode()}])
    assert json.loads(answer) == ["dog", "fox"]
    assert [("picker", module.__name__, "2.0", ["index_to_name.json"])] == module.SEEN


def test_a_missing_extra_file_fails_the_load_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = install(tmp_path, monkeypatch, LABELLED)
    mar = write_mar(tmp_path / "picker.mar", module.__name__, extra={})
    with pytest.raises(ModelFleetError) as caught:
        load(mar, ModelLoader(ModelSettings(trusted_handlers=(module.__name__,))))
    assert "index_to_name.json" in caught.value.message and caught.value.reason is Reason.UNSUPPORTED_FORMAT


def test_a_built_in_hooks_module_needs_only_its_table_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = install(tmp_path, monkeypatch, LABELLED)
    monkeypatch.setitem(handlers._BUILTINS, "labelled_classifier", handlers.Builtin(module.__name__))
    monkeypatch.setattr(handlers, "BUILTIN_NAMES", frozenset(handlers._BUILTINS))
    mar = write_mar(tmp_path / "picker.mar", "labelled_classifier", extra={"index_to_name.json": LABELS})
    loaded = load(mar, ModelLoader(ModelSettings()))  # not listed as trusted: it is built in
    assert (loaded.handler_name, loaded.load_info.handler_kind) == ("labelled_classifier", "builtin")
    [answer] = loaded.make_runner("cpu").run_batch([{"data": json.dumps([[3.0, 0.0, 0.0]]).encode()}])
    assert json.loads(answer) == ["cat"]


def test_the_generation_handler_is_made_by_its_own_module_like_any_other(tmp_path: Path) -> None:
    from modelfleet.server.models.generation import GenerationHandler

    path = tmp_path / "gen.pt"
    torch.jit.script(Pick()).save(str(path))
    source = ResolvedSource(url="gen.pt", path=path)
    spec = RegisterSpec(url="gen.pt", handler="generation")
    loader = ModelLoader(ModelSettings(max_new_tokens=3))
    loaded = loader.load(source, spec, loader.identify(source, spec))
    assert isinstance(loaded.handler, GenerationHandler) and loaded.handler.streams and not loaded.handler.stateful
    loaded.make_runner("cpu")  # the worker path goes through handlers/generation.py's create(), not a special case
    assert list(loaded.handler.engines) == ["cpu"]
    loaded.handler.close()
