"""Built-in `default` handler: tensors in, tensors out, batched across requests. Runs for every request.

Called by the workers through ModelRunner.run_batch. Input entry `data` (else `body`) holds, per request:
  * UTF-8 JSON: a number array, nested for batches; numbers become float32. Answered with UTF-8 JSON.
  * a safetensors-encoded tensor (one tensor, any key); answered as safetensors with key `output`.
  * raw little-endian bytes, with entries `dtype` (float32, float16, bfloat16, float64, int8/16/32/64,
    uint8, bool) and `shape` (`[2, 16]` or `2,16`); answered with raw little-endian bytes in the output's
    dtype (its shape is not sent: add `accept` below when the client cannot know it).
An optional entry `accept` = `safetensors` asks for a safetensors answer (one tensor, key `output`,
with its dtype and shape) whatever the input's form; any other value is BAD_INPUT. The Open Inference
API sends raw tensors with it, and a TorchServe client sending raw bytes learns the output shape so.
One-sample rule: a tensor with the model's sample rank is one sample (a batch dimension is added for
the forward pass and dropped from the answer); one more dimension is a batch of samples. The rank comes
from the model (.pt2), a trusted handler's SAMPLE_NDIM, or the first request that runs: a 1-D tensor is
one sample; a tensor of 2+ dimensions is tried as a batch first, then as one sample.
Requests with equal trailing shape and dtype are concatenated into one forward pass; if it fails, they
are retried one by one so only a bad request fails (BAD_INPUT); its neighbours still succeed.
Each request is checked while it is decoded, before it joins a batch (limits.py: JSON depth, dtypes,
dimensions and element counts against the request size), and each answer's size is bounded from its
shape before it is encoded (MESSAGE_TOO_LARGE), so a small request cannot build a huge answer.
JSON and raw inputs (bfloat16 aside: numpy lacks it) stay numpy arrays until the batch is joined:
every torch call releases the GIL, and while the event loop is busy each release costs this worker a
GIL hand-off (two context switches), so a batch makes two torch calls (one tensor, one forward)
instead of two per request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import orjson
import torch
from safetensors.torch import save as safetensors_save

from ...errors import ErrorKind, ModelFleetError, Reason, bad_input
from ..contracts import ModelRunner, ModelState, Request
from .decoding import DTYPES, NUMPY_DTYPES, Rows, decode_rows
from .decoding import JSON as _JSON
from .decoding import RAW as _RAW
from .decoding import SAFETENSORS as _SAFETENSORS
from .decoding import clip as _clip
from .limits import RESPONSE_OVERHEAD, SAFETENSORS_DTYPES, answer_floor, too_large
from .trusted import TrustedHooks

__all__ = ["DTYPES", "TensorRunner", "decode_rows", "example_rows", "summarize_error"]

log = logging.getLogger(__name__)


ORJSON_MAX_NUMEL = 65_536
"""Largest answer (in numbers) written by orjson; bigger ones by json.dumps (see _json_answer)."""


def _json_answer(value: Any, numel: int) -> bytes:
    """A JSON answer: orjson's bytes (~10x faster than json.dumps for a 256-number row, 1.5 vs 16.7 us).

    orjson writes no space after `,` and the shortest form of each float (`0.00001` for `1e-05`):
    the same JSON value. It writes NaN and ±inf as `null`, which a client would read as "missing", so
    an answer that holds one (only a non-finite float lists as `null`) keeps json.dumps' `NaN` /
    `Infinity` / `-Infinity`, as before and as TorchServe's json.dumps answers: Python's json.loads
    reads them back as the same floats. Answers over ORJSON_MAX_NUMEL numbers keep json.dumps too:
    orjson's growing buffer peaks at ~5x its output (33 MB for a 6 MB answer, json.dumps 13 MB), and
    the per-answer saving that matters is on small answers.
    """
    if numel <= ORJSON_MAX_NUMEL:
        encoded = orjson.dumps(value)
        if b"null" not in encoded:
            return encoded
    return json.dumps(value).encode()


class _Item:
    """One decoded request: its rows (batch dimension first) and how to answer it."""

    __slots__ = ("index", "rows", "single", "form")

    def __init__(self, index: int, rows: Rows, single: bool, form: int) -> None:
        self.index = index
        self.rows = rows
        self.single = single
        self.form = form


class _OutputError(Exception):
    """The model ran but its output does not fit the handler (not a tensor): not the client's fault."""


