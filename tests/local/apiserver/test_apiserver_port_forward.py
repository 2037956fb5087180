"""Real `kubectl port-forward` (WebSocket and SPDY) carries a real gRPC Predictions call to a pod."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from modelfleet.local.apiserver import RunningApi
from modelfleet.protos import inference_pb2, inference_pb2_grpc

from mf_polling import eventually_sync
from mf_tools import tool_path


class _Upper(inference_pb2_grpc.InferenceAPIsServiceServicer):
    def Predictions(self, request, context):  # noqa: N802 (the gRPC method name)
        body = json.dumps({"model": request.model_name, "echo": request.input["data"].decode().upper()})
        return inference_pb2.PredictionResponse(prediction=body.encode())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def grpc_pod(core, api: RunningApi) -> Iterator[int]:
    """A Running pod `model-0` (label app=model) at 127.0.0.1 whose gRPC server listens on the returned port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    inference_pb2_grpc.add_InferenceAPIsServiceServicer_to_server(_Upper(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "model-0", "labels": {"app": "model"}},
            "spec": {
                "containers": [
                    {"name": "server", "image": "modelfleet-server", "ports": [{"name": "grpc", "containerPort": port}]}
                ]
            },
        },
    )
    core.patch_namespaced_pod_status(
        "model-0",
        "default",
        {
            "status": {
                "phase": "Running",
                "podIP": "127.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": "server",
                        "ready": True,
                        "restartCount": 0,
                        "image": "modelfleet-server",
                        "imageID": "",
                        "state": {"running": {}},
                    }
                ],
            }
        },
    )
    try:
        yield port
    finally:
        server.stop(grace=None)


def _port_forward(
    kubeconfig: Path, tmp_path: Path, target: str, ports: str, *, websockets: bool
) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        KUBECONFIG=str(kubeconfig),
        HOME=str(tmp_path),
        KUBECTL_PORT_FORWARD_WEBSOCKETS="true" if websockets else "false",
    )
    return subprocess.Popen(
        [tool_path("kubectl"), "port-forward", target, ports],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _predict(port: int) -> dict[str, str]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        reply = stub.Predictions(
            inference_pb2.PredictionsRequest(model_name="tiny", input={"data": b"hello"}), timeout=5
        )
    return json.loads(reply.prediction)


def _forwarding(process: subprocess.Popen[str], local: int) -> Callable[[], bool]:
    """True once kubectl listens on `local` (fails at once if kubectl exited)."""

    def ready() -> bool:
        assert process.poll() is None, process.communicate()[0]
        try:
            with socket.create_connection(("127.0.0.1", local), timeout=1):
                return True
        except ConnectionRefusedError:
            return False

    return ready


@pytest.mark.parametrize("websockets", [True, False], ids=["websocket", "spdy"])
def test_kubectl_port_forward_to_a_pod_carries_grpc_predictions(api, kubeconfig, tmp_path, grpc_pod, websockets):
    local = _free_port()
    process = _port_forward(kubeconfig, tmp_path, "pod/model-0", f"{local}:{grpc_pod}", websockets=websockets)
    try:
        eventually_sync(_forwarding(process, local), timeout=20)
        assert _predict(local) == {"model": "tiny", "echo": "HELLO"}
        assert _predict(local) == {"model": "tiny", "echo": "HELLO"}  # a second connection on one session
        assert process.poll() is None
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "error" not in output.lower(), output
    assert set(api.emulator.port_forwards) == {"websocket" if websockets else "spdy"}


@pytest.mark.parametrize("websockets", [True, False], ids=["websocket", "spdy"])
def test_kubectl_port_forward_to_a_service_reaches_a_ready_pod_behind_it(
    api, core, kubeconfig, tmp_path, grpc_pod, websockets
):
    core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "model"},
            "spec": {"selector": {"app": "model"}, "ports": [{"name": "grpc", "port": 7070, "targetPort": "grpc"}]},
        },
    )
    local = _free_port()
    process = _port_forward(kubeconfig, tmp_path, "service/model", f"{local}:7070", websockets=websockets)
    try:
        eventually_sync(_forwarding(process, local), timeout=20)
        assert _predict(local) == {"model": "tiny", "echo": "HELLO"}
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_port_forward_to_a_closed_port_reports_the_connection_error(api, kubeconfig, tmp_path, grpc_pod, core):
    closed = _free_port()  # nothing listens there
    local = _free_port()
    process = _port_forward(kubeconfig, tmp_path, "pod/model-0", f"{local}:{closed}", websockets=True)
    try:
        eventually_sync(_forwarding(process, local), timeout=20)
        with pytest.raises(grpc.RpcError):
            _predict(local)
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert f"dial tcp 127.0.0.1:{closed}: connect: connection refused" in output, output


def test_port_forward_to_a_pod_that_is_not_running_is_refused_by_the_api(api, core):
    # kubectl checks the phase itself first; the API must refuse too (other clients, races).
    core.create_namespaced_pod(
        "default", {"metadata": {"name": "pending"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    )
    request = urllib.request.Request(
        f"{api.url}/api/v1/namespaces/default/pods/pending/portforward",
        method="POST",
        headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": "portforward.k8s.io"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and "is not running" in json.loads(refused.value.read())["message"]
