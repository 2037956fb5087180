"""Build the benchmark's .mar archives and start/stop one TorchServe 0.12.0 instance, by PID.

systems.py imports it; `python benchmarks/torchserve/ts_ctl.py start WORKDIR` / `stop WORKDIR`
does the same by hand (models, archives, config, logs and PID file all under WORKDIR). Each
instance gets its own working directory: java.io.tmpdir (worker sockets and TorchServe's PID file),
logs and metrics live there, and its gRPC/HTTP ports are free loopback ports, so an instance never
sees or stops another TorchServe on the machine. Token auth is disabled (--disable-token-auth).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # run as a script: make benchmarks/ importable
    sys.path.insert(0, str(HERE.parent))

import clients  # noqa: E402
import processes  # noqa: E402

HANDLER = HERE / "json_list_handler.py"
BASE_CONFIG = HERE / "config.properties"
QUIET_LOG_CONFIG = HERE / "log4j2-quiet.xml"


def _venv_tool(name: str) -> str:
    """A console script installed next to this interpreter (torchserve, torch-model-archiver)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{path} not found: pip install -r benchmarks/requirements.txt")
    return str(path)


def build_mars(models: dict[str, Path], store: Path) -> dict[str, Path]:
    """`<name>.mar` for each TorchScript file, with the JSON-list handler, version 1.0."""
    store.mkdir(parents=True, exist_ok=True)
    built = {}
    for name, serialized in models.items():
        subprocess.run(
            [
                _venv_tool("torch-model-archiver"),
                "--model-name",
                name,
                "--version",
                "1.0",
                "--serialized-file",
                str(serialized),
                "--handler",
                str(HANDLER),
                "--export-path",
                str(store),
                "--force",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        built[name] = store / f"{name}.mar"
    return built


@dataclass(frozen=True)
class Instance:
    pid: int
    """The launcher (`torchserve --foreground`); java and the workers are in its process group."""
    workdir: Path
    endpoint: clients.Endpoint


def launch(workdir: Path, store: Path, *, quiet: bool = True) -> tuple[Instance, subprocess.Popen[bytes]]:
    """Start TorchServe in the background (not waiting for health: the caller times that)."""
    tmp, logs = workdir / "tmp", workdir / "logs"
    tmp.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    ports = {key: processes.free_port() for key in ("grpc_inf", "grpc_mgmt", "http_inf", "http_mgmt", "metrics")}
    config = workdir / "config.properties"
    config.write_text(
        BASE_CONFIG.read_text()
        + "\n# Written by ts_ctl.py for this instance\n"
        + f"grpc_inference_address=127.0.0.1\ngrpc_inference_port={ports['grpc_inf']}\n"
        + f"grpc_management_address=127.0.0.1\ngrpc_management_port={ports['grpc_mgmt']}\n"
        + f"inference_address=http://127.0.0.1:{ports['http_inf']}\n"
        + f"management_address=http://127.0.0.1:{ports['http_mgmt']}\n"
        + f"metrics_address=http://127.0.0.1:{ports['metrics']}\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("TS_")}
    env.update(TMPDIR=str(tmp), TEMP=str(tmp), LOG_LOCATION=str(logs), METRICS_LOCATION=str(logs))
    command = [
        _venv_tool("torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--ts-config",
        str(config),
        "--model-store",
        str(store),
        "--disable-token-auth",
        "--enable-model-api",
    ]
    if quiet:
        command += ["--log-config", str(QUIET_LOG_CONFIG)]
    process = processes.spawn(command, cwd=workdir, log=logs / "console.log", env=env)
    (workdir / "launcher.pid").write_text(str(process.pid))
    endpoint = clients.Endpoint(
        inference=f"127.0.0.1:{ports['grpc_inf']}", management=f"127.0.0.1:{ports['grpc_mgmt']}"
    )
    (workdir / "endpoint.json").write_text(json.dumps(endpoint.__dict__))
    return Instance(process.pid, workdir, endpoint), process


def stop(workdir: Path, *, process: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the instance's process group (launcher, java, workers); SIGKILL after 30 s."""
    pid_file = workdir / "launcher.pid"
    if not pid_file.exists():
        return
    processes.stop_group(int(pid_file.read_text()), process=process, grace_s=30.0)
    pid_file.unlink()


def log_tail(workdir: Path, lines: int = 20) -> str:
    try:
        return "\n".join((workdir / "logs" / "console.log").read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "stop"))
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--verbose-logs", action="store_true", help="TorchServe's default (per-request) logging")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    if args.command == "stop":
        stop(workdir)
        print(f"stopped TorchServe of {workdir}")
        return 0
    import payloads  # torch: only for building the demo models

    models = payloads.write_models(workdir / "models")
    store = workdir / "model_store"
    build_mars(models, store)
    instance, process = launch(workdir, store, quiet=not args.verbose_logs)
    try:
        seconds = clients.wait_healthy(instance.endpoint, timeout_s=180, alive=lambda: process.poll() is None)
    except RuntimeError as exc:
        print(f"{exc}\n{log_tail(workdir)}", file=sys.stderr)
        stop(workdir, process=process)
        return 1
    print(
        f"TorchServe healthy after {seconds:.2f}s: pid {instance.pid}, inference {instance.endpoint.inference}, "
        f"management {instance.endpoint.management}; archives in {store} (not registered)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
