"""The systems under test, each behind the same small interface: start, register, scale, stop.

serving.py drives them one at a time: ModelFleet (`python -m modelfleet.server`, adaptive batching,
token files), TorchServe 0.12.0 unbatched and batched (torchserve/ts_ctl.py), and the bare grpc.aio
echo floor (echo_server.py). Every server is its own process group under the run's temp dir, on
free loopback ports, and is stopped by PID. Nothing here measures load; loadgen.py does.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import clients
import processes

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH / "torchserve"))
import ts_ctl  # noqa: E402

START_TIMEOUT_S = 180.0
REGISTER_TIMEOUT_S = 180.0


@dataclass
class Fixture:
    """What every system serves: the model files and, per model, the checked payload pool."""

    workdir: Path
    models: dict[str, Path]
    pools: dict[str, Path]
    pool_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    mar_store: Path | None = None

    def pool(self, model: str) -> dict[str, Any]:
        if model not in self.pool_data:
            self.pool_data[model] = json.loads(self.pools[model].read_text())
        return self.pool_data[model]


class System:
    """Base: a server process, its endpoint, and the timed lifecycle probes."""

    key = ""
    label = ""
    check = "exact"
    """How loadgen checks replies: "exact" against the model's output, "shape" for the echo."""
    manages_models = True

    def __init__(self, fixture: Fixture, *, warmup_s: float) -> None:
        self.fixture = fixture
        self.warmup_s = warmup_s
        """Load on each model after start, before the first point (TorchServe's JVM needs ~10 s)."""
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint: clients.Endpoint | None = None
        self.workdir: Path | None = None
        self.token_file: Path | None = None
        self.workers: dict[str, int] = {}

    def unavailable(self) -> str | None:
        """Why this system cannot run here, or None."""
        return None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _launch(self, workdir: Path) -> None:
        raise NotImplementedError

    def start(self, workdir: Path) -> float:
        """Launch and return seconds from process start to a Healthy Ping."""
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._launch(workdir)
        assert self.endpoint is not None and self.process is not None
        process = self.process
        try:
            return clients.wait_healthy(self.endpoint, timeout_s=START_TIMEOUT_S, alive=lambda: process.poll() is None)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from None

    def registration(self, model: str) -> clients.Registration:
        raise NotImplementedError

    def register(self, model: str) -> float:
        """Seconds from RegisterModel(synchronous) to the first good prediction."""
        assert self.endpoint is not None
        pool = self.fixture.pool(model)
        registration = self.registration(model)
        seconds = clients.register(
            self.endpoint,
            registration,
            payload=pool["payloads"][0],
            expected=pool["expected"][0] if self.check == "exact" else None,
            width=pool["width"],
            timeout_s=REGISTER_TIMEOUT_S,
        )
        self.workers[model] = clients.ready_workers(self.endpoint, model)
        return seconds

    def scale_probe(self, model: str) -> tuple[float, float]:
        """Seconds to scale `model` up by one worker, then back (both synchronous, READY checked)."""
        assert self.endpoint is not None
        workers = self.workers[model]
        up = clients.scale(self.endpoint, model, workers + 1, timeout_s=REGISTER_TIMEOUT_S)
        down = clients.scale(self.endpoint, model, workers, timeout_s=REGISTER_TIMEOUT_S)
        return up, down

    def stop(self) -> None:
        if self.process is not None:
            processes.stop_group(self.process.pid, process=self.process, grace_s=30.0)
            self.process = None

    def log_path(self) -> Path | None:
        return self.workdir / "server.log" if self.workdir else None

    def log_tail(self, lines: int = 20) -> str:
        path = self.log_path()
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Echo(System):
    key, label, check, manages_models = "echo", "grpc.aio echo (floor)", "shape", False

    def _launch(self, workdir: Path) -> None:
        address = f"127.0.0.1:{processes.free_port()}"
        replies = [f"--reply={model}={self.fixture.pool(model)['width']}" for model in self.fixture.models]
        self.process = processes.spawn(
            [sys.executable, str(BENCH / "echo_server.py"), "--address", address, *replies],
            cwd=workdir,
            log=workdir / "server.log",
        )
        self.endpoint = clients.Endpoint(inference=address, management=None)

    def register(self, model: str) -> float:
        raise NotImplementedError("the echo server has no models")


