"""One-command demo of the serving image: build demo models, start a server, show a prediction.

`python -m modelfleet.server.quickstart [--once]` runs `python -m modelfleet.server` as a child
process on free loopback ports with token auth on, waits for gRPC health, calls Predictions with
the TorchServe API using the generated inference token, prints the answer and the grpcurl
equivalent (grpcurl by absolute path, so it works when pasted into a shell without the venv), then
keeps serving until Ctrl-C (or stops at once with --once). It stops only the process it started.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelfleet.protos import inference_pb2, inference_pb2_grpc

from .demo import write_torchscript

SAMPLE = [float(i) / 16 for i in range(16)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_serving(address: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Follow grpc.health.v1 Watch of "" until SERVING (wait_for_ready covers the server starting)."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            for reply in stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s, wait_for_ready=True):
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            code = process.poll()
            raise SystemExit(
                f"server not SERVING within {timeout_s:g}s ({exc.code().name}); exit code {code}"
            ) from None
    raise SystemExit("health stream ended before the server was SERVING")


def grpcurl_path() -> Path | None:
    """grpcurl by absolute path: setup installs it next to this Python (.venv/bin), which a fresh
    shell does not have on PATH, so a hint saying plain `grpcurl` would fail when pasted."""
    beside = Path(sys.executable).parent / "grpcurl"  # not resolved: .venv/bin/python is a symlink
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside.absolute()
    found = shutil.which("grpcurl")
    return None if found is None else Path(found).absolute()


def _grpcurl_hint(*, token: str, inference: str) -> str:
    grpcurl = grpcurl_path()
    if grpcurl is None:
        return "(grpcurl is not installed: `bash scripts/setup.sh` puts it next to this Python)"
    data = base64.b64encode(json.dumps(SAMPLE).encode()).decode()
    body = json.dumps({"model_name": "tiny", "input": {"data": data}})
    return (
        "Try it yourself (paste as printed):\n  "
        f"{shlex.quote(str(grpcurl))} -plaintext -H {shlex.quote(f'authorization: Bearer {token}')} "
        f"-d {shlex.quote(body)} {inference} org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="stop after showing the prediction")
    parser.add_argument("--workdir", type=Path, default=None, help="where the model store and key file go")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modelfleet-quickstart-"))
    store = workdir / "model_store"
    store.mkdir(parents=True, exist_ok=True)
    for kind in ("tiny", "mlp"):
        write_torchscript(kind, store / f"{kind}.pt")
    inference, management = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    key_file = workdir / "key_file.json"
    command = [
        sys.executable, "-m", "modelfleet.server",
        "--model-store", str(store),
        "--models", "tiny=tiny.pt", "mlp=mlp.pt",
        "--inference-address", inference,
        "--management-address", management,
        "--key-file", str(key_file),
    ]  # fmt: skip
    print("$", " ".join(command), flush=True)
    process = subprocess.Popen(command, cwd=workdir, start_new_session=True)
    try:
        _wait_serving(inference, process, timeout_s=120)
        token = json.loads(key_file.read_text())["inference"]["key"]
        with grpc.insecure_channel(inference) as channel:
            stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
            reply = stub.Predictions(
                inference_pb2.PredictionsRequest(model_name="tiny", input={"data": json.dumps(SAMPLE).encode()}),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=30,
            )
        print(f"Predictions(tiny, {SAMPLE[:3]}...) -> {reply.prediction.decode()}")
        print(_grpcurl_hint(token=token, inference=inference), flush=True)
        if not args.once:
            print(f"Serving on {inference} (inference) and {management} (management); Ctrl-C stops.", flush=True)
            process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
