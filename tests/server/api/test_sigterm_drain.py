"""`python -m modelfleet.server` on SIGTERM: health NOT_SERVING, new calls refused, in-flight calls finish, exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelfleet.protos import inference_pb2, inference_pb2_grpc

from mf_polling import eventually

R = health_pb2.HealthCheckResponse
SAMPLE = json.dumps([0.5] * 16).encode()

FILE_GATE_HANDLER = '''"""Test handler: a request blocks on the FIFO <MF_GATE_DIR>/release until the test writes it."""
import json
import os
from pathlib import Path

import torch


def preprocess(inputs):
    gate = Path(os.environ["MF_GATE_DIR"])
    (gate / "entered").touch()
    with open(gate / "release", "rb") as fifo:  # blocks until the test opens the FIFO to write
        fifo.read()
    return torch.tensor([json.loads(inputs["data"])], dtype=torch.float32)
'''

PORT_LINE = re.compile(r"ModelFleet (inference|management) on 127\.0\.0\.1:(\d+)")


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


class ServerProcess:
    """A server child process; its stderr is collected, its ports parsed from the start log."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.ports: dict[str, int] = {}
        self.started = asyncio.Event()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            match = PORT_LINE.search(line)
            if match:
                self.ports[match.group(1)] = int(match.group(2))
                if len(self.ports) == 2:
                    self.started.set()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
async def server(tmp_path: Path, make_model: Callable[..., Path], model_store: Path) -> AsyncIterator[ServerProcess]:
    make_model("tiny.pt")
    handlers = tmp_path / "handlers"
    handlers.mkdir()
    (handlers / "mf_file_gate.py").write_text(FILE_GATE_HANDLER)
    gate = tmp_path / "gate"
    gate.mkdir()
    os.mkfifo(gate / "release")
    state = tmp_path / "models.json"
    state.write_text(json.dumps({"models": [
        {"name": "tiny", "versions": [{"url": "tiny.pt"}], "minWorkers": 1, "handler": "mf_file_gate"},
    ]}))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(handlers), os.environ.get("PYTHONPATH", "")])}
    env["MF_GATE_DIR"] = str(gate)
    env["MODELFLEET_TRUSTED_HANDLERS"] = "mf_file_gate"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "modelfleet.server",
        "--inference-address", "127.0.0.1:0", "--management-address", "127.0.0.1:0",
        "--disable-token-auth", "--model-store", str(model_store), "--desired-state", str(state),
        "--drain-delay", "0", "--grace", "60",
        cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    child = ServerProcess(process)
    try:
        await asyncio.wait_for(child.started.wait(), 60)
        yield child
    finally:
        if process.returncode is None:
            process.kill()  # only our own child, by its handle
            await process.wait()
        await asyncio.wait_for(child.reader, 10)


async def test_sigterm_drains_and_the_in_flight_call_finishes(server: ServerProcess, tmp_path: Path) -> None:
    address = f"127.0.0.1:{server.ports['inference']}"
    async with aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        for _ in range(10):  # NOT_SERVING while loading, then SERVING
            first = await asyncio.wait_for(watch.read(), 60)
            if first.status == R.SERVING:
                break
        assert first.status == R.SERVING, server.log
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        in_flight = asyncio.ensure_future(
            stub.Predictions(inference_pb2.PredictionsRequest(model_name="tiny", input={"data": SAMPLE}), timeout=60)
        )
        await eventually(
            lambda: (tmp_path / "gate" / "entered").exists() or in_flight.done(),
            timeout=60,
            what="the request to reach the model",
        )
        assert (tmp_path / "gate" / "entered").exists(), server.log

        server.process.send_signal(signal.SIGTERM)
        reply = await asyncio.wait_for(watch.read(), 30)
        assert reply.status == R.NOT_SERVING

        # Listeners close right after the drain delay (0 here); then new connections are refused.
        async def refuses() -> bool:
            return not await _accepts(server.ports["inference"])

        await eventually(refuses, timeout=30, what="the inference listener to close")
        async with aio.insecure_channel(address) as fresh:
            late = inference_pb2_grpc.InferenceAPIsServiceStub(fresh).Predictions(
                inference_pb2.PredictionsRequest(model_name="tiny", input={"data": SAMPLE}), timeout=10
            )
            with pytest.raises(aio.AioRpcError) as refused:
                await late
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not in_flight.done()

        # O_NONBLOCK: fails at once (ENXIO) instead of hanging if the handler is not reading.
        os.close(os.open(tmp_path / "gate" / "release", os.O_WRONLY | os.O_NONBLOCK))
        result = await asyncio.wait_for(in_flight, 60)
        assert len(json.loads(result.prediction)) in (1, 4)
    assert await asyncio.wait_for(server.process.wait(), 60) == 0, server.log
    assert "Stopped" in server.log
