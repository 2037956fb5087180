"""How client-supplied text may appear in errors, health replies and logs: clipped, never whole.

A client controls names, service names and input bytes up to the message size (6.5 MB by default);
echoing them whole made 64 health checks cost 2 GB of memory (issue 10, finding 4). Domain code
clips what it quotes; rpc/status.py and rpc/error_details.py clip every message and ErrorInfo value
once more on the way out, so no path can send megabytes back. No grpc or torch import here.
"""

from __future__ import annotations

from collections.abc import Mapping

ECHO_LIMIT = 200
"""Characters of one client value kept when it is quoted (names, service names, shapes, ...)."""

MESSAGE_LIMIT = 1_000
"""Characters of a whole error message sent to a client; server text plus a few clipped values fit."""


def clip(value: str, limit: int = ECHO_LIMIT) -> str:
    """`value` if short, else its first `limit` characters, an ellipsis and the original length."""
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... ({len(value):,} characters)"


def quoted(value: str, limit: int = ECHO_LIMIT) -> str:
    """repr() of a client value, clipped first so repr never copies megabytes (and clipped again:
    escapes can make a character ten)."""
    shown = repr(value[:limit])
    if len(shown) > limit + 2:
        shown = shown[: limit + 1] + shown[0]  # keep the closing quote
    elif len(value) <= limit:
        return shown
    return f"{shown}... ({len(value):,} characters)"


def clip_metadata(metadata: Mapping[str, str], limit: int = ECHO_LIMIT) -> dict[str, str]:
    """ErrorInfo metadata with every key and value clipped (values often echo client fields)."""
    return {clip(key, limit): clip(value, limit) for key, value in metadata.items()}