class TensorRunner:
    """Runs one module on one device for one worker thread (see module docstring for the wire forms)."""

    def __init__(self, module: Any, *, device: str, state: ModelState, hooks: TrustedHooks | None = None) -> None:
        self.module = module
        self.device = torch.device(device)
        self._state = state
        self._preprocess = hooks.preprocess if hooks else None
        self._postprocess = hooks.postprocess if hooks else None
        self._handler_name = hooks.module_name if hooks else "default"
        if hooks is not None and hooks.sample_ndim is not None:
            state.sample_ndim = hooks.sample_ndim
        self.warmup_forwards = 0
        """Zero-input forward passes run by warm_up() (tests read it; no GPU is needed to count)."""
        self._forward: Callable[[torch.Tensor], Any]
        self._prepare_device: Callable[[], None] | None = None
        if self.device.type == "cpu":
            self._forward = module
        else:
            self._forward = self._make_accelerator_forward()

    def warm_up(self) -> bool:
        """Get the device ready and run zero-input forwards when the sample shape is known.

        The worker calls it once, on its own thread, before it reports READY, so the first request
        does not pay for the CUDA context, this worker's stream, the pinned host allocator, cuBLAS
        handles or TorchScript's profiling runs (the optimised graph exists from its 2nd call).
        The shape comes from a .pt2's example input; TorchScript files and trusted handlers with a
        preprocess carry none, so only the device part runs for them. Returns whether a forward ran;
        a model that refuses zeros raises, and the worker logs that and serves anyway.
        """
        if self._prepare_device is not None:
            self._prepare_device()
        if self._preprocess is not None:
            return False
        rows = example_rows(self.module)
        if rows is None:
            return False
        with torch.inference_mode():
            for _ in range(_WARMUP_RUNS):
                self._checked_forward(rows)
                self.warmup_forwards += 1
        return True

    def _make_accelerator_forward(self) -> Callable[[torch.Tensor], Any]:
        # GPU path: pinned host buffer, non-blocking copy on this worker's own stream, blocking copy back.
        # Never run here (no GPU in this project's CI); the CPU tests cover the same calls' order.
        device = self.device
        module = self.module
        make_stream: Callable[..., Any] = torch.cuda.Stream  # untyped in torch's stubs
        stream = make_stream(device=device)  # creates the CUDA context on this device if needed

        def prepare() -> None:
            with torch.cuda.stream(stream):
                torch.empty(1, pin_memory=True)  # initialises the pinned host allocator
                torch.zeros(1, device=device).add_(1)  # the caching allocator and a first kernel
            stream.synchronize()

        self._prepare_device = prepare

        def forward(rows: torch.Tensor) -> Any:
            with torch.cuda.stream(stream):
                out = module(rows.pin_memory().to(device, non_blocking=True))
                if isinstance(out, torch.Tensor):
                    out = out.to("cpu")
                else:
                    stream.synchronize()
                return out

        return forward

    def run_batch(self, inputs: Sequence[Mapping[str, bytes]]) -> list[bytes | ModelFleetError]:
        results: list[bytes | ModelFleetError | None] = [None] * len(inputs)
        groups: dict[tuple[tuple[int, ...], torch.dtype], list[_Item]] = {}
        state = self._state
        with torch.inference_mode():
            for index, request in enumerate(inputs):
                try:
                    rows: Rows
                    tensor: Rows
                    if self._preprocess is not None:
                        rows, form, single = self._run_preprocess(request), _JSON, False
                    else:
                        tensor, form = decode_rows(request, max_bytes=state.max_request_bytes)
                        rank = state.sample_ndim
                        if rank is None:
                            results[index] = self._probe(_as_tensor(tensor), form)
                            continue
                        ndim = tensor.ndim
                        if ndim == rank:
                            rows, single = tensor[None], True  # a view, for numpy and torch alike
                        elif ndim == rank + 1:
                            rows, single = tensor, False
                        else:
                            raise bad_input(
                                f"expected one sample with {rank} dimension(s) or a batch with {rank + 1}, "
                                f"got shape {list(tensor.shape)}"
                            )
                except ModelFleetError as exc:
                    results[index] = exc
                    continue
                except Exception as exc:  # a decoder case the checks missed: still this request's alone
                    results[index] = _undecodable(exc)
                    continue
                item = _Item(index, rows, single, form)
                # torch.Size is a tuple, so numpy and torch rows of one shape share a key; JSON is float32.
                key = (rows.shape[1:], _TORCH_DTYPES[rows.dtype] if isinstance(rows, np.ndarray) else rows.dtype)
                group = groups.get(key)
                if group is None:
                    groups[key] = [item]
                else:
                    group.append(item)
            for group in groups.values():
                self._run_group(group, results)
        return cast("list[bytes | ModelFleetError]", results)  # every slot was filled above

    def stream(self, inputs: Mapping[str, bytes]) -> Iterator[bytes]:
        result = self.run_batch((inputs,))[0]
        if isinstance(result, ModelFleetError):
            raise result
        yield result

    def run_stream(self, request: Request) -> Iterator[bytes]:
        """One response: the tensor pipeline does not stream (StreamPredictions still answers once)."""
        return self.stream(request.inputs)

    def _run_group(self, group: list[_Item], results: list[bytes | ModelFleetError | None]) -> None:
        if len(group) == 1:
            item = group[0]
            try:
                out = self._checked_forward(_as_tensor(item.rows))
            except _OutputError as exc:
                results[item.index] = _output_error(exc)
                return
            except Exception as exc:
                results[item.index] = _rejected(exc, item.rows)
                return
            self._encode_group(group, out, results)
            return
        try:
            out = self._checked_forward(_join([item.rows for item in group]))
        except _OutputError as exc:  # the model's output is wrong whatever the input: no retry
            error = _output_error(exc)
            for item in group:
                results[item.index] = error
            return
        except Exception:
            # One bad member must not fail the others: run each alone to find out which.
            for item in group:
                self._run_group([item], results)
            return
        self._encode_group(group, out, results)

    def _encode_group(
        self, group: list[_Item], out: torch.Tensor, results: list[bytes | ModelFleetError | None]
    ) -> None:
        # Every answer's size is bounded from its shape first (arithmetic, no tensor call), so a
        # too-large one is refused before anything is built for it. JSON answers then share one
        # tolist() for the whole batch output instead of one per request (each is listed alone when
        # one was refused, so the refused rows are never listed).
        row_numel = out.numel() // out.shape[0] if out.shape[0] else 0
        kept: list[tuple[_Item, int, int]] = []
        refused = False
        start = 0
        for item in group:
            stop = start + item.rows.shape[0]
            count = 1 if item.single else stop - start
            shape = lambda: _rows_shape(out, item, count)  # noqa: E731, B023  (a refusal's message, built in this pass)
            error = self._oversized(count * row_numel, out.dtype, item.form, shape=shape)
            if error is None:
                kept.append((item, start, stop))
            else:
                results[item.index], refused = error, True
            start = stop
        listed: list[Any] | None = None
        array: np.ndarray[Any, Any] | None = None
        for item, start, stop in kept:
            if item.form == _JSON and self._postprocess is None and not refused:
                if listed is None:
                    listed = out.tolist()
                encoded = _json_answer(listed[start] if item.single else listed[start:stop], (stop - start) * row_numel)
                results[item.index] = self._sized(encoded, shape=lambda: _rows_shape(out, item, stop - start))  # noqa: B023
            elif item.form != _JSON and self._postprocess is None and out.dtype in _SAFETENSORS_NAMES:
                # Binary answers slice one numpy view of the batch output: no torch call per request.
                if array is None:
                    array = _numpy_of(out)
                rows = array[start, ...] if item.single else array[start:stop]
                encoded = _safetensors_bytes(rows, out.dtype) if item.form == _SAFETENSORS else rows.tobytes()
                results[item.index] = self._sized(encoded, shape=lambda: rows.shape)  # noqa: B023
            else:
                results[item.index] = self._encode(out[start] if item.single else out[start:stop], item.form)

    def _checked_forward(self, rows: torch.Tensor) -> torch.Tensor:
        out = self._forward(rows)
        if not isinstance(out, torch.Tensor):
            raise _OutputError(
                f"the model returned {type(out).__name__}; the {self._handler_name!r} handler needs one "
                "tensor (use a trusted handler with postprocess for other outputs)"
            )
        if out.dim() == 0 or out.shape[0] != rows.shape[0]:
            raise ValueError(
                f"the model returned shape {list(out.shape)} for {rows.shape[0]} sample(s); "
                "expected one output row per sample"
            )
        return out

    def _probe(self, tensor: torch.Tensor, form: int) -> bytes | ModelFleetError:
        """Sample rank unknown: try the readings of the one-sample rule, remember the first that runs."""
        readings = [(tensor.unsqueeze(0), True)]
        if tensor.dim() >= 2:
            readings.insert(0, (tensor, False))
        failure: Exception | None = None
        for rows, single in readings:
            try:
                out = self._checked_forward(rows)
            except _OutputError as exc:
                return _output_error(exc)
            except Exception as exc:
                failure = failure or exc
                continue
            self._state.sample_ndim = rows.dim() - 1
            value = out[0] if single else out
            return self._oversized(value.numel(), value.dtype, form, shape=lambda: value.shape) or self._encode(  # noqa: B023
                value, form
            )
        assert failure is not None
        return _rejected(failure, tensor)

    def _run_preprocess(self, request: Mapping[str, bytes]) -> torch.Tensor:
        assert self._preprocess is not None
        try:
            tensor = self._preprocess(request)
        except ModelFleetError:
            raise
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise bad_input(_clip(f"{type(exc).__name__}: {exc}")) from None
        except Exception as exc:
            raise _handler_failed(self._handler_name, "preprocess", exc) from None
        if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0:
            why = TypeError("did not return a tensor with a batch dimension")
            raise _handler_failed(self._handler_name, "preprocess", why)
        return tensor

    def _encode(self, value: torch.Tensor, form: int) -> bytes | ModelFleetError:
        """One answer (its size already bounded by _oversized), checked again once built."""
        if self._postprocess is not None:
            try:
                return self._sized(bytes(self._postprocess(value)), shape=lambda: value.shape)
            except Exception as exc:
                return _handler_failed(self._handler_name, "postprocess", exc)
        try:
            if form == _JSON:
                encoded = _json_answer(value.tolist(), value.numel())
            elif form == _SAFETENSORS:
                encoded = safetensors_answer(value)
            else:
                encoded = value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        except Exception as exc:  # e.g. a dtype JSON or safetensors cannot write: the model's output, not the input
            return ModelFleetError(
                ErrorKind.INTERNAL,
                Reason.INTERNAL,
                _clip(f"cannot encode the model's {str(value.dtype).removeprefix('torch.')} output: {exc}"),
            )
        return self._sized(encoded, shape=lambda: value.shape)

    def _oversized(
        self, numel: int, dtype: torch.dtype, form: int, *, shape: Callable[[], Sequence[int]]
    ) -> ModelFleetError | None:
        """MESSAGE_TOO_LARGE when the answer's smallest possible encoding exceeds the response limit.

        A postprocess may shrink any output, so only its result (in _sized) is checked.
        """
        if self._postprocess is not None:
            return None
        floor = answer_floor(numel, dtype, json_text=form == _JSON)
        if form == _SAFETENSORS:
            floor += _SAFETENSORS_HEADER_FLOOR
        if floor <= self._answer_limit:
            return None
        return too_large(floor, limit=self._state.max_response_bytes, shape=shape(), exact=form == _RAW)

    def _sized(self, encoded: bytes, *, shape: Callable[[], Sequence[int]]) -> bytes | ModelFleetError:
        """The encoded answer, or MESSAGE_TOO_LARGE if it exceeds the limit after all (JSON's floor is low)."""
        if len(encoded) <= self._answer_limit:
            return encoded
        return too_large(len(encoded), limit=self._state.max_response_bytes, shape=shape(), exact=True)

    @property
    def _answer_limit(self) -> int:
        """Bytes the answer itself may take: the response limit less the response message's own fields."""
        return self._state.max_response_bytes - RESPONSE_OVERHEAD


