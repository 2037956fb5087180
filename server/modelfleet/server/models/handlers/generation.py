"""Built-in `generation` handler module: greedy decoding for autoregressive TorchScript models.

A handler module (not a hooks module): its streams share one decode loop per device, which a
per-request hook cannot express. The engine lives in models/generation.py.
"""

from __future__ import annotations

from ..contracts import ModelContext
from ..generation import GenerationHandler


def create(context: ModelContext) -> GenerationHandler:
    return GenerationHandler(
        context.place, name=f"{context.name}/{context.version}", max_new_tokens=context.settings.max_new_tokens
    )
