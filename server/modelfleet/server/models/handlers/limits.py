"""What one request may ask of a built-in handler, checked before it joins a batch, and how big an answer may be.

Called by tensor.py (and the JSON depth check by models/generation.py) while a request is decoded,
so a bad input fails alone with BAD_INPUT instead of raising inside the batch; and before an answer
is encoded, so a small request cannot make the server build an answer gRPC will refuse to send.
Pure checks on shapes, dtypes and sizes: no forward pass, no grpc.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson
import torch

from ...echo import quoted
from ...errors import ErrorKind, ModelFleetError, Reason, bad_input

MAX_DIMS = 64
"""Most dimensions a tensor input may have (numpy's own limit; no model needs more)."""

MAX_JSON_DEPTH = MAX_DIMS + 1
"""Deepest JSON nesting read: a MAX_DIMS tensor, or an object holding one."""

MAX_SHAPE_CHARS = 2_048
"""Longest raw `shape` entry: MAX_DIMS sizes of up to 20 digits fit with room for spaces."""

RESPONSE_OVERHEAD = 64
"""Bytes of a response message besides the answer (field tags, lengths, a short sequence_id)."""

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
"""safetensors dtypes accepted as input: the same set as a raw tensor's `dtype` entry (tensor.DTYPES)."""

_INT64_MAX = 2**63 - 1


def json_depth(data: bytes) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings count too: such input is refused anyway).

    Vectorised over the bracket positions only, so a 6 MB body costs a few milliseconds and no
    Python recursion; callers use it off the hot path (before the slow json parser, or on small bodies).
    """
    codes = np.frombuffer(data, dtype=np.uint8)
    opening = (codes == 0x5B) | (codes == 0x7B)
    positions = np.flatnonzero(opening | (codes == 0x5D) | (codes == 0x7D))
    if positions.size == 0:
        return 0
    steps = np.where(opening[positions], 1, -1).astype(np.int32)
    return int(np.cumsum(steps).max())


def check_json_depth(data: bytes, *, limit: int = MAX_JSON_DEPTH) -> None:
    """BAD_INPUT when `data` nests deeper than `limit` (Python's json would hit its recursion limit)."""
    if data.count(b"[") + data.count(b"{") <= limit:  # C-speed count: nothing can nest deeper
        return
    depth = json_depth(data)
    if depth > limit:
        raise bad_input(f"JSON input nests {depth} levels deep; at most {limit} are read")


def check_shape(shape: Sequence[int], *, dtype_name: str, itemsize: int, max_bytes: int) -> int:
    """The element count of `shape`, or BAD_INPUT when no message could carry it.

    A tensor of `shape` needs its element count times `itemsize` bytes, so that product is
    bounded by the request size; the sizes of an empty tensor's other dimensions are held to
    the same bound, so `[0, 2**64]` cannot overflow torch's size arithmetic.
    """
    if len(shape) > MAX_DIMS:
        raise bad_input(f"shape has {len(shape)} dimensions; at most {MAX_DIMS} are accepted")
    limit = max(max_bytes // max(itemsize, 1), 1)
    numel = 1
    spanned = 1  # the product of the non-zero sizes
    for size in shape:
        if size > limit:
            raise bad_input(
                f"shape dimension {_short_int(size)} is larger than a request can carry: at most {limit:,} "
                f"{dtype_name} elements fit in {max_bytes:,} bytes"
            )
        numel *= size
        spanned *= max(size, 1)
        if spanned > limit:
            raise bad_input(
                f"shape {_short_shape(shape)} spans more than {limit:,} {dtype_name} elements, "
                f"more than a request of at most {max_bytes:,} bytes can carry"
            )
    return numel


def safetensors_header(data: bytes, *, max_bytes: int) -> None:
    """Validate a safetensors payload's header before the library reads it: one tensor, a supported
    dtype, a shape whose element count fits the payload. BAD_INPUT otherwise.

    The library raises KeyError for dtypes this torch cannot hold (F4, F6_E2M3, F8_E8M0, ...) and
    would accept dtypes no model here takes, so the header is checked first.
    """
    length = int.from_bytes(data[:8], "little")
    try:
        header = orjson.loads(data[8 : 8 + length])  # orjson: bounded depth, no Python recursion
    except orjson.JSONDecodeError as exc:
        raise bad_input(f"input is not a valid safetensors payload: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise bad_input("input is not a valid safetensors payload: header is not a JSON object")
    entries = [(name, entry) for name, entry in header.items() if name != "__metadata__"]
    if len(entries) != 1:
        raise bad_input(f"a safetensors input must hold exactly one tensor, got {len(entries)}")
    name, entry = entries[0]
    if not isinstance(entry, dict):
        raise bad_input(f"safetensors tensor {quoted(name)} has no dtype/shape entry")
    named = entry.get("dtype")
    dtype_name = named if isinstance(named, str) else ""
    dtype = SAFETENSORS_DTYPES.get(dtype_name)
    if dtype is None:
        shown = quoted(dtype_name) if isinstance(named, str) else "missing"
        raise bad_input(f"safetensors dtype {shown} is not supported; use one of {', '.join(SAFETENSORS_DTYPES)}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(_is_size(size) for size in shape):
        raise bad_input("safetensors shape must list non-negative integers")
    numel = check_shape(shape, dtype_name=dtype_name, itemsize=dtype.itemsize, max_bytes=max_bytes)
    if numel * dtype.itemsize > len(data) - 8 - length:
        raise bad_input(
            f"safetensors tensor of shape {_short_shape(shape)} ({dtype_name}) needs {numel * dtype.itemsize:,} "
            f"bytes; the payload holds {len(data) - 8 - length:,}"
        )


def answer_floor(numel: int, dtype: torch.dtype, *, json_text: bool) -> int:
    """Fewest bytes an answer of `numel` elements can take: exact for raw bytes, a floor for JSON.

    JSON writes each element as at least "0.0" (floats), "0" (integers) or "true", each but the
    last followed by ", "; refusing on this floor never refuses an answer that would have fit.
    Arithmetic only (no tensor call), so it costs the batched JSON path nothing measurable.
    """
    if not json_text:
        return numel * dtype.itemsize
    if dtype == torch.bool:
        shortest = 4
    elif dtype.is_floating_point or dtype.is_complex:
        shortest = 3
    else:
        shortest = 1
    return numel * (shortest + 2)


def too_large(size: int, *, limit: int, shape: Sequence[int], exact: bool) -> ModelFleetError:
    """RESOURCE_EXHAUSTED / MESSAGE_TOO_LARGE naming the answer's size and the server's limit."""
    measure = f"{size:,} bytes" if exact else f"at least {size:,} bytes"
    return ModelFleetError(
        ErrorKind.RESOURCE_EXHAUSTED,
        Reason.MESSAGE_TOO_LARGE,
        f"the answer (output shape {_short_shape(list(shape))}) would be {measure}; this server sends at most "
        f"{limit:,} bytes per answer (--max-response-size): send fewer samples per request",
        metadata={"estimatedBytes": str(size), "limitBytes": str(limit)},
    )


def _is_size(size: object) -> bool:
    return isinstance(size, int) and not isinstance(size, bool) and size >= 0


def _short_int(value: int) -> str:
    text = str(value) if value.bit_length() < 256 else f"2**{value.bit_length() - 1}+"
    return text


def _short_shape(shape: Sequence[int]) -> str:
    shown = ", ".join(_short_int(size) for size in shape[:8])
    return f"[{shown}{', ...' if len(shape) > 8 else ''}]"


def fits_int64(value: int) -> bool:
    return -_INT64_MAX - 1 <= value <= _INT64_MAX
