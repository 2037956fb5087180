"""Greedy streaming generation: tokens stream as produced and concurrent streams share forward passes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ModelFleetError, Reason
from modelfleet.server.models.contracts import StreamRequest
from modelfleet.server.models.generation import GenerationEngine, GenerationHandler

VOCAB = 50


class CountingUp(torch.nn.Module):
    """Next token = last token + 1 (mod VOCAB): expected output is known without the model."""

    def __init__(self) -> None:
        super().__init__()
        self.vocab = VOCAB

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        last = tokens[:, -1]
        return torch.nn.functional.one_hot((last + 1) % self.vocab, self.vocab).to(torch.float32)


@pytest.fixture
def engine() -> Any:
    module = torch.jit.script(CountingUp())
    engine = GenerationEngine(module, device="cpu", max_new_tokens_limit=16, name="counter/1.0")
    yield engine
    engine.close()


async def collect(engine: GenerationEngine, prompt: dict[str, Any]) -> list[int]:
    return [json.loads(chunk)["token"] async for chunk in engine.stream({"data": json.dumps(prompt).encode()})]


async def test_a_stream_yields_each_greedy_token_in_order(engine: GenerationEngine) -> None:
    assert await collect(engine, {"tokens": [3, 4], "max_new_tokens": 5}) == [5, 6, 7, 8, 9]


async def test_generation_stops_at_the_eos_token(engine: GenerationEngine) -> None:
    assert await collect(engine, {"tokens": [1], "max_new_tokens": 10, "eos_token": 4}) == [2, 3, 4]


async def test_max_new_tokens_is_capped_by_the_server_limit(engine: GenerationEngine) -> None:
    assert len(await collect(engine, {"tokens": [0], "max_new_tokens": 1000})) == 16


async def test_four_concurrent_streams_share_forward_passes(engine: GenerationEngine) -> None:
    prompts = [{"tokens": [start, start], "max_new_tokens": 8} for start in (0, 10, 20, 30)]
    outputs = await asyncio.gather(*(collect(engine, prompt) for prompt in prompts))
    assert outputs == [[(start + 1 + i) % VOCAB for i in range(8)] for start in (0, 10, 20, 30)]
    assert engine.tokens_produced == 32
    assert engine.forward_passes < engine.tokens_produced


async def test_bad_prompts_fail_only_their_own_stream(engine: GenerationEngine) -> None:
    with pytest.raises(ModelFleetError) as caught:
        await collect(engine, {"tokens": "not tokens"})
    assert caught.value.reason is Reason.BAD_INPUT
    assert await collect(engine, {"tokens": [7], "max_new_tokens": 2}) == [8, 9]


def test_predictions_path_generates_whole_sequences_batched() -> None:
    module = torch.jit.script(CountingUp())
    handler = GenerationHandler(lambda device: module, name="counter/1.0")
    runner = handler.make_runner("cpu")
    results = runner.run_batch(
        [
            {"data": b'{"tokens": [1], "max_new_tokens": 3}'},
            {"data": b"\xff garbage"},
            {"data": b"[5]"},
        ]
    )
    assert json.loads(results[0]) == {"tokens": [2, 3, 4]}
    assert isinstance(results[1], ModelFleetError) and results[1].reason is Reason.BAD_INPUT
    assert json.loads(results[2])["tokens"][:3] == [6, 7, 8]
    handler.close()


async def test_the_loader_builds_a_streaming_model_for_the_generation_handler(tmp_path: Any) -> None:
    from modelfleet.server.models.contracts import RegisterSpec, ResolvedSource
    from modelfleet.server.models.loading import ModelLoader
    from modelfleet.server.settings import ModelSettings

    path = tmp_path / "counter.pt"
    torch.jit.script(CountingUp()).save(str(path))
    loader = ModelLoader(ModelSettings(max_new_tokens=4))
    source = ResolvedSource(url="counter.pt", path=path)
    spec = RegisterSpec(url="counter.pt", handler="generation")
    loaded = loader.load(source, spec, loader.identify(source, spec))
    assert loaded.handler_name == "generation"

    stream = loaded.handler.open_stream(StreamRequest({"data": b"[1]"}, "cpu", None))
    assert stream is not None
    chunks = [json.loads(c)["token"] async for c in stream]
    assert chunks == [2, 3, 4, 5]
    loaded.handler.close()
