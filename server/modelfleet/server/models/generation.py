"""Greedy token generation for autoregressive TorchScript models, batched across concurrent streams.

The built-in `generation` handler. The model takes int64 tokens [B, T] and returns next-token
logits [B, V] (or [B, T, V], of which the last position is used). One decode loop per model
version runs in its own thread: every step, all active streams of the same length go through ONE
forward pass, and each stream gets its next token as soon as the step ends (continuous batching:
a new stream joins at the next step). StreamPredictions streams one JSON message per token;
Predictions returns all tokens at once (batched through the normal worker path).
Request: `data` = JSON `{"tokens": [...], "max_new_tokens": n, "eos_token": k}` or a bare token array.
Every prompt is checked before it joins a step: JSON depth, tokens that fit int64 and lie in the
model's vocabulary (V, learned from one forward of token 0 and from every step's logits). If a
shared forward still fails, its sequences run one by one, so only the bad prompt fails (BAD_INPUT).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..echo import clip
from ..errors import ModelFleetError, bad_input
from .contracts import ModelHandler, ModelRunner, Request, SequenceContext, StreamRequest
from .handlers.limits import check_json_depth

log = logging.getLogger(__name__)

_END = object()
_INT64_MAX = 2**63 - 1


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
    check_json_depth(raw)  # json recurses per level: a 1,000-deep body must not reach it
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad_input(clip(f"generation input is not UTF-8 JSON: {exc}")) from None
    if isinstance(document, list):
        document = {"tokens": document}
    if not isinstance(document, dict):
        raise bad_input("generation input must be a token array or an object with 'tokens'")
    tokens = document.get("tokens")
    if (
        not isinstance(tokens, list)
        or not tokens
        or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= _INT64_MAX for t in tokens)
    ):
        raise bad_input(f"'tokens' must be a non-empty array of integers from 0 to {_INT64_MAX} (int64)")
    wanted = document.get("max_new_tokens", max_new_tokens_limit)
    if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted < 1:
        raise bad_input("'max_new_tokens' must be a positive integer")
    eos = document.get("eos_token")
    if eos is not None and (not isinstance(eos, int) or isinstance(eos, bool) or not 0 <= eos <= _INT64_MAX):
        raise bad_input(f"'eos_token' must be an integer from 0 to {_INT64_MAX} (int64)")
    return GenerationRequest(list(tokens), min(wanted, max_new_tokens_limit), eos)


def check_vocabulary(request: GenerationRequest, vocab_size: int | None) -> None:
    """BAD_INPUT when a prompt token is not below the vocabulary size (unknown size: no check)."""
    if vocab_size is None:
        return
    largest = max(request.tokens)
    if largest >= vocab_size:
        raise bad_input(f"token {largest} is outside the model's vocabulary: tokens must be 0 to {vocab_size - 1}")


def greedy_step(module: Any, sequences: Sequence[Sequence[int]], device: str) -> tuple[list[int], int]:
    """One forward pass over equal-length sequences; the argmax next token of each and the vocabulary size."""
    import torch

    with torch.inference_mode():
        batch = torch.tensor(sequences, dtype=torch.int64, device=device)
        logits = module(batch)
        if logits.dim() == 3:
            logits = logits[:, -1, :]
        if logits.dim() != 2 or logits.shape[0] != len(sequences):
            raise ValueError(f"model returned logits of shape {tuple(logits.shape)}, expected [B, V]")
        result: list[int] = logits.argmax(dim=-1).tolist()
        return result, int(logits.shape[-1])


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
        self.vocab_size: int | None = None
        """The logits dimension; learned by _learn_vocabulary() and every step (the model may not say)."""
        self._vocab_probed = False
        self._name = name
        self._pending: list[_Stream] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def stream(self, inputs: Mapping[str, bytes]) -> AsyncIterator[bytes]:
        """Yield one JSON message per generated token as soon as its step ends."""
        request = parse_request(inputs, max_new_tokens_limit=self.max_new_tokens_limit)
        check_vocabulary(request, self.vocab_size)  # when known; the decode loop checks again on joining
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
        self._learn_vocabulary()
        for index, raw in enumerate(inputs):
            try:
                request = parse_request(raw, max_new_tokens_limit=self.max_new_tokens_limit)
                check_vocabulary(request, self.vocab_size)
            except ModelFleetError as exc:
                results.append(exc)
                continue
            results.append(b"")
            active.append((index, request, []))
        while active:
            failed: set[int] = set()
            for group in _by_length([(r.tokens + out, (i, r, out)) for i, r, out in active]):
                next_tokens = self._isolated_step([seq for seq, _ in group])
                for token, (_, (index, _request, out)) in zip(next_tokens, group):
                    if isinstance(token, ModelFleetError):
                        results[index] = token
                        failed.add(index)
                    else:
                        out.append(token)
            still = []
            for index, request, out in active:
                if index in failed:
                    continue
                if len(out) >= request.max_new_tokens or (
                    request.eos_token is not None and out[-1] == request.eos_token
                ):
                    results[index] = json.dumps({"tokens": out}).encode()
                else:
                    still.append((index, request, out))
            active = still
        return results

    def _learn_vocabulary(self) -> None:
        """Learn V once from a one-token forward of token 0 (valid in every vocabulary), so prompts
        are checked against it before their first step; a model that refuses it leaves V unknown."""
        if self.vocab_size is not None or self._vocab_probed:
            return
        self._vocab_probed = True
        try:
            _, self.vocab_size = greedy_step(self.module, [[0]], self.device)
        except Exception as exc:
            log.warning("%s: cannot learn the vocabulary size from token 0: %s", self._name, clip(str(exc)))

    def _isolated_step(self, sequences: Sequence[Sequence[int]]) -> list[int | ModelFleetError]:
        """The next token of each sequence; if their shared forward fails, each runs alone so only
        the sequences the model itself refuses fail (BAD_INPUT), never their neighbours."""
        try:
            return list(self._forward(sequences))
        except Exception as exc:
            if len(sequences) == 1:
                return [_model_refused(exc)]
        outcomes: list[int | ModelFleetError] = []
        for sequence in sequences:
            try:
                outcomes.append(self._forward([sequence])[0])
            except Exception as exc:
                outcomes.append(_model_refused(exc))
        return outcomes

    def _forward(self, sequences: Sequence[Sequence[int]]) -> list[int]:
        tokens, self.vocab_size = greedy_step(self.module, sequences, self.device)
        self.forward_passes += 1
        return tokens

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
                joining = list(self._pending)
                self._pending.clear()
            active.extend(self._admitted(joining))
            active = [s for s in active if not s.cancelled]
            if active:
                active = self._step(active)

    def _admitted(self, joining: list[_Stream]) -> list[_Stream]:
        """The new streams whose prompts fit the vocabulary (checked here too: V may be new since
        stream() parsed them); the others get their error now and never join a step."""
        if not joining:
            return joining
        self._learn_vocabulary()
        admitted: list[_Stream] = []
        refused: list[tuple[_Stream, object]] = []
        for stream in joining:
            try:
                check_vocabulary(stream.request, self.vocab_size)
            except ModelFleetError as exc:
                refused.append((stream, exc))
                continue
            admitted.append(stream)
        self._post(refused)
        return admitted

    def _step(self, active: list[_Stream]) -> list[_Stream]:
        outgoing: list[tuple[_Stream, object]] = []
        survivors: list[_Stream] = []
        for group in _by_length([(s.request.tokens, s) for s in active]):
            streams = [s for _, s in group]
            next_tokens = self._isolated_step([seq for seq, _ in group])
            for stream, token in zip(streams, next_tokens):
                if isinstance(token, ModelFleetError):
                    outgoing.append((stream, token))
                    continue
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


def _model_refused(exc: Exception) -> ModelFleetError:
    log.warning("generation input refused by the model: %s", clip(f"{type(exc).__name__}: {exc}"))
    first_line = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return bad_input(clip(f"the model failed on this prompt: {first_line.strip()}"))


def _by_length(items: Sequence[tuple[Sequence[int], Any]]) -> list[list[tuple[Sequence[int], Any]]]:
    """Group sequences of equal length: only those can share a forward pass without padding."""
    groups: dict[int, list[tuple[Sequence[int], Any]]] = {}
    for sequence, payload in items:
        groups.setdefault(len(sequence), []).append((sequence, payload))
    return list(groups.values())


class GenerationRunner:
    """ModelRunner for the worker path (Predictions: whole generations, batched per worker)."""

    def __init__(self, engine: GenerationEngine) -> None:
        self.engine = engine

    def run_batch(self, inputs: Sequence[Mapping[str, bytes]]) -> list[bytes | ModelFleetError]:
        return self.engine.generate_all(inputs)

    def run_stream(self, request: Request) -> Iterator[bytes]:
        """Unused in the server (GenerationHandler.open_stream streams on the shared decode loop)."""
        result = self.engine.generate_all([request.inputs])[0]
        if isinstance(result, ModelFleetError):
            raise result
        yield result


DEFAULT_MAX_NEW_TOKENS = 64
"""Upper bound of generated tokens per request; a request may ask for fewer."""


class GenerationHandler:
    """The `generation` ModelHandler: workers run whole generations, streams share one decode loop per device.

    `place(device)` gives the module on a device (the loader's placement).
    """

    def __init__(self, place: Callable[[str], Any], *, name: str, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        self._place = place
        self._name = name
        self._max_new_tokens = max_new_tokens
        self.engines: dict[str, GenerationEngine] = {}
        self._lock = threading.Lock()

    @property
    def stateful(self) -> bool:
        return False

    @property
    def streams(self) -> bool:
        return True  # through open_stream, on the shared decode loop

    def engine_for(self, device: str) -> GenerationEngine:
        with self._lock:  # workers on several threads may ask for the same device's engine at once
            engine = self.engines.get(device)
            if engine is None:
                engine = self.engines[device] = GenerationEngine(
                    self._place(device), device=device, max_new_tokens_limit=self._max_new_tokens, name=self._name
                )
            return engine

    def make_runner(self, device: str) -> GenerationRunner:
        return GenerationRunner(self.engine_for(device))

    def open_stream(self, request: StreamRequest) -> AsyncIterator[bytes]:
        return self.engine_for(request.device).stream(request.inputs)

    def end_sequence(self, sequence: SequenceContext) -> None:
        pass

    def close(self) -> None:
        for engine in list(self.engines.values()):
            engine.close()


if TYPE_CHECKING:
    _IS_A_HANDLER: type[ModelHandler] = GenerationHandler
    _IS_A_RUNNER: type[ModelRunner] = GenerationRunner
