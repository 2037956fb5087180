"""Built-in `default` handler: tensors in, tensors out, batched across requests. Runs for every request.

Called by the workers through ModelRunner.run_batch. Input entry `data` (else `body`) holds, per request:
  * UTF-8 JSON: a number array, nested for batches; numbers become float32. Answered with UTF-8 JSON.
  * a safetensors-encoded tensor (one tensor, any key); answered as safetensors with key `output`.
  * raw little-endian bytes, with entries `dtype` (float32, float16, bfloat16, float64, int8/16/32/64,
    uint8, bool) and `shape` (`[2, 16]` or `2,16`); answered with raw little-endian bytes in the output's
    dtype (its shape is not sent: use safetensors when the client cannot know it).
One-sample rule: a tensor with the model's sample rank is one sample (a batch dimension is added for
the forward pass and dropped from the answer); one more dimension is a batch of samples. The rank comes
from the model (.pt2), a trusted handler's SAMPLE_NDIM, or the first request that runs: a 1-D tensor is
one sample; a tensor of 2+ dimensions is tried as a batch first, then as one sample.
Requests with equal trailing shape and dtype are concatenated into one forward pass; if it fails, they
are retried one by one so only a bad request fails (BAD_INPUT); its neighbours still succeed.
JSON inputs stay numpy arrays until the batch is joined: every torch call releases the GIL, and while
the event loop is busy each release costs this worker a GIL hand-off (two context switches), so a
batch makes two torch calls (one tensor, one forward) instead of two per request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np
import orjson
import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from ...errors import ErrorKind, ModelFleetError, Reason, bad_input
from ..contracts import ModelRunner
from . import ModelState
from .trusted import TrustedHooks

_JSON, _SAFETENSORS, _RAW = 0, 1, 2
_NUMERIC_KINDS = frozenset("biuf")
_MAX_MESSAGE = 300

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "double": torch.float64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
"""Names accepted in the `dtype` entry of a raw tensor (also with a `torch.` prefix)."""


def make_runner(
    module: Any, *, device: str, state: ModelState, hooks: TrustedHooks | None = None
) -> TensorRunner:
    return TensorRunner(module, device=device, state=state, hooks=hooks)


Rows: TypeAlias = "torch.Tensor | np.ndarray[Any, Any]"
"""A request's samples, batch dimension first: numpy for JSON (see module docstring), else torch."""


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

    def __init__(
        self, module: Any, *, device: str, state: ModelState, hooks: TrustedHooks | None = None
    ) -> None:
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
                        tensor, form = decode_rows(request)
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
                item = _Item(index, rows, single, form)
                # torch.Size is a tuple, so numpy and torch rows of one shape share a key; JSON is float32.
                key = (rows.shape[1:], torch.float32 if isinstance(rows, np.ndarray) else rows.dtype)
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
        # JSON answers: one tolist() for the whole batch output instead of one per request.
        listed: list[Any] | None = None
        start = 0
        for item in group:
            stop = start + item.rows.shape[0]
            if item.form == _JSON and self._postprocess is None:
                if listed is None:
                    listed = out.tolist()
                results[item.index] = json.dumps(listed[start] if item.single else listed[start:stop]).encode()
            else:
                results[item.index] = self._encode(out[start:stop], item.single, item.form)
            start = stop

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
            return self._encode(out, single, form)
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

    def _encode(self, out_rows: torch.Tensor, single: bool, form: int) -> bytes | ModelFleetError:
        value = out_rows[0] if single else out_rows
        if self._postprocess is not None:
            try:
                return bytes(self._postprocess(value))
            except Exception as exc:
                return _handler_failed(self._handler_name, "postprocess", exc)
        if form == _JSON:
            return json.dumps(value.tolist()).encode()
        if form == _SAFETENSORS:
            return safetensors_save({"output": value.contiguous()})
        return value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


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


def _as_tensor(rows: Rows) -> torch.Tensor:
    return torch.from_numpy(rows) if isinstance(rows, np.ndarray) else rows


def _join(parts: list[Rows]) -> torch.Tensor:
    """One tensor of all rows: numpy parts are joined in numpy, so the batch costs one torch call."""
    if all(isinstance(part, np.ndarray) for part in parts):
        return torch.from_numpy(np.concatenate(parts))
    return torch.cat([_as_tensor(part) for part in parts])


