"""Loads tests/server/open_inference/oip_harness.py once as `mf_oip_harness` (as that folder's conftest
does: tests have no packages in importlib mode) and re-exports its fixtures for the OIP attack tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _load_harness() -> None:
    name = "mf_oip_harness"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "open_inference" / "oip_harness.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_load_harness()

from mf_oip_harness import served, settings_for  # noqa: E402  (fixtures, re-exported)

__all__ = ["served", "settings_for"]
