"""One-command demo of the serving image: build demo models, start a server, show a prediction.

`python -m modelfleet.server.quickstart [--once]` runs `python -m modelfleet.server` as a child
process on free loopback ports with token auth on, waits for gRPC health, calls Predictions with
the TorchServe API using the generated inference token, prints the answer and the grpcurl
equivalent, then keeps serving until Ctrl-C (or stops at once with --once). It stops only the
process it started.
"""

from __future__ import annotations

import argparse
import json
import os
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
            for reply in stub.Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s, wait_for_ready=True
            ):
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            code = process.poll()
            raise SystemExit(
                f"server not SERVING within {timeout_s:g}s ({exc.code().name}); exit code {code}"
            ) from None
    raise SystemExit("health stream ended before the server was SERVING")


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
        print(
            "Try it yourself:\n  grpcurl -plaintext -H 'authorization: Bearer "
            f"{token}' -d '{{\"model_name\":\"tiny\",\"input\":{{\"data\":\"'$(echo -n "
            f"'{json.dumps(SAMPLE)}' | base64 -w0)'\"}}}}' {inference} "
            "org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions",
            flush=True,
        )
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
