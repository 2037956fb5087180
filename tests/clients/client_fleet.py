"""A real `python -m modelfleet.server` for the client tests, and a way to run client scripts in their venvs.

Loaded by tests/clients/conftest.py as the module `mf_client_fleet` (importlib mode: tests import it so).

One server per test module (starting one loads torch: seconds), token auth on as in production. Its
models are written here: `twice` (TorchScript, default handler: any numeric dtype doubled, BOOL
negated, so every dtype round-trips through a real forward pass) and `tiny` (Linear 16->4, two
versions, a declared signature). Client scripts run as subprocesses in .venv-clients (tritonclient,
KServe: protobuf 6.x) or .venv-protoc (our stubs at the protobuf floor), both made by
scripts/setup.sh, and print one JSON document that the tests assert on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mf_polling import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
"""tritonclient[grpc] and kserve (requirements-clients.txt)."""
FLOOR_PYTHON = ROOT / ".venv-protoc" / "bin" / "python"
"""The stub generator's venv: the oldest protobuf/grpcio modelfleet-protos claims (protos/requirements-protoc.txt)."""
TOKEN = "client-tests-inference-token"
PORT_LINE = re.compile(r"ModelFleet (inference|management) on 127\.0\.0\.1:(\d+)")
START_TIMEOUT_S = 120.0
CLIENT_TIMEOUT_S = 120.0

TINY_SIGNATURE = {
    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 16]}],
    "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 4]}],
}


class Twice(torch.nn.Module):
    """Doubles any numeric tensor and negates a BOOL one: the answer proves the model ran on the sent dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bool:
            return torch.logical_not(x)
        return x + x


@dataclass(frozen=True)
class Fleet:
    address: str
    """host:port of the inference API (where the Open Inference services are)."""
    token: str
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def run(self, python: Path, script: str, *args: str) -> Any:
        """Run tests/clients/<script> in `python`'s venv against this server; its JSON output.

        The environment is cleaned of PYTHONPATH and PYTHONWARNINGS so the script sees only its own
        venv; its stderr and the server's log come with any failure.
        """
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONWARNINGS")}
        done = subprocess.run(
            [str(python), str(HERE / script), "--url", self.address, "--token", self.token, *args],
            capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, env=env, cwd=HERE,
        )  # fmt: skip
        assert done.returncode == 0, (
            f"{script} exited {done.returncode}\n{done.stderr[-6000:]}\n--- server:\n{self.log()[-4000:]}"
        )
        return json.loads(done.stdout)


def _write_store(store: Path) -> Path:
    from modelfleet.server.demo import write_torchscript

    store.mkdir()
    torch.jit.save(torch.jit.script(Twice()), str(store / "twice.pt"))
    write_torchscript("tiny", store / "tiny_v1.pt", seed=0)
    write_torchscript("tiny", store / "tiny_v2.pt", seed=1)
    state = store.parent / "models.json"
    state.write_text(json.dumps({"models": [
        {"name": "twice", "versions": [{"url": "twice.pt"}], "minWorkers": 1},
        {"name": "tiny", "versions": [{"url": "tiny_v1.pt#version=1", "version": "1"},
                                      {"url": "tiny_v2.pt#version=2", "version": "2"}],
         "defaultVersion": "2", "minWorkers": 1, "signature": TINY_SIGNATURE},
    ]}))  # fmt: skip
    return state


def _serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("fleet")
    state = _write_store(base / "store")
    (base / "inference.token").write_text(TOKEN + "\n")
    (base / "management.token").write_text("client-tests-management-token\n")
    log_file = base / "server.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelfleet.server",
             "--inference-address", "127.0.0.1:0", "--management-address", "127.0.0.1:0",
             "--model-store", str(base / "store"), "--desired-state", str(state),
             "--inference-token-file", str(base / "inference.token"),
             "--management-token-file", str(base / "management.token"),
             "--key-file", str(base / "key_file.json"), "--drain-delay", "0", "--grace", "5"],
            cwd=base, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:

        def ports() -> dict[str, int]:
            found = {m.group(1): int(m.group(2)) for m in PORT_LINE.finditer(log_file.read_text(errors="replace"))}
            assert process.poll() is None, f"the server exited ({process.returncode}):\n{log_file.read_text()}"
            return found if len(found) == 2 else {}

        address = f"127.0.0.1:{eventually_sync(ports, timeout=START_TIMEOUT_S, what='the port lines')['inference']}"
        eventually_sync(lambda: _serving(address), timeout=START_TIMEOUT_S, what="health SERVING")
        yield Fleet(address, TOKEN, log_file)
    finally:
        process.terminate()  # our own child, by its handle
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _python(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `bash scripts/setup.sh` (it makes the client venvs)")
    return path


@pytest.fixture(scope="session")
def clients_python() -> Path:
    return _python(CLIENTS_PYTHON)


@pytest.fixture(scope="session")
def floor_python() -> Path:
    return _python(FLOOR_PYTHON)
