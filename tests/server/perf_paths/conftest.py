"""Fixtures for the hot-path tests: the domain harness of ../registry/domain_harness.py (registries, eager)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _load_harness() -> None:
    name = "mf_domain_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "registry" / "domain_harness.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_load_harness()

from mf_domain_harness import registries  # noqa: E402  (fixture, re-exported)

__all__ = ["registries"]