_TORCH_DTYPES: dict[np.dtype[Any], torch.dtype] = {numpy: dtype for dtype, numpy in NUMPY_DTYPES.items()}
"""numpy rows' dtype -> torch's, for batch grouping (JSON rows are float32, raw rows as decoded)."""

_SAFETENSORS_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


def safetensors_answer(value: torch.Tensor) -> bytes:
    """`value` as safetensors with key `output`, written here: the library's save() costs ~35 us per
    call (a third of a small model's forward pass) for what is a one-line header and the raw bytes.
    The header is padded with spaces to 8 bytes, as the library does; other dtypes go to the library."""
    if value.dtype not in _SAFETENSORS_NAMES:
        return safetensors_save({"output": value.contiguous()})
    return _safetensors_bytes(_numpy_of(value), value.dtype)


def _numpy_of(value: torch.Tensor) -> np.ndarray[Any, Any]:
    """A C-contiguous numpy view of a CPU tensor of a _SAFETENSORS_NAMES dtype (bfloat16 as its bits)."""
    value = value.contiguous()
    return (value.view(torch.int16) if value.dtype == torch.bfloat16 else value).numpy()


def _safetensors_bytes(rows: np.ndarray[Any, Any], dtype: torch.dtype) -> bytes:
    shape = ",".join(map(str, rows.shape))
    header = (
        f'{{"output":{{"dtype":"{_SAFETENSORS_NAMES[dtype]}","shape":[{shape}],"data_offsets":[0,{rows.nbytes}]}}}}'
    )
    encoded = header.encode() + b" " * (-len(header) % 8)
    return b"".join((len(encoded).to_bytes(8, "little"), encoded, np.ascontiguousarray(rows).data))


