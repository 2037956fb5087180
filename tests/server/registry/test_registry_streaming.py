"""StreamPredictions in the domain: a handler that never streams still yields exactly one response;
the built-in `generation` handler streams one token per step through the registry, and unregistering
its version stops its decode loop."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.registry import ModelRegistry

import mf_domain_harness as h

VOCAB = 40


class CountingUp(torch.nn.Module):
    """Next token = last token + 1 (mod VOCAB), as logits [B, V]: the expected stream is known."""

    def __init__(self) -> None:
        super().__init__()
        self.vocab = VOCAB

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot((tokens[:, -1] + 1) % self.vocab, self.vocab).to(torch.float32)


async def collect(registry: ModelRegistry, name: str, data: bytes) -> list[bytes]:
    async def run() -> list[bytes]:
        return [chunk async for chunk in registry.stream(name, None, {"data": data}, deadline=None)]

    return await asyncio.wait_for(run(), h.WAIT_S)


async def test_a_model_without_steps_streams_its_one_answer(registries: Any, tiny_model: Path) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    rows = h.rows_json(h.seeded_rows(2, seed=8))
    chunks = await collect(registry, "tiny", rows)
    assert chunks == [await h.predict(registry, "tiny", rows)]
    with pytest.raises(ModelFleetError) as caught:
        await collect(registry, "nope", rows)
    assert caught.value.reason is Reason.MODEL_NOT_FOUND


async def test_generation_streams_tokens_and_stops_its_loop_when_unregistered(
    registries: Any, model_store: Path
) -> None:
    torch.jit.script(CountingUp()).save(str(model_store / "counter.pt"))
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="counter.pt", handler="generation", synchronous=True, initial_workers=1))

    prompts = [{"tokens": [start], "max_new_tokens": 4} for start in (1, 10, 20)]
    streams = await asyncio.gather(*(collect(registry, "counter", json.dumps(p).encode()) for p in prompts))
    for prompt, chunks in zip(prompts, streams):
        start = prompt["tokens"][0]
        assert [json.loads(c) for c in chunks] == [{"token": start + 1 + i, "index": i} for i in range(4)]
    # Predictions on the same version: the whole generation at once, through the workers
    whole = await h.predict(registry, "counter", json.dumps({"tokens": [5], "max_new_tokens": 3}).encode())
    assert json.loads(whole) == {"tokens": [6, 7, 8]}

    def decode_loops() -> int:
        return sum(1 for thread in threading.enumerate() if thread.name.startswith("generate-counter/1.0"))

    assert decode_loops() == 1
    await registry.unregister("counter", None)
    await h.eventually(lambda: decode_loops() == 0, what="decode loop stopped")
