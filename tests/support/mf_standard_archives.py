"""The standard handler tests' archives: the stand-in models packed as TorchServe would pack them
(.mar with MANIFEST, index_to_name.json, source_vocab.json), and the golden cases and inputs."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

import mf_standin_models

HERE = Path(__file__).resolve().parents[1] / "server/standard_handlers"
GOLDENS = HERE / "goldens"
CASES = json.loads((HERE / "golden_cases.json").read_text())
VOCAB = json.loads((GOLDENS / "source_vocab.json").read_text())


def scripted_bytes(model: str) -> bytes:
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit.*; TorchServe users have such files
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        module = mf_standin_models.scripted(model, vocab_size=len(VOCAB["stoi"]))
        buffer = io.BytesIO()
        torch.jit.save(module, buffer)
    return buffer.getvalue()


def exported_bytes(model: str) -> bytes:
    """The stand-in image model as a torch.export program (.pt2) with a dynamic batch dimension."""
    module = {"classifier": mf_standin_models.Classifier, "segmenter": mf_standin_models.Segmenter}[model]().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(module, (torch.zeros(2, 3, 224, 224),), dynamic_shapes={"x": {0: batch}})
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def mar(path: Path, *, handler: str, model: str, files: dict[str, bytes], exported: bool = False) -> Path:
    """A .mar as torch-model-archiver 0.12 writes it for a TorchScript (or .pt2) model and a standard handler."""
    serialized = "model.pt2" if exported else "model.pt"
    manifest = {
        "createdOn": "24/11/2025 14:46:00",
        "runtime": "python",
        "model": {"modelName": path.stem, "serializedFile": serialized, "handler": handler, "modelVersion": "1.0"},
        "archiverVersion": "0.12.0",
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest, indent=2))
        # Stored, not deflated: a .pt2 carries its zero example input, which deflates past the server's
        # 100:1 zip-bomb ratio (its own zip already compresses what can be).
        archive.writestr(serialized, exported_bytes(model) if exported else scripted_bytes(model), zipfile.ZIP_STORED)
        for name, data in files.items():
            archive.writestr(name, data)
    return path


LABEL_SETS = {"image_classifier": "classifier", "object_detector": "detector", "text_classifier": "text"}


def archive_files(handler: str, *, labels: bool = True) -> dict[str, bytes]:
    """The extra files TorchServe's archive for `handler` carries in the golden cases."""
    files: dict[str, bytes] = {}
    label_set = LABEL_SETS.get(handler)
    if label_set and labels:
        files["index_to_name.json"] = json.dumps(CASES["labels"][label_set]).encode()
    if handler == "text_classifier":
        files["source_vocab.json"] = (GOLDENS / "source_vocab.json").read_bytes()
    return files


def image(name: str) -> bytes:
    return (GOLDENS / "inputs" / name).read_bytes()


def as_json(answer: Any) -> Any:
    assert isinstance(answer, bytes), answer
    return json.loads(answer)