_SAFETENSORS_HEADER_FLOOR = 8 + len('{"output":{"dtype":"U8","shape":[],"data_offsets":[0,0]}}')
"""Fewest bytes of a safetensors answer besides its data (length prefix and the smallest header)."""

_WARMUP_RUNS = 2
"""TorchScript profiles a graph on its first call and runs the optimised one from the second."""


def example_rows(module: Any) -> torch.Tensor | None:
    """Zeros shaped like a .pt2 program's one example input (batch 1 when the batch is dynamic), else None.

    torch.export keeps each input's example as the placeholder's `val` in the unlifted module's FX
    graph; TorchScript modules have no such graph (their `graph` is a torch._C.Graph).
    """
    graph = getattr(module, "graph", None)
    if not isinstance(graph, torch.fx.Graph):
        return None
    values = [node.meta.get("val") for node in graph.nodes if node.op == "placeholder"]
    if len(values) != 1 or not isinstance(values[0], torch.Tensor) or values[0].dim() == 0:
        return None
    example = values[0]
    sample = list(example.shape[1:])
    if not all(isinstance(size, int) for size in sample):
        return None
    batch = example.shape[0] if isinstance(example.shape[0], int) else 1
    return torch.zeros((batch, *sample), dtype=example.dtype)


def _rows_shape(out: torch.Tensor, item: _Item, count: int) -> list[int]:
    """The shape of one request's answer inside a batch output (for messages only)."""
    sample = list(out.shape[1:])
    return sample if item.single else [count, *sample]


