"""A name or version longer than any registrable one is bad input on every lookup, answered briefly.

Issue 10, finding 4: a 2 MB model name got RESOURCE_EXHAUSTED (the NOT_FOUND answer echoed all of
it) instead of a short refusal. The length is checked before any lookup, and the message quotes
at most a few hundred characters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.registry import ModelRegistry

HUGE = "m" * (2 * 1024 * 1024)
MESSAGE_MAX = 400


async def _drain(call: Any) -> list[Any]:
    return [reply async for reply in call]


def calls(api: Any, name: str, version: str) -> list[tuple[str, Callable[[], Any]]]:
    """(RPC, a function starting the call): started one at a time, so a failure leaves none unawaited."""
    m, mg = management_pb2, api.management
    predict = inference_pb2.PredictionsRequest(model_name=name, model_version=version, input={"data": b"[1]"})
    key = {"model_name": name, "model_version": version}
    return [
        ("Predictions", lambda: api.inference.Predictions(predict)),
        ("StreamPredictions", lambda: _drain(api.inference.StreamPredictions(predict))),
        ("DescribeModel", lambda: mg.DescribeModel(m.DescribeModelRequest(**key))),
        ("ScaleWorker", lambda: mg.ScaleWorker(m.ScaleWorkerRequest(**key))),
        ("SetDefault", lambda: mg.SetDefault(m.SetDefaultRequest(model_name=name, model_version=version or "1.0"))),
        ("UnregisterModel", lambda: mg.UnregisterModel(m.UnregisterModelRequest(**key))),
    ]  # fmt: skip


async def test_a_2_mb_model_name_or_version_is_invalid_argument_with_a_short_message_in_both_modes(
    api: Any, make_model: Callable[..., Any]
) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt")
    before = await api.snapshot()
    for name, version, field in ((HUGE, "", "model_name"), ("tiny", HUGE, "model_version")):
        for method, call in calls(api, name, version):
            got = await api.failure(call())
            assert (got.code, got.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME"), method
            assert len(got.details) < MESSAGE_MAX, method
            assert "characters" in got.details and got.metadata == {"field": field}, method
    assert await api.snapshot() == before
    assert len(await api.predict("tiny")) == 4


async def test_a_64_character_name_is_refused_before_the_lookup(registries: Any) -> None:
    registry: ModelRegistry = registries.new()
    for lookup in (
        lambda: registry.get("n" * 64),
        lambda: registry.describe("n" * 64, None),
        lambda: registry.set_default("tiny", "v" * 64),
    ):
        with pytest.raises(ModelFleetError) as raised:
            lookup()
        assert (raised.value.kind, raised.value.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.INVALID_NAME)
    with pytest.raises(ModelFleetError) as raised:
        registry.get("n" * 63)
    assert raised.value.reason is Reason.MODEL_NOT_FOUND