def decode_rows(request: Mapping[str, bytes]) -> tuple[Rows, int]:
    """One request's rows and answer form (JSON stays a float32 numpy array: see the module docstring);
    BAD_INPUT (ModelFleetError) when malformed."""
    data = request.get("data")
    if data is None:
        data = request.get("body")
        if data is None:
            raise bad_input(
                "no input tensor: send it in the 'data' (or 'body') input entry as a JSON number array, "
                "a safetensors tensor, or raw bytes with 'dtype' and 'shape' entries"
            )
    if "dtype" in request or "shape" in request:
        return _decode_raw(data, request.get("dtype"), request.get("shape")), _RAW
    if len(data) > 9 and data[8] == 0x7B and int.from_bytes(data[:8], "little") <= len(data) - 8:
        # safetensors: 8-byte little-endian header length, then a JSON header; JSON text never
        # starts with a length that fits the payload.
        return _decode_safetensors(data), _SAFETENSORS
    return _decode_json(data), _JSON


def _decode_json(data: bytes) -> np.ndarray[Any, Any]:
    try:
        # orjson parses a 256-number array ~5x faster than json (12 vs 56 us, with the array build),
        # and this runs per request holding the GIL. What it refuses (NaN and Infinity, which json
        # accepts, and every malformed input) goes through json, so the accepted values and the error
        # messages stay json's. One difference: orjson reads an integer beyond 64 bits as the float
        # it is closest to, which json's path refused as out of range; float32 holds it either way.
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = _decode_json_slow(data)
    return _as_float32(value)


def _decode_json_slow(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise bad_input(f"input is not valid UTF-8 (byte {exc.start}) and not a binary tensor") from None
    except ValueError as exc:
        raise bad_input(f"input is not valid JSON: {exc}") from None


def _as_float32(value: Any) -> np.ndarray[Any, Any]:
    if not isinstance(value, (list, int, float)):
        raise bad_input(f"expected a JSON number array, got a JSON {type(value).__name__}")
    # numpy builds the array several times faster than torch.tensor(list); converting without a dtype
    # first keeps it strict (null, text and huge integers give an object or str array: refused).
    try:
        array = np.array(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise bad_input(_clip(f"expected a JSON array of numbers with equal-length rows: {exc}")) from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise bad_input(
            "expected a JSON array of numbers with equal-length rows; found null, text or out-of-range values"
        )
    return array.astype(np.float32)


def _decode_safetensors(data: bytes) -> torch.Tensor:
    try:
        tensors = safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise bad_input(_clip(f"input is not a valid safetensors payload: {exc}")) from None
    if len(tensors) != 1:
        raise bad_input(f"a safetensors input must hold exactly one tensor, got {len(tensors)}")
    return next(iter(tensors.values()))


def _decode_raw(data: bytes, dtype_entry: bytes | None, shape_entry: bytes | None) -> torch.Tensor:
    if dtype_entry is None or shape_entry is None:
        raise bad_input("a raw tensor needs both 'dtype' and 'shape' input entries")
    try:
        dtype_name = dtype_entry.decode("ascii").strip().lower().removeprefix("torch.")
        shape_text = shape_entry.decode("ascii").strip()
    except UnicodeDecodeError:
        raise bad_input("'dtype' and 'shape' must be ASCII text") from None
    dtype = DTYPES.get(dtype_name)
    if dtype is None:
        raise bad_input(f"unknown dtype {dtype_name!r}; use one of {', '.join(sorted(DTYPES))}")
    shape = _parse_shape(shape_text)
    numel = 1
    for size in shape:
        numel *= size
    itemsize = dtype.itemsize
    if numel * itemsize != len(data):
        raise bad_input(
            f"raw input has {len(data)} bytes but shape {shape} of {dtype_name} needs {numel * itemsize}"
        )
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    # bytearray: torch.frombuffer wants a writable buffer (and the copy is cheap next to the model).
    return torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape)


def _parse_shape(text: str) -> list[int]:
    try:
        if text.startswith("["):
            shape = json.loads(text)
        else:
            shape = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise bad_input(f"shape {text[:80]!r} is not a JSON list or comma-separated integers") from None
    if not isinstance(shape, list) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape
    ):
        raise bad_input(f"shape {text[:80]!r} must list non-negative integers")
    return shape


def _rejected(exc: Exception, rows: Rows) -> ModelFleetError:
    return bad_input(
        _clip(f"the model rejected input of shape {list(rows.shape)} ({str(rows.dtype).removeprefix('torch.')}): "
              f"{summarize_error(exc)}")
    )


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


def _clip(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


if TYPE_CHECKING:
    _IS_A_MODEL_RUNNER: type[ModelRunner] = TensorRunner
