"""grpcurl, knowing nothing but what reflection tells it, calls both Open Inference services (the README's commands).

The TorchServe package (`org.pytorch.serve.grpc.openinference`) is what pytorch/serve's own OIP clients
call; typed JSON contents exercise the non-raw path. grpcurl comes from the test venv (mf_tools), never PATH.
"""

from __future__ import annotations

import json
import subprocess

from mf_client_fleet import Fleet
from mf_tools import console_script

TS = "org.pytorch.serve.grpc.openinference.GRPCInferenceService"


def grpcurl(fleet: Fleet, *args: str, token: bool = True) -> subprocess.CompletedProcess[str]:
    auth = ["-H", f"authorization: Bearer {fleet.token}"] if token else []
    return subprocess.run(
        [console_script("grpcurl"), "-plaintext", "-max-time", "60", *auth, *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_reflection_lists_both_open_inference_services(fleet: Fleet) -> None:
    listed = grpcurl(fleet, fleet.address, "list", token=False)
    assert listed.returncode == 0, listed.stderr
    assert {"inference.GRPCInferenceService", TS} <= set(listed.stdout.split())
    methods = grpcurl(fleet, fleet.address, "list", TS, token=False).stdout.split()
    served = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")
    assert sorted(methods) == sorted(f"{TS}.{m}" for m in served)  # no ModelStreamInfer in TorchServe's package


def test_server_live_and_a_typed_model_infer_through_reflection(fleet: Fleet) -> None:
    live = grpcurl(fleet, "-d", "{}", fleet.address, "inference.GRPCInferenceService/ServerLive")
    assert live.returncode == 0 and json.loads(live.stdout) == {"live": True}, live.stderr
    body = {
        "model_name": "twice",
        "id": "grpcurl",
        "inputs": [{"name": "x", "datatype": "INT64", "shape": [1, 2], "contents": {"int64_contents": [3, -4]}}],
    }
    for service in (TS, "inference.GRPCInferenceService"):
        answer = grpcurl(fleet, "-d", json.dumps(body), fleet.address, f"{service}/ModelInfer")
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout) == {
            "model_name": "twice",
            "model_version": "1.0",
            "id": "grpcurl",
            "outputs": [
                {
                    "name": "output__0",
                    "datatype": "INT64",
                    "shape": ["1", "2"],
                    "contents": {"int64_contents": ["6", "-8"]},
                }
            ],
        }, service


def test_without_the_token_the_call_is_unauthenticated(fleet: Fleet) -> None:
    denied = grpcurl(fleet, "-d", "{}", fleet.address, f"{TS}/ServerLive", token=False)
    assert denied.returncode != 0
    assert "Code: Unauthenticated" in denied.stderr and "authorization: Bearer" in denied.stderr
