"""The server's configured response limit reaches the handlers: an answer over it is refused before it is
built (RESOURCE_EXHAUSTED, MESSAGE_TOO_LARGE, naming the limit), and the model keeps serving small ones."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import grpc
import torch

from modelfleet.protos import inference_pb2
from modelfleet.server.settings import NetworkSettings


class Repeat(torch.nn.Module):
    """Each input element comes back `times` times: a small request, a large answer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        times = int(x[0, 0].item())
        return x.repeat(1, times)


async def test_an_answer_over_the_configured_send_limit_is_refused_and_small_ones_still_work(
    start_api: Any, model_store: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(Repeat()).save(str(model_store / "repeat.pt"))
    network = dataclasses.replace(
        NetworkSettings(inference_address="127.0.0.1:0", management_address="127.0.0.1:0"),
        max_send_message_bytes=64 * 1024,
    )
    async with start_api(network=network, status_mode="conventional") as api:
        await api.register("repeat.pt", model_name="repeat")

        failure = await api.failure(
            api.inference.Predictions(
                inference_pb2.PredictionsRequest(model_name="repeat", input={"data": b"[[50000.0, 1.0]]"}), timeout=30
            )
        )
        assert failure.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert failure.reason == "MESSAGE_TOO_LARGE"
        assert "65536" in failure.details or "65,536" in failure.details

        reply = await api.inference.Predictions(
            inference_pb2.PredictionsRequest(model_name="repeat", input={"data": b"[[2.0, 1.0]]"}), timeout=30
        )
        assert json.loads(reply.prediction) == [[2.0, 1.0, 2.0, 1.0]]
