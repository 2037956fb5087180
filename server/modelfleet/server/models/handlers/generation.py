"""Built-in `generation` handler: greedy decoding for autoregressive TorchScript models.

The engine lives in models/generation.py; loading.py builds the LoadedModel with
generation.generation_model() because streams need a shared decode loop, not just a runner.
`make_runner` serves the worker path (Predictions: whole generations, batched).
"""

from __future__ import annotations

from typing import Any

from ..contracts import ModelRunner
from ..generation import DEFAULT_MAX_NEW_TOKENS, GenerationEngine, GenerationRunner
from . import ModelState
from .trusted import TrustedHooks


def make_runner(module: Any, *, device: str, state: ModelState, hooks: TrustedHooks | None) -> ModelRunner:
    engine = GenerationEngine(module, device=device, max_new_tokens_limit=DEFAULT_MAX_NEW_TOKENS, name="generation")
    return GenerationRunner(engine)
