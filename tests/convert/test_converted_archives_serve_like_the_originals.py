"""Eager TorchServe archives (built by torch-model-archiver 0.12.0) converted, vetted and served like the originals.

Each archive is converted with modelfleet-convert, loaded by the server's own ModelLoader (which vets
TorchScript/torch.export files against the operator allow-list), registered in a real in-process server,
and its answers compared with the eager model's (fp32, atol 1e-4, rtol 1e-4). Converted models are
registered with the manifest's handler (handler "", as TorchServe clients register) and sent image
bytes or text the way TorchServe clients send them; the answers are TorchServe's output formats
(top-5 label -> probability, [H][W][class, probability], label -> box + score, label -> probability),
computed here from the eager original over the server's TorchServe preprocessing, which
tests/server/standard_handlers checks against TorchServe's own handler classes.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from modelfleet.convert.__main__ import main
from modelfleet.protos import management_pb2
from modelfleet.server.models.contracts import RegisterSpec, ResolvedSource
from modelfleet.server.models.handlers import vision
from modelfleet.server.models.loading import ModelLoader
from modelfleet.server.settings import ModelSettings

import mf_standin_models

TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}
PIXELS = 50_000_000
IMAGE = mf_standin_models.image_bytes({"size": [300, 260], "format": "JPEG", "pattern": 2})
"""An image as a TorchServe client sends it: an encoded file's bytes."""


def torchserve_crop(image: bytes) -> torch.Tensor:
    """[1, 3, 224, 224]: TorchServe's Resize(256), CenterCrop(224), ToTensor, Normalize (image_classifier/segmenter)."""
    picture = vision.open_rgb(image, max_pixels=PIXELS, handler="test", short_side=vision.RESIZE_SHORT_SIDE)
    return vision.imagenet_crop(picture, max_pixels=PIXELS)[None]


def convert(source: Path, output: Path, *args: str) -> int:
    return main([str(source), "-o", str(output), *args])


def manifest_of(archive: Path) -> dict[str, Any]:
    with zipfile.ZipFile(archive) as mar:
        manifest: dict[str, Any] = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        manifest["files"] = sorted(mar.namelist())
    return manifest


def loaded_by_the_server(archive: Path) -> str:
    """Vet and load the archive exactly as the server does; its serialized format."""
    loader = ModelLoader(ModelSettings())
    source = ResolvedSource(url=archive.as_uri(), path=archive)
    spec = RegisterSpec(url=archive.as_uri(), handler="default")
    identity = loader.identify(source, spec)
    loader.load(source, spec, identity)
    return identity.serialized_format


