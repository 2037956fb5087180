"""A small request cannot make the server build an answer bigger than it may send (issue 10, finding 8):
the answer's size is bounded from the output's shape and dtype before anything is encoded, and a
too-large answer is refused with RESOURCE_EXHAUSTED / MESSAGE_TOO_LARGE naming its size and the limit.
Its neighbours in the batch are still answered."""

from __future__ import annotations

import functools
import json
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from grpc import aio
from safetensors.torch import save as safetensors_save

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.handlers import ModelState
from modelfleet.server.models.handlers.tensor import TensorRunner
from modelfleet.server.rpc.error_details import error_info_from_trailer
from modelfleet.server.settings import DEFAULT_MAX_MESSAGE_BYTES

import mf_domain_harness as h

REPEAT = 10_000
"""Each 16-number sample becomes 160,000 output numbers: 640 kB raw, at least 800 kB as JSON."""


class Expander(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.times = REPEAT

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.repeat(1, self.times)


@functools.cache
def expander() -> Any:
    return torch.jit.script(Expander())


def runner(*, max_response_bytes: int | None = None) -> TensorRunner:
    """A runner whose response limit is the server default unless given."""
    state = ModelState(sample_ndim=1)
    assert getattr(state, "max_response_bytes", DEFAULT_MAX_MESSAGE_BYTES) == DEFAULT_MAX_MESSAGE_BYTES
    if max_response_bytes is not None:
        state.max_response_bytes = max_response_bytes
    return TensorRunner(expander(), device="cpu", state=state)


def short_rows(count: int) -> torch.Tensor:
    """Samples of small whole numbers: each output number is written as "3.0, " (JSON's 5-byte floor)."""
    return (torch.arange(count * 16) % 8).reshape(count, 16).to(torch.float32)


def json_rows(count: int) -> bytes:
    return h.rows_json(short_rows(count))


def measured(call: Callable[[], Any]) -> tuple[Any, int, float]:
    """The call's result, its peak Python allocation in bytes and its wall time in seconds."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = call()
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak, elapsed


HUGE_SIZE = {"json": "at least 51,200,000 bytes", "raw": "be 40,960,000 bytes", "safetensors": "at least 40,960,0"}
"""What each form's refusal says of 64 samples' answer: a floor for JSON, exact raw, raw plus a header floor."""

FORMS: dict[str, Callable[[int], dict[str, bytes]]] = {
    "json": lambda count: {"data": json_rows(count)},
    "raw": lambda count: {
        "data": short_rows(count).numpy().tobytes(),
        "dtype": b"float32",
        "shape": f"{count},16".encode(),
    },
    "safetensors": lambda count: {"data": safetensors_save({"x": short_rows(count)})},
}


@pytest.mark.parametrize("form", list(FORMS))
def test_a_huge_answer_is_refused_before_it_is_built(form: str) -> None:
    run = runner()
    warm, _, _ = measured(lambda: run.run_batch([FORMS[form](1)]))  # one sample fits
    assert isinstance(warm[0], bytes)

    # 64 samples: 41 MB raw, at least 51 MB as JSON (the old path built ~150 MB of Python floats)
    [error], peak, elapsed = measured(lambda: run.run_batch([FORMS[form](64)]))

    assert isinstance(error, ModelFleetError), type(error)
    assert (error.kind, error.reason) == (ErrorKind.RESOURCE_EXHAUSTED, Reason.MESSAGE_TOO_LARGE)
    assert "6,553,500" in error.message and HUGE_SIZE[form] in error.message, error.message
    assert error.metadata["limitBytes"] == "6553500"
    assert peak < 2_000_000, f"{peak:,} bytes of Python objects were built for a refused answer"
    assert elapsed < 5.0


def test_a_too_large_answer_fails_alone_and_its_batch_neighbours_are_answered() -> None:
    run = runner(max_response_bytes=2_000_000)
    rows = short_rows(3)  # answers of 0.8 and 1.6 MB fit; 40 samples (at least 32 MB) do not
    requests = [{"data": h.rows_json(rows[0])}, {"data": json_rows(40)}, {"data": h.rows_json(rows[1:3])}]

    results, peak, _ = measured(lambda: run.run_batch(requests))

    refused = results[1]
    assert isinstance(refused, ModelFleetError) and refused.reason is Reason.MESSAGE_TOO_LARGE
    assert "at least" in refused.message and "2,000,000" in refused.message
    expected = rows.repeat(1, REPEAT)
    assert isinstance(results[0], bytes) and isinstance(results[2], bytes)
    assert torch.allclose(torch.tensor(json.loads(results[0])), expected[0])
    assert torch.allclose(torch.tensor(json.loads(results[2])), expected[1:3])
    assert peak < 40_000_000, f"{peak:,} bytes: the refused request's rows were listed too"


def test_a_json_answer_above_its_floor_but_over_the_limit_is_refused_with_its_real_size() -> None:
    # random floats: 160,000 numbers, at least 0.8 MB, in fact ~3.3 MB: passes the floor, not the limit
    [error] = runner(max_response_bytes=3_000_000).run_batch([{"data": h.rows_json(h.seeded_rows(1, seed=3))}])
    assert isinstance(error, ModelFleetError) and error.reason is Reason.MESSAGE_TOO_LARGE
    assert "at least" not in error.message and "3,000,000" in error.message


async def test_over_grpc_a_huge_answer_is_resource_exhausted_with_the_sizes(
    start_api: Callable[..., Any], model_store: Path
) -> None:
    torch.jit.save(expander(), str(model_store / "expander.pt"))
    async with start_api() as api:
        await api.management.RegisterModel(management_pb2.RegisterModelRequest(url="expander.pt", synchronous=True))

        one = await api.inference.Predictions(
            inference_pb2.PredictionsRequest(model_name="expander", input={"data": json_rows(1)}), timeout=30
        )
        assert len(json.loads(one.prediction)[0]) == 16 * REPEAT

        request = inference_pb2.PredictionsRequest(model_name="expander", input={"data": json_rows(9)})
        with pytest.raises(aio.AioRpcError) as raised:
            await api.inference.Predictions(request, timeout=30)
    error = raised.value
    info = error_info_from_trailer(list(error.trailing_metadata() or ()))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info is not None and info.reason == "MESSAGE_TOO_LARGE"
    assert "at least 7,200,000 bytes" in (error.details() or "") and "6,553,500" in (error.details() or "")
