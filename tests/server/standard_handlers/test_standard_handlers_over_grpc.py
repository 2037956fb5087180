"""A TorchServe archive naming a standard handler registers unchanged and answers over gRPC as
TorchServe does, batched; a bad image in the batch fails alone with INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from grpc import aio

from modelfleet.protos import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc
from modelfleet.server.app import running_app
from modelfleet.server.settings import (
    AuthSettings,
    ModelSettings,
    NetworkSettings,
    Settings,
    ShutdownSettings,
    SourceSettings,
)

from mf_standard_archives import GOLDENS, archive_files, image, mar

GOLDEN = json.loads((GOLDENS / "goldens.json").read_text())["results"]


@pytest.mark.parametrize("mode", ["torchserve", "conventional"])
async def test_densenet_style_walkthrough_with_a_bad_image_in_the_batch(tmp_path: Path, mode: str) -> None:
    store = tmp_path / "store"
    store.mkdir()
    mar(
        store / "squeezenet1_1.mar",
        handler="image_classifier",
        model="classifier",
        files=archive_files("image_classifier"),
    )
    settings = Settings(
        network=NetworkSettings(inference_address="127.0.0.1:0", management_address="127.0.0.1:0"),
        auth=AuthSettings(enabled=False, enable_model_api=True, key_file=tmp_path / "keys.json"),
        sources=SourceSettings(model_store=store),
        models=ModelSettings(default_workers=1),
        shutdown=ShutdownSettings(drain_delay_s=0.0, grace_s=5.0),
        status_mode=mode,  # type: ignore[arg-type]
    )
    async with (
        running_app(settings) as app,
        aio.insecure_channel(app.management_address) as management_channel,
        aio.insecure_channel(app.inference_address) as inference_channel,
    ):
        management = management_pb2_grpc.ManagementAPIsServiceStub(management_channel)
        inference = inference_pb2_grpc.InferenceAPIsServiceStub(inference_channel)
        await management.RegisterModel(
            management_pb2.RegisterModelRequest(
                url="squeezenet1_1.mar", batch_size=4, max_batch_delay=200, initial_workers=1, synchronous=True
            )
        )

        async def predict(data: bytes) -> bytes:
            reply = await inference.Predictions(
                inference_pb2.PredictionsRequest(model_name="squeezenet1_1", input={"data": data}), timeout=30
            )
            return bytes(reply.prediction)

        good, bad, other = await asyncio.gather(
            predict(image("landscape.jpg")),
            predict(b"not an image at all"),
            predict(image("portrait.png")),
            return_exceptions=True,
        )
        assert isinstance(bad, aio.AioRpcError) and bad.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "not an image" in (bad.details() or "")
        for answer, case in ((good, "classifier_jpeg"), (other, "classifier_portrait_png")):
            assert isinstance(answer, bytes), answer
            parsed = json.loads(answer)
            expected = GOLDEN[case]["answers"][0]
            assert list(parsed) == list(expected)
            assert all(abs(parsed[label] - expected[label]) <= 1e-5 for label in expected)
        assert json.loads(await predict(image("landscape.jpg"))).keys() == json.loads(good).keys()  # still serving
