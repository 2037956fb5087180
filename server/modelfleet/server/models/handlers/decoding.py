"""Wire forms of the `default` handler's input: one request's bytes to its rows and answer form.

Called by tensor.py (TensorRunner.run_batch) for each request before it joins a batch; every
check here (limits.py: JSON depth, dtypes, shapes against the request size) makes a bad input a
BAD_INPUT of its own. The forms are described in tensor.py's module docstring. No forward pass here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np
import orjson
import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load

from ...echo import quoted
from ...errors import bad_input
from ...settings import DEFAULT_MAX_MESSAGE_BYTES
from .limits import MAX_SHAPE_CHARS, check_json_depth, check_shape, safetensors_header

JSON, SAFETENSORS, RAW = 0, 1, 2
"""Answer forms: each request is answered in the form it was sent in, unless it asks (ACCEPT)."""
ACCEPT = "accept"
"""Input entry naming the answer's form; its one value, `safetensors`, gets a safetensors answer
(dtype and shape included) whatever the input's form."""
_ACCEPTED = {b"safetensors": SAFETENSORS}
_NUMERIC_KINDS = frozenset("biuf")
_MAX_MESSAGE = 300
"""Characters of a decoder's message (they quote library errors, which may quote the input)."""

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
NUMPY_DTYPES: dict[torch.dtype, np.dtype[Any]] = {
    dtype: np.dtype(name).newbyteorder("<")
    for dtype, name in {
        torch.float32: "float32",
        torch.float16: "float16",
        torch.float64: "float64",
        torch.int8: "int8",
        torch.int16: "int16",
        torch.int32: "int32",
        torch.int64: "int64",
        torch.uint8: "uint8",
        torch.bool: "bool",
    }.items()
}
"""Raw dtypes decoded as numpy views (little-endian, as the wire); bfloat16 has no numpy dtype."""


Rows: TypeAlias = "torch.Tensor | np.ndarray[Any, Any]"
"""A request's samples, batch dimension first: numpy for JSON (see tensor.py's docstring), else torch."""


