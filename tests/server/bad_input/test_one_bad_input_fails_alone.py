"""One bad input in a batch gets INVALID_ARGUMENT (BAD_INPUT) alone; the requests batched with it are
answered (issue 10, finding 3). Checked on the runners with several inputs in one run_batch, on the
streaming decode loop, and over real gRPC with concurrent calls that the server runs as one batch."""

from __future__ import annotations

import asyncio
import functools
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from grpc import aio

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.demo import build_module
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.generation import GenerationEngine, GenerationHandler
from modelfleet.server.models.handlers import ModelState
from modelfleet.server.models.handlers.tensor import TensorRunner
from modelfleet.server.rpc.error_details import error_info_from_trailer
from modelfleet.server.settings import ModelSettings

import mf_domain_harness as h

VOCAB = 50


def safetensors_bytes(dtype: str, shape: list[int], nbytes: int) -> bytes:
    """A hand-built safetensors payload (the library cannot write dtypes torch lacks, such as F4)."""
    header = json.dumps({"x": {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * nbytes


def raw(shape: str, data: bytes = b"") -> dict[str, bytes]:
    return {"data": data, "dtype": b"float32", "shape": shape.encode()}


BAD_TENSOR_INPUTS: dict[str, dict[str, bytes]] = {
    "JSON nested 1,100 levels": {"data": b"[" * 1_100 + b"1.0" + b"]" * 1_100},
    "JSON nested 100,000 levels": {"data": b"[" * 100_000 + b"]" * 100_000},
    "JSON with NaN nested 5,000 levels": {"data": b"[NaN, " + b"[" * 5_000 + b"]" * 5_000 + b"]"},
    "safetensors F8_E8M0": {"data": safetensors_bytes("F8_E8M0", [16], 16)},
    "safetensors F4": {"data": safetensors_bytes("F4", [16], 8)},
    "safetensors F6_E2M3": {"data": safetensors_bytes("F6_E2M3", [16], 12)},
    "safetensors C64 (not served)": {"data": safetensors_bytes("C64", [16], 128)},
    "raw shape [0, 2**64]": raw("[0, 18446744073709551616]"),
    "raw shape [0, 2**62, 2**62]": raw("[0, 4611686018427387904, 4611686018427387904]"),
    "raw shape 0,2**63": raw("0,9223372036854775808"),
    "raw shape nested 1,000 levels": raw("[" * 1_000 + "]" * 1_000),
    "raw shape of 100 dimensions": raw(json.dumps([1] * 99 + [0])),
    "safetensors shape [0, 2**64]": {"data": safetensors_bytes("F32", [0, 2**64], 0)},
}


@pytest.fixture(scope="module")
def tiny_runner() -> TensorRunner:
    module = torch.jit.script(build_module("tiny", seed=0).eval())
    return TensorRunner(module, device="cpu", state=ModelState(sample_ndim=1))


@pytest.mark.parametrize("case", list(BAD_TENSOR_INPUTS))
def test_a_bad_tensor_input_fails_alone_and_its_batch_neighbours_are_answered(
    tiny_runner: TensorRunner, case: str
) -> None:
    rows = h.seeded_rows(3, seed=11)
    good = [{"data": h.rows_json(rows[i])} for i in range(3)]
    results = tiny_runner.run_batch([good[0], BAD_TENSOR_INPUTS[case], good[1], good[2]])

    bad = results[1]
    assert isinstance(bad, ModelFleetError), bad
    assert (bad.kind, bad.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT), bad
    assert 0 < len(bad.message) <= 400
    expected = h.eager()(rows)
    for index, answer in zip(range(3), (results[0], results[2], results[3])):
        assert isinstance(answer, bytes), answer
        assert torch.allclose(torch.tensor(json.loads(answer)), expected[index], atol=1e-5)


def test_unsupported_safetensors_dtypes_are_named_in_the_message(tiny_runner: TensorRunner) -> None:
    [error] = tiny_runner.run_batch([BAD_TENSOR_INPUTS["safetensors F8_E8M0"]])
    assert isinstance(error, ModelFleetError)
    assert "F8_E8M0" in error.message and "F32" in error.message


def test_an_overflowing_raw_shape_names_the_limit(tiny_runner: TensorRunner) -> None:
    [error] = tiny_runner.run_batch([BAD_TENSOR_INPUTS["raw shape [0, 2**64]"]])
    assert isinstance(error, ModelFleetError)
    assert "18446744073709551616" in error.message and "6,553,500 bytes" in error.message


# ---- generation --------------------------------------------------------------------------------
class Embedder(torch.nn.Module):
    """Next-token logits from an embedding: an out-of-vocabulary token fails its forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = torch.nn.Embedding(VOCAB, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embedding(tokens)[:, -1, :]


class CountingUp(torch.nn.Module):
    """Next token = last + 1 (mod VOCAB): accepts any int64 token, so only the server's check refuses one."""

    def __init__(self) -> None:
        super().__init__()
        self.vocab = VOCAB

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot((tokens[:, -1] + 1) % self.vocab, self.vocab).to(torch.float32)


BAD_PROMPTS: dict[str, bytes] = {
    "token -1": b"[3, -1]",
    "token = vocabulary size": json.dumps([3, VOCAB]).encode(),
    "token 2**63": json.dumps([3, 2**63]).encode(),
    "token 2**70": json.dumps([3, 2**70]).encode(),
    "eos 2**70": json.dumps({"tokens": [3, 4], "eos_token": 2**70}).encode(),
    "JSON nested 5,000 levels": b"[" * 5_000 + b"]" * 5_000,
}


@functools.cache
def scripted(module_class: type) -> Any:
    """Each class scripted once per session (TorchScript refuses to compile a class's method twice)."""
    return torch.jit.script(module_class())


def generate(module_class: type, prompts: list[bytes]) -> list[bytes | ModelFleetError]:
    module = scripted(module_class)
    handler = GenerationHandler(lambda device: module, name="gen/1.0")
    try:
        return handler.make_runner("cpu").run_batch([{"data": prompt} for prompt in prompts])
    finally:
        handler.close()


@pytest.mark.parametrize("module_class", [Embedder, CountingUp])
@pytest.mark.parametrize("case", list(BAD_PROMPTS))
def test_a_bad_generation_prompt_fails_alone_on_the_predictions_path(module_class: type, case: str) -> None:
    good = json.dumps({"tokens": [1, 2], "max_new_tokens": 3}).encode()
    results = generate(module_class, [good, BAD_PROMPTS[case], good])
    bad = results[1]
    assert isinstance(bad, ModelFleetError), bad
    assert (bad.kind, bad.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT), bad
    assert isinstance(results[0], bytes) and results[0] == results[2]
    assert len(json.loads(results[0])["tokens"]) == 3


def test_an_out_of_vocabulary_token_is_refused_even_when_the_model_would_accept_it() -> None:
    [error] = generate(CountingUp, [json.dumps([VOCAB + 7]).encode()])
    assert isinstance(error, ModelFleetError)
    assert f"token {VOCAB + 7}" in error.message and f"0 to {VOCAB - 1}" in error.message


async def test_a_bad_prompt_fails_only_its_own_stream_among_concurrent_streams() -> None:
    engine = GenerationEngine(scripted(Embedder), device="cpu", max_new_tokens_limit=4, name="gen/1.0")

    async def tokens(prompt: list[int]) -> list[int] | ModelFleetError:
        try:
            data = json.dumps({"tokens": prompt}).encode()
            return [json.loads(chunk)["token"] async for chunk in engine.stream({"data": data})]
        except ModelFleetError as exc:
            return exc

    try:
        outcomes = await asyncio.gather(tokens([1, 2]), tokens([VOCAB, 2]), tokens([2**63, 1]), tokens([1, 2]))
    finally:
        engine.close()
    assert isinstance(outcomes[0], list) and len(outcomes[0]) == 4 and outcomes[0] == outcomes[3]
    for bad in outcomes[1:3]:
        assert isinstance(bad, ModelFleetError) and bad.reason is Reason.BAD_INPUT, bad


# ---- over gRPC: one server batch -----------------------------------------------------------------
LONG_DELAY_MS = 60_000
"""Fixed batching with a delay no test waits out: the concurrent calls run as exactly one batch."""


async def predict(api: Any, name: str, inputs: dict[str, bytes]) -> bytes | tuple[grpc.StatusCode, str | None]:
    request = inference_pb2.PredictionsRequest(model_name=name, input=inputs)
    try:
        reply = await api.inference.Predictions(request, timeout=60)
    except aio.AioRpcError as error:
        info = error_info_from_trailer(list(error.trailing_metadata() or ()))
        return error.code(), None if info is None else info.reason
    return bytes(reply.prediction)


async def test_concurrent_grpc_calls_batched_with_bad_inputs_are_answered(
    start_api: Callable[..., Any], tiny_model: Path
) -> None:
    bad = list(BAD_TENSOR_INPUTS.values())
    rows = h.seeded_rows(3, seed=5)
    good = [{"data": h.rows_json(rows[i])} for i in range(3)]
    calls = [good[0], *bad[: len(bad) // 2], good[1], *bad[len(bad) // 2 :], good[2]]
    models = ModelSettings(default_workers=1, adaptive_batching=False)
    async with start_api(models=models) as api:
        await api.management.RegisterModel(
            management_pb2.RegisterModelRequest(
                url="tiny.pt", synchronous=True, batch_size=len(calls), max_batch_delay=LONG_DELAY_MS
            )
        )
        outcomes = await asyncio.gather(*(predict(api, "tiny", inputs) for inputs in calls))
        stats = api.app.registry.get("tiny").pool.stats()
    assert (stats.batches, stats.requests) == (1, len(calls))  # they really shared one batch
    answers = [outcome for outcome in outcomes if isinstance(outcome, bytes)]
    refused = [outcome for outcome in outcomes if not isinstance(outcome, bytes)]
    assert refused == [(grpc.StatusCode.INVALID_ARGUMENT, "BAD_INPUT")] * len(bad)
    expected = h.eager()(rows)
    assert len(answers) == 3
    for index, answer in enumerate(answers):
        assert torch.allclose(torch.tensor(json.loads(answer)), expected[index], atol=1e-5)


async def test_concurrent_generation_calls_batched_with_bad_prompts_are_answered(
    start_api: Callable[..., Any], model_store: Path
) -> None:
    torch.jit.save(scripted(Embedder), str(model_store / "gen.pt"))
    good = json.dumps({"tokens": [1, 2], "max_new_tokens": 3}).encode()
    prompts = [good, *BAD_PROMPTS.values(), good]
    models = ModelSettings(default_workers=1, adaptive_batching=False)
    async with start_api(models=models) as api:
        await api.management.RegisterModel(
            management_pb2.RegisterModelRequest(
                url="gen.pt",
                handler="generation",
                synchronous=True,
                batch_size=len(prompts),
                max_batch_delay=LONG_DELAY_MS,
            )
        )
        outcomes = await asyncio.gather(*(predict(api, "gen", {"data": prompt}) for prompt in prompts))
        stats = api.app.registry.get("gen").pool.stats()
    assert (stats.batches, stats.requests) == (1, len(prompts))
    assert outcomes[1:-1] == [(grpc.StatusCode.INVALID_ARGUMENT, "BAD_INPUT")] * len(BAD_PROMPTS)
    assert isinstance(outcomes[0], bytes) and outcomes[0] == outcomes[-1]
    assert len(json.loads(outcomes[0])["tokens"]) == 3
