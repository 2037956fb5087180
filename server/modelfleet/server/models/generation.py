"""Greedy token generation for autoregressive TorchScript models, batched across concurrent streams.

The built-in `generation` handler. The model takes int64 tokens [B, T] and returns next-token
logits [B, V] (or [B, T, V], of which the last position is used). One decode loop per model
version runs in its own thread: every step, all active streams of the same length go through ONE
forward pass, and each stream gets its next token as soon as the step ends (continuous batching:
a new stream joins at the next step). StreamPredictions streams one JSON message per token;
Predictions returns all tokens at once (batched through the normal worker path).
Request: `data` = JSON `{"tokens": [...], "max_new_tokens": n, "eos_token": k}` or a bare token array.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ModelFleetError, bad_input

log = logging.getLogger(__name__)

_END = object()


@dataclass
class GenerationRequest:
    tokens: list[int]
    max_new_tokens: int
    eos_token: int | None


def parse_request(inputs: Mapping[str, bytes], *, max_new_tokens_limit: int) -> GenerationRequest:
    """Decode and validate one request's prompt; BAD_INPUT with a clear message otherwise."""
    raw = inputs.get("data", inputs.get("body"))
    if raw is None:
        raise bad_input("generation input needs a 'data' or 'body' entry holding JSON tokens")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad_input(f"generation input is not UTF-8 JSON: {exc}") from None
    if isinstance(document, list):
        document = {"tokens": document}
    if not isinstance(document, dict):
        raise bad_input("generation input must be a token array or an object with 'tokens'")
    tokens = document.get("tokens")
    if (
        not isinstance(tokens, list)
        or not tokens
        or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens)
    ):
        raise bad_input("'tokens' must be a non-empty array of non-negative integers")
    wanted = document.get("max_new_tokens", max_new_tokens_limit)
    if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted < 1:
        raise bad_input("'max_new_tokens' must be a positive integer")
    eos = document.get("eos_token")
    if eos is not None and (not isinstance(eos, int) or isinstance(eos, bool)):
        raise bad_input("'eos_token' must be an integer")
    return GenerationRequest(list(tokens), min(wanted, max_new_tokens_limit), eos)


def greedy_step(module: Any, sequences: Sequence[Sequence[int]], device: str) -> list[int]:
    """One forward pass over equal-length sequences; the argmax next token of each."""
    import torch

    with torch.inference_mode():
        batch = torch.tensor(sequences, dtype=torch.int64, device=device)
        logits = module(batch)
        if logits.dim() == 3:
            logits = logits[:, -1, :]
        if logits.dim() != 2 or logits.shape[0] != len(sequences):
            raise ValueError(f"model returned logits of shape {tuple(logits.shape)}, expected [B, V]")
        result: list[int] = logits.argmax(dim=-1).tolist()
        return result


@dataclass(eq=False)
class _Stream:
    request: GenerationRequest
    queue: asyncio.Queue[object]
    produced: int = 0
    cancelled: bool = False


