"""Bad input on every RPC → the right code and reason, the server stays up, and no state changes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.settings import NetworkSettings

C = grpc.StatusCode
INVALID = (C.INVALID_ARGUMENT,)


@pytest.fixture
async def served(api: Any, make_model: Callable[..., Any]) -> AsyncIterator[Any]:
    """The api with tiny 1.0 (default) and 2.0 registered."""
    make_model("tiny.pt")
    await api.register("tiny.pt#version=1.0", model_name="tiny")
    await api.register("tiny.pt#version=2.0", model_name="tiny")
    yield api


async def still_serving(api: Any) -> None:
    assert json.loads((await api.inference.Ping(empty_pb2.Empty())).health) == {"status": "Healthy"}
    assert len(await api.predict("tiny")) == 4


def predictions(name: str = "tiny", version: str = "", **inputs: bytes) -> inference_pb2.PredictionsRequest:
    return inference_pb2.PredictionsRequest(model_name=name, model_version=version, input=inputs)


BAD_INPUTS: list[tuple[str, dict[str, bytes]]] = [
    ("no input entries", {}),
    ("empty data", {"data": b""}),
    ("garbage bytes", {"data": bytes(range(256))}),
    ("invalid UTF-8", {"data": b"[1.0, \xff\xfe]"}),
    ("not JSON", {"data": b"[1, 2"}),
    ("strings, not numbers", {"data": json.dumps(["a"] * 16).encode()}),
    ("wrong shape", {"data": json.dumps([1.0] * 15).encode()}),
    ("ragged batch", {"data": json.dumps([[1.0] * 16, [1.0] * 3]).encode()}),
    ("raw bytes without shape", {"data": b"\x00" * 64, "dtype": b"float32"}),
    ("raw bytes of the wrong size", {"data": b"\x00" * 63, "dtype": b"float32", "shape": b"[16]"}),
    ("unknown dtype", {"data": b"\x00" * 64, "dtype": b"complex7", "shape": b"[16]"}),
    ("bad safetensors header", {"data": b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage"}),
]


@pytest.mark.parametrize(("case", "inputs"), BAD_INPUTS, ids=[case for case, _ in BAD_INPUTS])
async def test_bad_prediction_input_is_invalid_argument_on_all_three_inference_rpcs(
    served: Any, case: str, inputs: dict[str, bytes]
) -> None:
    api = served
    before = await api.snapshot()
    got = await api.failure(api.inference.Predictions(predictions(**inputs), timeout=30))
    assert (got.code, got.reason) == (C.INVALID_ARGUMENT, "BAD_INPUT"), got.details
    stream = api.inference.StreamPredictions(predictions(**inputs), timeout=30)
    got = await api.failure(_drain(stream))
    assert (got.code, got.reason) == (C.INVALID_ARGUMENT, "BAD_INPUT")
    request = predictions(**inputs)
    request.sequence_id = "s"
    replies = [r async for r in api.inference.StreamPredictions2(iter([request]), timeout=30)]
    assert [r.status.code for r in replies] == [C.INVALID_ARGUMENT.value[0]]
    await still_serving(api)
    assert await api.snapshot() == before


async def _drain(call: Any) -> list[Any]:
    return [reply async for reply in call]


async def test_bad_management_requests_are_refused_without_changing_state(
    served: Any, model_store: Path, mode: str
) -> None:
    api = served
    (model_store / "garbage.pt").write_bytes(b"\x00garbage, not TorchScript" * 10)
    (model_store / "eager.pth").write_bytes(b"pickle would go here")
    m = management_pb2
    missing = "MISSING_FIELD"
    set_default_missing = (C.NOT_FOUND,) if mode == "torchserve" else INVALID
    cases: list[tuple[str, Any, tuple[grpc.StatusCode, ...], str]] = [
        ("register without url", m.RegisterModelRequest(model_name="x"), INVALID, missing),
        ("register: name with a slash", m.RegisterModelRequest(url="tiny.pt", model_name="a/b"), INVALID,
         "INVALID_NAME"),
        ("register: name too long", m.RegisterModelRequest(url="tiny.pt", model_name="a" * 64), INVALID,
         "INVALID_NAME"),
        ("register: version 'all'", m.RegisterModelRequest(url="tiny.pt#version=all", model_name="v"), INVALID,
         "INVALID_NAME"),
        ("register: NUL in url", m.RegisterModelRequest(url="tiny\x00.pt"), INVALID, "BAD_INPUT"),
        ("register: missing file", m.RegisterModelRequest(url="missing.pt"), (C.NOT_FOUND,), "SOURCE_NOT_FOUND"),
        ("register: garbage model", m.RegisterModelRequest(url="garbage.pt", model_name="g"), INVALID,
         "UNSUPPORTED_FORMAT"),
        ("register: eager weights", m.RegisterModelRequest(url="eager.pth", model_name="e"), INVALID,
         "UNSUPPORTED_FORMAT"),
        ("register: untrusted handler", m.RegisterModelRequest(url="tiny.pt", model_name="h", handler="os"),
         INVALID, "HANDLER_NOT_ALLOWED"),
        ("register: unknown runtime", m.RegisterModelRequest(url="tiny.pt", model_name="r", runtime="lsp"),
         INVALID, "BAD_INPUT"),
        # torchserve mode reads a negative number as unset (test_register_numbers_below_one.py).
        *[("register: negative batch size", m.RegisterModelRequest(url="tiny.pt", model_name="n", batch_size=-4),
           INVALID, "BAD_INPUT")] * (mode == "conventional"),
        ("unregister without name", m.UnregisterModelRequest(), INVALID, missing),
        ("scale without name", m.ScaleWorkerRequest(min_worker=1), INVALID, missing),
        ("scale max below min", m.ScaleWorkerRequest(model_name="tiny", min_worker=5, max_worker=1), INVALID,
         "BAD_INPUT"),
        ("describe without name", m.DescribeModelRequest(), INVALID, missing),
        ("describe bad version", m.DescribeModelRequest(model_name="tiny", model_version="../x"), (C.NOT_FOUND,),
         "VERSION_NOT_FOUND"),
        # TorchServe looks an empty name or version up: NOT_FOUND (test_status_code_table.py).
        ("set default without name", m.SetDefaultRequest(model_version="2.0"), set_default_missing, missing),
        ("set default without version", m.SetDefaultRequest(model_name="tiny"), set_default_missing, missing),
        ("set default unknown version", m.SetDefaultRequest(model_name="tiny", model_version="3.0"),
         (C.NOT_FOUND,), "VERSION_NOT_FOUND"),
    ]  # fmt: skip
    methods = {
        m.RegisterModelRequest: api.management.RegisterModel,
        m.UnregisterModelRequest: api.management.UnregisterModel,
        m.ScaleWorkerRequest: api.management.ScaleWorker,
        m.DescribeModelRequest: api.management.DescribeModel,
        m.SetDefaultRequest: api.management.SetDefault,
    }
    before = await api.snapshot()
    for case, request, codes, reason in cases:
        got = await api.failure(methods[type(request)](request))
        assert got.code in codes, (case, got)
        assert got.reason == reason, (case, got)
        assert got.details != "Internal server error", case  # an expected failure says what went wrong
    assert await api.snapshot() == before
    await still_serving(api)


async def test_list_models_with_nonsense_paging_still_answers(served: Any) -> None:
    api = served
    for limit, token in ((-1, -1), (2**31 - 1, 2**31 - 1), (0, 5)):
        page = await api.list_models(limit=limit, token=token)
        assert isinstance(page["models"], list)


async def test_oversized_messages_are_resource_exhausted_in_both_directions(
    start_api: Callable[..., Any], make_model: Callable[..., Any], mode: str
) -> None:
    make_model("tiny.pt")
    network = NetworkSettings(
        inference_address="127.0.0.1:0",
        management_address="127.0.0.1:0",
        max_receive_message_bytes=64 * 1024,
        max_send_message_bytes=1500,
    )
    async with start_api(status_mode=mode, network=network) as api:
        await api.register("tiny.pt")
        before = await api.snapshot()
        big = b"[" + b"0.0," * (20 * 1024) + b"0.0]"
        got = await api.failure(api.predict("tiny", data=big))
        assert got.code == C.RESOURCE_EXHAUSTED
        got = await api.failure(api.register("x" * (70 * 1024)))
        assert got.code == C.RESOURCE_EXHAUSTED
        # A Describe reply (~1.1 KB per version) over the 1500-byte send limit.
        await api.register("tiny.pt#version=2.0", model_name="tiny", initial_workers=3)
        got = await api.failure(api.describe("tiny", "all"))
        assert got.code == C.RESOURCE_EXHAUSTED
        assert len(await api.predict("tiny")) == 4
        listing = await api.list_models()
        assert listing == before[0]
