"""Fixtures for the bad-input tests: the API tests' real-server harness, loaded by path.

tests/ has no packages (importlib mode), so tests/server/api/conftest.py is loaded once as the
module `mf_api_harness` (shared with tests/server/limits) and its fixtures are re-exported here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _load_api_harness() -> None:
    name = "mf_api_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent.parent / "api" / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_load_api_harness()

from mf_api_harness import mode, start_api  # noqa: E402  (fixtures, re-exported)

__all__ = ["mode", "start_api"]
