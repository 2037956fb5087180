"""TorchServe 0.12's test_gRPC_inference_api.test_inference_apis, ported for its zoo's standard handler kinds.

Each case is the suite's own flow: RegisterModel(url, initial_workers=1, synchronous=True, model_name),
Predictions with the image file's raw bytes under "data", the answer parsed as the suite parses it,
then UnregisterModel. The zoo archives are stand-ins (see conftest.py): the expected numbers are the
eager original's, through TorchServe's preprocessing (reproduced in the server's vision module,
checked against TorchServe's own handler classes by tests/server/standard_handlers).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.models.handlers import vision

import mf_standin_models

KITTEN = mf_standin_models.image_bytes({"size": [720, 720], "format": "JPEG", "pattern": 3})
"""Stands in for examples/image_classifier/kitten.jpg (a 720 x 720 JPEG)."""
PERSONS = mf_standin_models.image_bytes({"size": [640, 491], "format": "JPEG", "pattern": 5})
"""Stands in for examples/{image_segmenter,object_detector}/persons.jpg (640 x 491 JPEGs)."""
TOLERANCE_PERCENT = 5
"""inference_data.json's "tolerance" for the image classifiers: per-label relative change, in percent."""
LIMIT = 50_000_000


async def register_predict_unregister(suite: Any, url: str, model_name: str, image: bytes) -> Any:
    """The suite's loop body for one inference_data.json item; the parsed prediction."""
    registered = await suite.management.RegisterModel(
        management_pb2.RegisterModelRequest(url=url, initial_workers=1, synchronous=True, model_name=model_name),
        timeout=120,
    )
    assert registered.msg == f'Model "{model_name}" Version: 1.0 registered with 1 initial workers'
    reply = await suite.inference.Predictions(
        inference_pb2.PredictionsRequest(model_name=model_name, input={"data": image}), timeout=60
    )
    text = reply.prediction.decode("utf-8")
    assert text == json.dumps(json.loads(text), indent=2)  # TorchServe's JSON, byte for byte
    unregistered = await suite.management.UnregisterModel(
        management_pb2.UnregisterModelRequest(model_name=model_name), timeout=60
    )
    assert unregistered.msg == f'Model "{model_name}" unregistered'
    return json.loads(text)


def classifier_expectation(model: torch.nn.Module, labels: dict[str, str], image: bytes) -> dict[str, float]:
    """The eager original's top 5 over TorchServe's Resize(256) / CenterCrop(224) / Normalize."""
    picture = vision.open_rgb(image, max_pixels=LIMIT, handler="test", short_side=vision.RESIZE_SHORT_SIDE)
    with torch.no_grad():
        probabilities = torch.softmax(model(vision.imagenet_crop(picture, max_pixels=LIMIT)[None]), dim=1)
    top = torch.topk(probabilities, 5, dim=1)
    return {labels[str(i)]: p for i, p in zip(top.indices[0].tolist(), top.values[0].tolist(), strict=True)}


def relative_change(current: float, previous: float) -> float:
    """The suite's __get_change."""
    return 0.0 if current == previous else abs(current - previous) / previous * 100.0


@pytest.mark.parametrize("source", ["store", "url"])
async def test_densenet161_converted_from_eager_or_scripted_answers_kitten_as_torchserve_does(
    zoo: Any, torchserve_like: Callable[..., Any], mar_files_url: str, source: str
) -> None:
    name = "densenet161" if source == "store" else "densenet161_scripted"
    model = zoo.models[name]
    url = model.file_name if source == "store" else mar_files_url + model.file_name
    async with torchserve_like(allowed=(mar_files_url.replace(".", r"\.") + ".*",)) as suite:
        prediction = await register_predict_unregister(suite, url, name, KITTEN)
    expected = classifier_expectation(model.eager, model.labels, KITTEN)
    assert isinstance(prediction, dict) and list(prediction) == list(expected)
    assert all(relative_change(prediction[k], expected[k]) < TOLERANCE_PERCENT for k in prediction)
    torch.testing.assert_close(list(prediction.values()), list(expected.values()), atol=1e-5, rtol=1e-4)


async def test_fcn_resnet_101_converted_answers_persons_with_torchserves_class_and_probability_per_pixel(
    zoo: Any, torchserve_like: Callable[..., Any]
) -> None:
    model = zoo.models["fcn_resnet_101"]
    async with torchserve_like() as suite:
        prediction = await register_predict_unregister(suite, model.file_name, "fcn_resnet_101", PERSONS)
    picture = vision.open_rgb(PERSONS, max_pixels=LIMIT, handler="test", short_side=vision.RESIZE_SHORT_SIDE)
    with torch.no_grad():
        out = torch.softmax(model.eager(vision.imagenet_crop(picture, max_pixels=LIMIT)[None])["out"], dim=1)[0]
    got = torch.tensor(prediction)
    assert got.shape == (224, 224, 2)  # TorchServe's ImageSegmenter: [H][W][class, probability]
    probability, cls = out.max(dim=0)
    assert torch.equal(got[..., 0], cls.to(torch.float32))
    torch.testing.assert_close(got[..., 1], probability, atol=1e-5, rtol=1e-4)


async def test_fastrcnn_converted_answers_persons_with_torchserves_label_box_score_list(
    zoo: Any, torchserve_like: Callable[..., Any]
) -> None:
    model = zoo.models["fastrcnn"]
    async with torchserve_like() as suite:
        prediction = await register_predict_unregister(suite, model.file_name, "fastrcnn", PERSONS)
    image = torch.from_numpy(np.array(Image.open(io.BytesIO(PERSONS)).convert("RGB")))
    with torch.no_grad():  # ObjectDetector: ToTensor only, no resize
        (found,) = model.eager(image.permute(2, 0, 1).to(torch.float32).div(255)[None])
    keep = found["scores"] >= 0.5
    expected = [
        {model.labels[str(label)]: box, "score": score}
        for label, box, score in zip(found["labels"][keep].tolist(), found["boxes"][keep].tolist(),
                                     found["scores"][keep].tolist(), strict=True)
    ]  # fmt: skip
    assert expected, "the stand-in must find something above TorchServe's 0.5 threshold"
    assert [list(item) for item in prediction] == [list(item) for item in expected]
    for got, want in zip(prediction, expected, strict=True):
        torch.testing.assert_close(list(got.values())[0], list(want.values())[0], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(got["score"], want["score"], atol=1e-5, rtol=1e-4)


async def test_an_archive_missing_from_the_download_site_is_refused_with_the_http_status(
    torchserve_like: Callable[..., Any], mar_files_url: str
) -> None:
    """inference_data.json's custom-handler archives (mnist_v2, the HF ones) cannot be stood in: this is
    what registering one that is not there answers."""
    async with torchserve_like(allowed=(mar_files_url.replace(".", r"\.") + ".*",)) as suite:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await suite.management.RegisterModel(
                management_pb2.RegisterModelRequest(
                    url=mar_files_url + "mnist_v2.mar", initial_workers=1, synchronous=True, model_name="mnist"
                ),
                timeout=60,
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().endswith("mnist_v2.mar' failed: HTTP status 404")