def _as_tensor(rows: Rows) -> torch.Tensor:
    if not isinstance(rows, np.ndarray):
        return rows
    # Raw inputs are read-only views of the request's bytes; a model may write to its input in place.
    return torch.from_numpy(rows if rows.flags.writeable else rows.copy())


def _join(parts: list[Rows]) -> torch.Tensor:
    """One tensor of all rows: numpy parts are joined in numpy, so the batch costs one torch call."""
    if all(isinstance(part, np.ndarray) for part in parts):
        return torch.from_numpy(np.concatenate(parts))
    return torch.cat([_as_tensor(part) for part in parts])


def _rejected(exc: Exception, rows: Rows) -> ModelFleetError:
    return bad_input(
        _clip(
            f"the model rejected input of shape {list(rows.shape)} ({str(rows.dtype).removeprefix('torch.')}): "
            f"{summarize_error(exc)}"
        )
    )


def _undecodable(exc: Exception) -> ModelFleetError:
    log.warning("input refused by an unexpected decoder error: %s", _clip(f"{type(exc).__name__}: {exc}"))
    return bad_input(_clip(f"input could not be decoded ({type(exc).__name__}: {exc})"))


def _output_error(exc: _OutputError) -> ModelFleetError:
    return ModelFleetError(ErrorKind.INTERNAL, Reason.INTERNAL, str(exc))


def _handler_failed(handler: str, step: str, exc: Exception) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.INTERNAL, Reason.INTERNAL, _clip(f"handler {handler!r} {step} failed: {type(exc).__name__}: {exc}")
    )


def summarize_error(exc: BaseException) -> str:
    """The useful part of a torch error, without tracebacks.

    TorchScript appends its interpreter traceback ending in `XError: why`; C++ errors append
    `Exception raised from ...` frames. Used for client-facing messages here and in loading.py.
    """
    lines = []
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith(("Exception raised from", "frame #")):
            break
        if line:
            lines.append(line)
    if not lines:
        return type(exc).__name__
    for line in reversed(lines):
        head, sep, rest = line.partition(": ")
        if sep and head.endswith(("Error", "Exception")) and head.isidentifier():
            return rest
    return " ".join(lines[:3])


if TYPE_CHECKING:
    _IS_A_MODEL_RUNNER: type[ModelRunner] = TensorRunner