class GenerationEngine:
    """The decode loop of one model version (see module docstring)."""

    def __init__(self, module: Any, *, device: str, max_new_tokens_limit: int, name: str) -> None:
        self.module = module
        self.device = device
        self.max_new_tokens_limit = max_new_tokens_limit
        self.forward_passes = 0
        self.tokens_produced = 0
        self._name = name
        self._pending: list[_Stream] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def stream(self, inputs: Mapping[str, bytes]) -> AsyncIterator[bytes]:
        """Yield one JSON message per generated token as soon as its step ends."""
        request = parse_request(inputs, max_new_tokens_limit=self.max_new_tokens_limit)
        self._loop = asyncio.get_running_loop()
        item = _Stream(request, asyncio.Queue())
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"generate-{self._name}", daemon=True)
                self._thread.start()
            self._pending.append(item)
            self._cond.notify()
        try:
            while True:
                message = await item.queue.get()
                if message is _END:
                    return
                if isinstance(message, BaseException):
                    raise message
                assert isinstance(message, bytes)
                yield message
        finally:
            item.cancelled = True  # the client went away or finished: stop decoding for it

    def generate_all(self, inputs: Sequence[Mapping[str, bytes]]) -> list[bytes | ModelFleetError]:
        """Whole generations for a batch of requests (Predictions), stepping them together."""
        results: list[bytes | ModelFleetError] = []
        active: list[tuple[int, GenerationRequest, list[int]]] = []
        for index, raw in enumerate(inputs):
            try:
                request = parse_request(raw, max_new_tokens_limit=self.max_new_tokens_limit)
            except ModelFleetError as exc:
                results.append(exc)
                continue
            results.append(b"")
            active.append((index, request, []))
        while active:
            for group in _by_length([(r.tokens + out, (i, r, out)) for i, r, out in active]):
                next_tokens = greedy_step(self.module, [seq for seq, _ in group], self.device)
                self.forward_passes += 1
                for token, (_, (_, request, out)) in zip(next_tokens, group):
                    out.append(token)
            still = []
            for index, request, out in active:
                if len(out) >= request.max_new_tokens or (request.eos_token is not None and out[-1] == request.eos_token):
                    results[index] = json.dumps({"tokens": out}).encode()
                else:
                    still.append((index, request, out))
            active = still
        return results

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ---- decode loop thread -------------------------------------------------------------------
    def _run(self) -> None:
        active: list[_Stream] = []
        while True:
            with self._cond:
                while not self._pending and not active and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._finish(active + self._pending, _END)
                    return
                active.extend(self._pending)
                self._pending.clear()
            active = [s for s in active if not s.cancelled]
            if active:
                active = self._step(active)

    def _step(self, active: list[_Stream]) -> list[_Stream]:
        outgoing: list[tuple[_Stream, object]] = []
        survivors: list[_Stream] = []
        for group in _by_length([(s.request.tokens, s) for s in active]):
            streams = [s for _, s in group]
            try:
                next_tokens = greedy_step(self.module, [seq for seq, _ in group], self.device)
            except Exception as exc:
                log.exception("generation step of %s failed", self._name)
                error = bad_input(f"model failed on this input: {exc}")
                outgoing.extend((s, error) for s in streams)
                continue
            self.forward_passes += 1
            for stream, token in zip(streams, next_tokens):
                stream.request.tokens.append(token)
                stream.produced += 1
                self.tokens_produced += 1
                outgoing.append((stream, json.dumps({"token": token, "index": stream.produced - 1}).encode()))
                request = stream.request
                if stream.produced >= request.max_new_tokens or token == request.eos_token:
                    outgoing.append((stream, _END))
                else:
                    survivors.append(stream)
        self._post(outgoing)
        return survivors

    def _finish(self, streams: Sequence[_Stream], message: object) -> None:
        self._post([(s, message) for s in streams])

    def _post(self, outgoing: list[tuple[_Stream, object]]) -> None:
        loop = self._loop
        if loop is None or not outgoing:
            return

        def deliver() -> None:
            for stream, message in outgoing:
                stream.queue.put_nowait(message)

        try:
            loop.call_soon_threadsafe(deliver)  # one wake-up of the loop per step
        except RuntimeError:
            pass


def _by_length(items: Sequence[tuple[Sequence[int], Any]]) -> list[list[tuple[Sequence[int], Any]]]:
    """Group sequences of equal length: only those can share a forward pass without padding."""
    groups: dict[int, list[tuple[Sequence[int], Any]]] = {}
    for sequence, payload in items:
        groups.setdefault(len(sequence), []).append((sequence, payload))
    return list(groups.values())


class GenerationRunner:
    """ModelRunner for the worker path (Predictions): whole generations, batched per worker."""

    def __init__(self, engine: GenerationEngine) -> None:
        self.engine = engine

    def run_batch(self, inputs: Sequence[Mapping[str, bytes]]) -> list[bytes | ModelFleetError]:
        return self.engine.generate_all(inputs)


DEFAULT_MAX_NEW_TOKENS = 64
"""Upper bound of generated tokens per request; a request may ask for fewer."""


def generation_model(
    module: Any,
    *,
    name: str,
    version: str,
    serialized_format: str,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    move: Any = None,
) -> Any:
    """A LoadedModel whose workers run whole generations and whose streams share one decode loop.

    `move(module, device)` places the module on a device (the loader's placement); default: as is.
    """
    from .contracts import LoadedModel

    placed: dict[str, Any] = {}

    def on(device: str) -> Any:
        if device not in placed:
            placed[device] = module if move is None else move(module, device)
        return placed[device]

    engines: dict[str, GenerationEngine] = {}

    def close() -> None:
        for engine in engines.values():
            engine.close()

    def engine_for(device: str) -> GenerationEngine:
        if device not in engines:
            engines[device] = GenerationEngine(
                on(device), device=device, max_new_tokens_limit=max_new_tokens, name=f"{name}/{version}"
            )
        return engines[device]

    async def streamer(target: Any, inputs: Mapping[str, bytes], deadline: float | None) -> AsyncIterator[bytes]:
        workers = target.pool.workers
        device = workers[0].device if workers else "cpu"
        async for chunk in engine_for(device).stream(inputs):
            yield chunk

    return LoadedModel(
        name=name,
        version=version,
        handler_name="generation",
        serialized_format=serialized_format,
        runner_factory=lambda device: GenerationRunner(engine_for(device)),
        extra={
            "streamer": streamer,
            "engines": engines,
            "engine": "Torch",
            "close": close,
        },
    )