def decode_rows(request: Mapping[str, bytes], *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> tuple[Rows, int]:
    """One request's rows and answer form (JSON stays a float32 numpy array: see tensor.py's docstring);
    BAD_INPUT (ModelFleetError) when malformed. `max_bytes` (the request size limit) bounds the
    element count a shape may name."""
    data = request.get("data")
    if data is None:
        data = request.get("body")
        if data is None:
            raise bad_input(
                "no input tensor: send it in the 'data' (or 'body') input entry as a JSON number array, "
                "a safetensors tensor, or raw bytes with 'dtype' and 'shape' entries"
            )
    accept = request.get(ACCEPT)
    answer = None if accept is None else _answer_form(accept)
    if "dtype" in request or "shape" in request:
        rows: Rows = _decode_raw(data, request.get("dtype"), request.get("shape"), max_bytes=max_bytes)
        form = RAW
    elif len(data) > 9 and data[8] == 0x7B and int.from_bytes(data[:8], "little") <= len(data) - 8:
        # safetensors: 8-byte little-endian header length, then a JSON header; JSON text never
        # starts with a length that fits the payload.
        rows, form = _decode_safetensors(data, max_bytes=max_bytes), SAFETENSORS
    else:
        rows, form = _decode_json(data), JSON
    return rows, form if answer is None else answer


def _answer_form(accept: bytes) -> int:
    form = _ACCEPTED.get(bytes(accept).strip().lower())
    if form is None:
        shown = quoted(bytes(accept[:40]).decode("ascii", "replace"))
        raise bad_input(f"unknown {ACCEPT!r} entry {shown}; its one value is 'safetensors'")
    return form


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
    # orjson refused it; json recurses per nesting level, so deep nesting is refused first (the
    # fast path needs no such check: orjson and numpy stop at their own depth limits, in C).
    check_json_depth(data)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise bad_input(f"input is not valid UTF-8 (byte {exc.start}) and not a binary tensor") from None
    except (ValueError, RecursionError) as exc:
        raise bad_input(clip(f"input is not valid JSON: {exc}")) from None


def _as_float32(value: Any) -> np.ndarray[Any, Any]:
    if not isinstance(value, (list, int, float)):
        raise bad_input(f"expected a JSON number array, got a JSON {type(value).__name__}")
    # numpy builds the array several times faster than torch.tensor(list); converting without a dtype
    # first keeps it strict (null, text and huge integers give an object or str array: refused).
    try:
        array = np.array(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise bad_input(clip(f"expected a JSON array of numbers with equal-length rows: {exc}")) from None
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise bad_input(
            "expected a JSON array of numbers with equal-length rows; found null, text or out-of-range values"
        )
    return array.astype(np.float32)


def _decode_safetensors(data: bytes, *, max_bytes: int) -> torch.Tensor:
    safetensors_header(data, max_bytes=max_bytes)  # dtype, shape and size, before the library reads it
    try:
        tensors = safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError, KeyError) as exc:
        raise bad_input(clip(f"input is not a valid safetensors payload: {exc}")) from None
    if len(tensors) != 1:
        raise bad_input(f"a safetensors input must hold exactly one tensor, got {len(tensors)}")
    return next(iter(tensors.values()))


def _decode_raw(data: bytes, dtype_entry: bytes | None, shape_entry: bytes | None, *, max_bytes: int) -> Rows:
    if dtype_entry is None or shape_entry is None:
        raise bad_input("a raw tensor needs both 'dtype' and 'shape' input entries")
    if len(shape_entry) > MAX_SHAPE_CHARS or len(dtype_entry) > MAX_SHAPE_CHARS:
        raise bad_input(f"'dtype' and 'shape' entries must be at most {MAX_SHAPE_CHARS} bytes")
    try:
        dtype_name = dtype_entry.decode("ascii").strip().lower().removeprefix("torch.")
        shape_text = shape_entry.decode("ascii").strip()
    except UnicodeDecodeError:
        raise bad_input("'dtype' and 'shape' must be ASCII text") from None
    dtype = DTYPES.get(dtype_name)
    if dtype is None:
        raise bad_input(f"unknown dtype {quoted(dtype_name)}; use one of {', '.join(sorted(DTYPES))}")
    shape = _parse_shape(shape_text)
    itemsize = dtype.itemsize
    numel = check_shape(shape, dtype_name=dtype_name, itemsize=itemsize, max_bytes=max_bytes)
    if numel * itemsize != len(data):
        raise bad_input(f"raw input has {len(data)} bytes but shape {shape} of {dtype_name} needs {numel * itemsize}")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    numpy_dtype = NUMPY_DTYPES.get(dtype)
    if numpy_dtype is not None:
        # A read-only view of the request's bytes, no copy: joining a batch copies it once (tensor.py
        # copies a lone request, so a model writing to its input never writes into the request).
        return np.frombuffer(data, dtype=numpy_dtype).reshape(shape)
    # bytearray: torch.frombuffer wants a writable buffer (and the copy is cheap next to the model).
    return torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape)


def _parse_shape(text: str) -> list[int]:
    if text.startswith("[") and text.endswith("]"):  # the common case, without json.loads
        parts = text[1:-1].split(",")
        if all(part.strip().isdigit() for part in parts):
            return [int(part) for part in parts]
    try:
        if text.startswith("["):
            shape = json.loads(text)
        else:
            shape = [int(part) for part in text.split(",") if part.strip()]
    except (ValueError, RecursionError):
        raise bad_input(f"shape {text[:80]!r} is not a JSON list or comma-separated integers") from None
    if not isinstance(shape, list) or not all(
        isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape
    ):
        raise bad_input(f"shape {text[:80]!r} must list non-negative integers")
    return shape


def clip(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."