def converted_module(archive: Path, tmp_path: Path) -> Any:
    """The serialized file the server just vetted, read back for comparing structured outputs in-process."""
    name = manifest_of(archive)["model"]["serializedFile"]
    with zipfile.ZipFile(archive) as mar:
        path = tmp_path / f"read-back-{name}"
        path.write_bytes(mar.read(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.endswith(".pt2"):
            return torch.export.load(str(path)).module()
        return torch.jit.load(str(path))


def close(actual: Any, expected: Any) -> None:
    if isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            close(actual[key], expected[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for got, want in zip(actual, expected):
            close(got, want)
    else:
        torch.testing.assert_close(actual, expected, **TOLERANCE)


async def test_resnet_classifier_is_exported_keeps_image_classifier_and_answers_like_eager_over_grpc(
    zoo: Callable[..., Any], serve: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    original = zoo("resnet")
    async with serve() as served:
        output = served.store / "resnet18.mar"
        assert convert(original.mar, output) == 0
        report = capsys.readouterr().out
        assert "PATH TAKEN  torch.export -> model.pt2 (dynamic batch 1..1024)" in report
        assert "max |eager - converted| = " in report

        manifest = manifest_of(output)
        assert manifest["model"] == {
            "modelName": original.model_name,
            "serializedFile": "model.pt2",
            "handler": "image_classifier",
            "modelVersion": "1.0",
        }
        assert manifest["files"] == ["MAR-INF/MANIFEST.json", "index_to_name.json", "model.pt2"]
        assert loaded_by_the_server(output) == "export"
        with zipfile.ZipFile(output) as written:
            # Stored, so an exported program's zero example input never looks like a zip bomb to the server.
            assert written.getinfo("model.pt2").compress_type == zipfile.ZIP_STORED

        await served.register("resnet18.mar", handler="")  # the manifest's image_classifier
        answer = await served.predict_bytes(original.model_name, IMAGE)
        with torch.no_grad():
            probabilities = torch.softmax(original.eager(torchserve_crop(IMAGE)), dim=1)[0]
        top = torch.topk(probabilities, 5)
        assert list(answer) == [f"class_{i}" for i in top.indices.tolist()]
        torch.testing.assert_close(list(answer.values()), top.values.tolist(), **TOLERANCE)


async def test_segmenter_keeps_its_dict_output_answers_images_as_image_segmenter_and_serves_out_with_default(
    zoo: Callable[..., Any], serve: Callable[..., Any], tmp_path: Path
) -> None:
    original = zoo("segmenter")
    structured = tmp_path / "fcn.mar"
    assert convert(original.mar, structured) == 0
    assert manifest_of(structured)["model"]["handler"] == "image_segmenter"
    assert loaded_by_the_server(structured) == "export"
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))  # TorchServe crops to 224
    with torch.no_grad():
        expected = original.eager(images)
        close(converted_module(structured, tmp_path)(images), dict(expected))

    async with serve() as served:
        structured_in_store = served.store / "fcn.mar"
        structured_in_store.write_bytes(structured.read_bytes())
        await served.register("fcn.mar", handler="")  # the manifest's image_segmenter
        answer = torch.tensor(await served.predict_bytes(original.model_name, IMAGE))
        with torch.no_grad():
            probability, cls = torch.softmax(original.eager(torchserve_crop(IMAGE))["out"], dim=1)[0].max(dim=0)
        assert answer.shape == (224, 224, 2)  # TorchServe's [H][W][class, probability]
        assert torch.equal(answer[..., 0], cls.to(torch.float32))
        torch.testing.assert_close(answer[..., 1], probability, **TOLERANCE)
        await served.management.UnregisterModel(management_pb2.UnregisterModelRequest(model_name=original.model_name))

        assert convert(original.mar, served.store / "fcn-out.mar", "--select-output", "out") == 0
        await served.register("fcn-out.mar", handler="default")
        answer = await served.predict_raw(original.model_name, images)
        got = torch.from_numpy(np.frombuffer(answer, dtype=np.float32).copy()).view(2, 4, 224, 224)
        torch.testing.assert_close(got, expected["out"], **TOLERANCE)


async def test_detector_that_loops_over_the_batch_falls_back_to_torchscript_and_says_why(
    zoo: Callable[..., Any], serve: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = zoo("detector")
    async with serve() as served:
        output = served.store / "detector.mar"
        assert convert(original.mar, output) == 0
        report = capsys.readouterr().out
        assert "not taken   torch.export: " in report and "specialized it to be a constant" in report
        assert "PATH TAKEN  TorchScript (script) -> model.pt" in report
        manifest = manifest_of(output)
        assert manifest["model"]["handler"] == "object_detector"
        assert manifest["model"]["serializedFile"] == "model.pt"
        assert loaded_by_the_server(output) == "torchscript"

        images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            close(converted_module(output, tmp_path)(images), original.eager(images))
        await served.register("detector.mar", handler="")  # the manifest's object_detector
        answer = await served.predict_bytes(original.model_name, IMAGE)
        pixels = torch.from_numpy(np.array(Image.open(io.BytesIO(IMAGE)).convert("RGB")))
        with torch.no_grad():  # TorchServe's ObjectDetector: ToTensor only
            (found,) = original.eager(pixels.permute(2, 0, 1).to(torch.float32).div(255)[None])
        keep = found["scores"] >= 0.5
        labels, boxes, scores = (found[key][keep].tolist() for key in ("labels", "boxes", "scores"))
        assert labels, "the stand-in must find something above TorchServe's 0.5 threshold"
        names = {0: "class_0", 1: "class_1", 2: "class_2"}  # index_to_name.json; other labels as numbers
        assert [list(item) for item in answer] == [[names.get(label, str(label)), "score"] for label in labels]
        torch.testing.assert_close([list(item.values())[0] for item in answer], boxes, **TOLERANCE)
        torch.testing.assert_close([item["score"] for item in answer], scores, **TOLERANCE)


async def test_hf_model_with_a_custom_handler_is_converted_with_advice_and_answers_like_eager(
    zoo: Callable[..., Any], serve: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    original = zoo("hf")
    async with serve() as served:
        output = served.store / "bert.mar"
        assert convert(original.mar, output, "--select-output", "logits") == 0
        report = capsys.readouterr().out
        assert "inputs      int64 [N, 12], from setup_config.json max_length" in report
        assert "'handler.py' is custom code" in report and "--trusted-handlers" in report
        assert "handler.py: left out" in report
        manifest = manifest_of(output)
        assert manifest["model"]["handler"] == "default"
        assert "modelFile" not in manifest["model"]
        assert {"config.json", "setup_config.json", "vocab.txt", "index_to_name.json"} <= set(manifest["files"])
        assert "handler.py" not in manifest["files"] and "pytorch_model.bin" not in manifest["files"]

        await served.register("bert.mar")
        ids = torch.randint(0, 30, (2, 12), generator=torch.Generator().manual_seed(11))
        answer = await served.predict_raw(original.model_name, ids)
        got = torch.from_numpy(np.frombuffer(answer, dtype=np.float32).copy()).view(2, 3)
        with torch.no_grad():
            torch.testing.assert_close(got, original.eager(ids)["logits"], **TOLERANCE)


async def test_text_classifier_vocab_becomes_json_the_bag_model_exports_and_answers_text_as_text_classifier(
    zoo: Callable[..., Any], serve: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = zoo("text")
    output = tmp_path / "text.mar"
    assert convert(original.mar, output) == 0
    assert "PATH TAKEN  torch.export -> model.pt2 (dynamic text length)" in capsys.readouterr().out
    manifest = manifest_of(output)
    assert manifest["model"]["handler"] == "text_classifier"
    assert "source_vocab.pt" not in manifest["files"]
    with zipfile.ZipFile(output) as mar:
        vocab = json.loads(mar.read("source_vocab.json"))
    assert vocab["default_index"] == 0
    assert vocab["stoi"]["movie"] == 2 and len(vocab["stoi"]) == 12
    assert loaded_by_the_server(output) == "export"
    tokens, offsets = torch.tensor([1, 2, 3, 4, 11, 7, 0]), torch.tensor([0])
    with torch.no_grad():
        close(converted_module(output, tmp_path)(tokens, offsets), original.eager(tokens, offsets))

    async with serve() as served:
        (served.store / "text.mar").write_bytes(output.read_bytes())
        await served.register("text.mar", handler="")  # the manifest's text_classifier
        answer = await served.predict_bytes(original.model_name, b"The movie was GREAT, not bad!")
    # basic_english + bigrams: the words in the vocabulary; "great not" etc. are unknown (index 0).
    words = ["the", "movie", "was", "great", "not", "bad"]
    bigrams = [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    ids = [vocab["stoi"].get(token, 0) for token in words + bigrams]
    with torch.no_grad():
        probabilities = torch.softmax(original.eager(torch.tensor(ids), torch.tensor([0])), dim=1)[0]
    assert list(answer) == [f"class_{i}" for i in range(4)]  # every class, TorchServe's TextClassifier
    torch.testing.assert_close(list(answer.values()), probabilities.tolist(), **TOLERANCE)


def test_a_tgz_archive_converts_like_a_mar(zoo: Callable[..., Any], tmp_path: Path) -> None:
    original = zoo("text", archive_format="tgz")
    output = tmp_path / "text.mar"
    assert convert(original.mar, output) == 0
    assert manifest_of(output)["model"]["modelName"] == original.model_name
    assert loaded_by_the_server(output) == "export"


def test_an_unpacked_model_folder_converts_to_a_model_folder_the_server_loads(
    zoo: Callable[..., Any], tmp_path: Path
) -> None:
    original = zoo("segmenter", archive_format="no-archive")
    assert original.mar.is_dir()
    output = tmp_path / "fcn-folder"
    assert convert(original.mar, output) == 0
    manifest = json.loads((output / "MAR-INF" / "MANIFEST.json").read_text())
    assert manifest["model"]["modelName"] == original.model_name
    assert (output / "model.pt2").is_file() and (output / "index_to_name.json").is_file()
    assert loaded_by_the_server(output) == "export"
