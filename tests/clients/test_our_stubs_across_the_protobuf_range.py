"""modelfleet-protos' stubs work with the oldest and the newest protobuf it declares, against a real server.

The floor (protobuf 6.30.0, grpcio 1.72.2: the generator's own venv, .venv-protoc) and this suite's
venv (protobuf 7.36.x) each run tests/clients/stub_calls.py with both proto packages; the answers must
be the same. That is what lets a tritonclient or KServe user (protobuf<7) install modelfleet-protos.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import google.protobuf
import pytest

from mf_client_fleet import Fleet


def _expected(package: str) -> dict[str, Any]:
    return {
        "live": True,
        "ready": True,
        "model_ready": True,
        "server_name": "modelfleet",
        "metadata": {
            "name": "tiny",
            "versions": ["1", "2"],
            "platform": "pytorch_torchscript",
            "inputs": [["features", "FP32", [-1, 16]]],
            "outputs": [["scores", "FP32", [-1, 4]]],
        },
        "raw": {"id": "raw", "name": "output__0", "datatype": "FP32", "shape": [1, 3], "values": [3.0, -4.0, 0.5]},
        "typed": {"datatype": "INT64", "shape": [2, 2], "values": [2, -4, 6, 2**41], "raw_contents": 0},
        "unknown_model": "NOT_FOUND",
        **({"stream": [["", "s0", 0.0], ["", "s1", 2.0], ["", "s2", 4.0]]} if package == "inference" else {}),
    }


@pytest.mark.parametrize("package", ["inference", "torchserve"])
def test_the_floor_venv_calls_the_server_with_our_stubs(fleet: Fleet, floor_python: Path, package: str) -> None:
    result = fleet.run(floor_python, "stub_calls.py", "--package", package)
    assert (result.pop("protobuf"), result.pop("grpcio")) == ("6.30.0", "1.72.2")
    assert result == _expected(package)


@pytest.mark.parametrize("package", ["inference", "torchserve"])
def test_the_main_venv_calls_the_server_with_our_stubs(fleet: Fleet, package: str) -> None:
    result = fleet.run(Path(sys.executable), "stub_calls.py", "--package", package)
    assert result.pop("protobuf") == google.protobuf.__version__
    assert google.protobuf.__version__.startswith("7.")
    result.pop("grpcio")
    assert result == _expected(package)
