"""Fixtures of the client tests: loads client_fleet.py once as `mf_client_fleet` and re-exports its fixtures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _load() -> None:
    name = "mf_client_fleet"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "client_fleet.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_load()

from mf_client_fleet import clients_python, fleet, floor_python  # noqa: E402  (fixtures, re-exported)

__all__ = ["clients_python", "fleet", "floor_python"]