class ModelFleet(System):
    """One configuration for every point: adaptive batching with batch_size/max_batch_delay."""

    key = "modelfleet"

    def __init__(
        self, fixture: Fixture, *, warmup_s: float, workers: int, batch_size: int, max_batch_delay_ms: int
    ) -> None:
        super().__init__(fixture, warmup_s=warmup_s)
        self.initial_workers = workers
        self.batch_size = batch_size
        self.max_batch_delay_ms = max_batch_delay_ms
        self.label = f"ModelFleet b{batch_size}/{max_batch_delay_ms}ms"

    def unavailable(self) -> str | None:
        try:
            found = importlib.util.find_spec("modelfleet.server.__main__") is not None
        except ImportError:
            found = False
        return None if found else "`python -m modelfleet.server` does not exist yet"

    def _launch(self, workdir: Path) -> None:
        # Realistic auth: both APIs need a bearer token (read from 0600 files), as in production.
        tokens = {}
        for api in ("inference", "management"):
            token = secrets.token_urlsafe(24)
            path = workdir / f"{api}.token"
            path.touch(mode=0o600)
            path.write_text(token + "\n")
            tokens[api] = (token, path)
        self.token_file = tokens["inference"][1]
        inference = f"127.0.0.1:{processes.free_port()}"
        management = f"127.0.0.1:{processes.free_port()}"
        self.process = processes.spawn(
            [
                sys.executable,
                "-m",
                "modelfleet.server",
                "--inference-address",
                inference,
                "--management-address",
                management,
                "--model-store",
                str(next(iter(self.fixture.models.values())).parent),
                "--enable-model-api",
                "--inference-token-file",
                str(tokens["inference"][1]),
                "--management-token-file",
                str(tokens["management"][1]),
                "--key-file",
                str(workdir / "key_file.json"),
                "--log-level",
                "WARNING",
            ],
            cwd=workdir,
            log=workdir / "server.log",
        )
        self.endpoint = clients.Endpoint(
            inference=inference,
            management=management,
            inference_token=tokens["inference"][0],
            management_token=tokens["management"][0],
        )

    def registration(self, model: str) -> clients.Registration:
        return clients.Registration(
            model, self.fixture.models[model].name, self.initial_workers, self.batch_size, self.max_batch_delay_ms
        )


class TorchServe(System):
    """TorchServe 0.12.0 with per-request logging off, unbatched or batched."""

    def __init__(
        self, fixture: Fixture, *, warmup_s: float, workers: int, batch_size: int, max_batch_delay_ms: int
    ) -> None:
        super().__init__(fixture, warmup_s=warmup_s)
        self.initial_workers = workers
        self.batch_size = batch_size
        self.max_batch_delay_ms = max_batch_delay_ms
        if batch_size > 1:
            self.key = "torchserve-batched"
            self.label = f"TorchServe {workers}w b{batch_size}/{max_batch_delay_ms}ms"
        else:
            self.key = "torchserve"
            self.label = f"TorchServe {workers}w unbatched"

    def unavailable(self) -> str | None:
        if not (Path(sys.executable).parent / "torchserve").exists():
            return "torchserve not installed: pip install -r benchmarks/requirements.txt"
        if shutil.which("java") is None:
            return "java not found (TorchServe 0.12 needs Java 11+; 17 was used here)"
        return None

    def _launch(self, workdir: Path) -> None:
        assert self.fixture.mar_store is not None
        instance, self.process = ts_ctl.launch(workdir, self.fixture.mar_store, quiet=True)
        self.endpoint = instance.endpoint

    def log_path(self) -> Path | None:
        return self.workdir / "logs" / "console.log" if self.workdir else None

    def registration(self, model: str) -> clients.Registration:
        # max_batch_delay is unused at batch 1; TorchServe's default (100 ms) is sent then.
        delay = self.max_batch_delay_ms if self.batch_size > 1 else 100
        return clients.Registration(model, f"{model}.mar", self.initial_workers, self.batch_size, delay)
