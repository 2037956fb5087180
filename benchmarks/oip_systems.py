"""The systems of the OIP benchmark, behind one interface: start until every model answers, then stop.

oip.py drives them one at a time: ModelFleet (systems.ModelFleet: the same launch, token files and
RegisterModel(batch 32 / 5 ms) as serving.py; measured over OIP and, as a comparison point, over
the TorchServe Predictions JSON API of the same process), MLServer 1.7 and KServe 0.21 (each from
its own venv, running the same TorchScript files through benchmarks/competitors/), and the bare
grpc.aio OIP echo. Every server is its own process group, started with the CPU affinity that
oip.py asks for (children inherit it), on free loopback ports, and stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clients
import oip_messages
import processes
import systems

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
COMPETITORS = BENCH / "competitors"
READY_TIMEOUT_S = 180.0
SETUP_HINT = "bash benchmarks/setup-competitors.sh"


@contextlib.contextmanager
def affinity(cpus: set[int] | None) -> Iterator[None]:
    """Run the block (a spawn) with this thread's CPU affinity set to `cpus`: the child inherits it."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def tree_affinity(root: int) -> list[str]:
    """Distinct Cpus_allowed_list values over the process tree (to report what pinning really did)."""
    import procstats

    found = set()
    for pid in procstats.tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    found.add(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return sorted(found)


class OipSystem:
    """A server measured over OIP: `start()` returns seconds from spawn to every model answering right."""

    key = ""
    label = ""
    check = "exact"
    """How loadgen checks ModelInfer replies: "exact" against the model's output, "echo" for the floor."""
    json_key: str | None = None
    """Key of the Predictions-JSON comparison rows served by the same process (ModelFleet only)."""

    def __init__(self, fixture: systems.Fixture, *, cpus: set[int] | None) -> None:
        self.fixture = fixture
        self.cpus = cpus
        self.process: subprocess.Popen[bytes] | None = None
        self.target = ""
        self.token_file: Path | None = None
        self.workdir: Path | None = None
        self.grace_s = 15.0

    def unavailable(self) -> str | None:
        return None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _launch(self, workdir: Path) -> None:
        raise NotImplementedError

    def _metadata(self) -> Any:
        if self.token_file is None:
            return None
        return (("authorization", f"Bearer {self.token_file.read_text().split()[0]}"),)

    def start(self, workdir: Path) -> float:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with affinity(self.cpus):
            self._launch(workdir)
        process = self.process
        assert process is not None
        try:
            self._prepare()
            oip_messages.wait_ready(
                self.target,
                list(self.fixture.models),
                timeout_s=READY_TIMEOUT_S,
                alive=lambda: process.poll() is None,
                metadata=self._metadata(),
            )
            for model in self.fixture.models:
                pool = self.fixture.pool(model)
                oip_messages.first_good_infer(
                    self.target,
                    model,
                    pool["payloads"][0],
                    pool["expected"][0] if self.check == "exact" else None,
                    width=pool["width"],
                    echo=self.check == "echo",
                    timeout_s=READY_TIMEOUT_S,
                    metadata=self._metadata(),
                )
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from None
        return time.perf_counter() - t0

    def _prepare(self) -> None:
        """Work between spawn and readiness (ModelFleet registers its models here)."""

    def stop(self) -> None:
        if self.process is not None:
            processes.stop_group(self.process.pid, process=self.process, grace_s=self.grace_s)
            self.process = None

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "server.log" if self.workdir else None
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class ModelFleet(OipSystem):
    """serving.py's ModelFleet, unchanged: token auth on, models registered with batch 32 / 5 ms."""

    key = "modelfleet"
    json_key = "modelfleet-json"

    def __init__(
        self, fixture: systems.Fixture, *, cpus: set[int] | None, batch_size: int, max_batch_delay_ms: int, workers: int
    ) -> None:
        super().__init__(fixture, cpus=cpus)
        self.inner = systems.ModelFleet(
            fixture, warmup_s=0, workers=workers, batch_size=batch_size, max_batch_delay_ms=max_batch_delay_ms
        )
        self.label = f"ModelFleet OIP b{batch_size}/{max_batch_delay_ms}ms"
        self.json_label = f"ModelFleet JSON b{batch_size}/{max_batch_delay_ms}ms"

    def unavailable(self) -> str | None:
        why = self.inner.unavailable()
        if why is None and not (REPO / "server/modelfleet/server/rpc/open_inference.py").exists():
            why = (
                "ModelFleet has no Open Inference Protocol service yet (server/modelfleet/server/rpc/open_inference.py)"
            )
        return why

    def _launch(self, workdir: Path) -> None:
        self.inner.workdir = workdir
        self.inner._launch(workdir)
        self.process = self.inner.process
        assert self.inner.endpoint is not None
        self.target = self.inner.endpoint.inference
        self.token_file = self.inner.token_file
        self.registered: dict[str, float] = {}
        self.workers: dict[str, int] = {}

    def _prepare(self) -> None:
        assert self.inner.endpoint is not None and self.process is not None
        process = self.process
        clients.wait_healthy(self.inner.endpoint, timeout_s=READY_TIMEOUT_S, alive=lambda: process.poll() is None)
        for model in self.fixture.models:
            self.registered[model] = self.inner.register(model)  # → first good JSON prediction
        self.workers = dict(self.inner.workers)

    def stop(self) -> None:
        self.inner.process = None  # stopped here, through the same group
        super().stop()


class MLServer(OipSystem):
    """MLServer in .venv-bench-mlserver with benchmarks/competitors/mlserver_runtime.py, adaptive batching on."""

    key = "mlserver"

    def __init__(
        self,
        fixture: systems.Fixture,
        *,
        cpus: set[int] | None,
        batch_size: int,
        batch_time_ms: float,
        parallel_workers: int,
    ) -> None:
        super().__init__(fixture, cpus=cpus)
        self.venv = REPO / ".venv-bench-mlserver"
        self.batch_size = batch_size
        self.batch_time_ms = batch_time_ms
        self.parallel_workers = parallel_workers
        self.label = f"MLServer b{batch_size}/{batch_time_ms:g}ms {parallel_workers}w"
        self.grace_s = 10.0

    def unavailable(self) -> str | None:
        if not (self.venv / "bin" / "mlserver").exists():
            return f"{self.venv.name} is missing: {SETUP_HINT}"
        return None

    def _launch(self, workdir: Path) -> None:
        grpc_port, http_port = processes.free_port(), processes.free_port()
        root = workdir / "mlserver"
        root.mkdir(parents=True, exist_ok=True)
        settings = {
            "debug": False,
            "host": "127.0.0.1",
            "grpc_port": grpc_port,
            "http_port": http_port,  # MLServer always starts its REST server; nothing calls it
            "metrics_endpoint": None,  # metrics server off
            "parallel_workers": self.parallel_workers,
            "load_models_at_startup": True,
        }
        (root / "settings.json").write_text(json.dumps(settings, indent=1))
        for model, path in self.fixture.models.items():
            (root / model).mkdir(exist_ok=True)
            model_settings = {
                "name": model,
                "implementation": "mlserver_runtime.TorchScriptRuntime",
                "max_batch_size": self.batch_size,
                "max_batch_time": self.batch_time_ms / 1000,
                "parameters": {"uri": str(path)},
            }
            (root / model / "model-settings.json").write_text(json.dumps(model_settings, indent=1))
        env = {**os.environ, "PYTHONPATH": str(COMPETITORS)}
        env.pop("VIRTUAL_ENV", None)
        self.process = processes.spawn(
            [str(self.venv / "bin" / "mlserver"), "start", str(root)], cwd=workdir, log=workdir / "server.log", env=env
        )
        self.target = f"127.0.0.1:{grpc_port}"


class KServe(OipSystem):
    """KServe's Python ModelServer in .venv-bench-kserve with benchmarks/competitors/kserve_model.py."""

    key = "kserve"

    def __init__(self, fixture: systems.Fixture, *, cpus: set[int] | None, grpc_threads: int) -> None:
        super().__init__(fixture, cpus=cpus)
        self.venv = REPO / ".venv-bench-kserve"
        self.grpc_threads = grpc_threads
        self.label = "KServe unbatched"
        self.grace_s = 10.0

    def unavailable(self) -> str | None:
        if not (self.venv / "bin" / "python").exists() or not list(self.venv.glob("lib/python*/site-packages/kserve")):
            return f"{self.venv.name} is missing: {SETUP_HINT}"
        return None

    def _launch(self, workdir: Path) -> None:
        grpc_port, http_port = processes.free_port(), processes.free_port()
        models = [f"--model={name}={path}" for name, path in self.fixture.models.items()]
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)
        self.process = processes.spawn(
            [
                str(self.venv / "bin" / "python"),
                str(COMPETITORS / "kserve_model.py"),
                f"--grpc-port={grpc_port}",
                f"--http-port={http_port}",
                f"--grpc-threads={self.grpc_threads}",
                *models,
            ],
            cwd=workdir,
            log=workdir / "server.log",
            env=env,
        )
        self.target = f"127.0.0.1:{grpc_port}"


class Echo(OipSystem):
    key, label, check = "echo", "grpc.aio OIP echo (floor)", "echo"

    def _launch(self, workdir: Path) -> None:
        self.target = f"127.0.0.1:{processes.free_port()}"
        self.process = processes.spawn(
            [sys.executable, str(BENCH / "oip_echo_server.py"), "--address", self.target],
            cwd=workdir,
            log=workdir / "server.log",
        )
