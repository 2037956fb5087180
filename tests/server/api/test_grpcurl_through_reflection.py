"""grpcurl lists, describes and calls both services through server reflection, with no .proto files."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelfleet.server.settings import AuthSettings, ModelSettings, NetworkSettings

from mf_tools import console_script

INFERENCE = "org.pytorch.serve.grpc.inference.InferenceAPIsService"
MANAGEMENT = "org.pytorch.serve.grpc.management.ManagementAPIsService"


async def grpcurl(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        console_script("grpcurl"), "-plaintext", "-max-time", "30", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_grpcurl_lists_describes_and_calls_without_proto_files(
    start_api: Callable[..., Any], make_model: Callable[..., Any], tmp_path: Path
) -> None:
    make_model("tiny.pt")
    key_file = tmp_path / "key_file.json"
    models = ModelSettings(default_workers=1, startup_models=("tiny=tiny.pt",))
    async with start_api(auth=AuthSettings(key_file=key_file), models=models) as api:
        keys = json.loads(key_file.read_text())
        inference, management = api.app.inference_address, api.app.management_address

        rc, out, err = await grpcurl(inference, "list")
        assert rc == 0, err
        assert out.split() == sorted(
            [INFERENCE, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
             "grpc.reflection.v1alpha.ServerReflection", "inference.GRPCInferenceService",
             "org.pytorch.serve.grpc.openinference.GRPCInferenceService"]
        )  # fmt: skip
        rc, out, err = await grpcurl(management, "list")
        assert rc == 0 and MANAGEMENT in out.split() and INFERENCE not in out.split(), err

        rc, out, err = await grpcurl(inference, "describe", INFERENCE)
        assert rc == 0, err
        for method in ("Ping", "Predictions", "StreamPredictions", "StreamPredictions2"):
            assert f"rpc {method} (" in out
        rc, out, err = await grpcurl(inference, "describe", "org.pytorch.serve.grpc.inference.PredictionsRequest")
        assert rc == 0 and "map<string, bytes> input = 3;" in out, err

        data = base64.b64encode(json.dumps([0.0] * 16).encode()).decode()
        rc, out, err = await grpcurl(
            "-H", f"authorization: Bearer {keys['inference']['key']}",
            "-d", json.dumps({"model_name": "tiny", "input": {"data": data}}),
            inference, f"{INFERENCE}/Predictions",
        )  # fmt: skip
        assert rc == 0, err
        assert len(json.loads(base64.b64decode(json.loads(out)["prediction"]))) == 4

        rc, out, err = await grpcurl(
            "-H", f"authorization: Bearer {keys['management']['key']}", "-d", '{"limit": 5}',
            management, f"{MANAGEMENT}/ListModels",
        )  # fmt: skip
        assert rc == 0, err
        assert json.loads(json.loads(out)["msg"])["models"] == [{"modelName": "tiny", "modelUrl": "tiny.pt"}]

        rc, out, err = await grpcurl("-d", '{"service": "tiny"}', management, "grpc.health.v1.Health/Check")
        assert rc == 0 and json.loads(out) == {"status": "SERVING"}, err

        # Errors: exit code 64 + the gRPC code (INTERNAL = 13 in TorchServe mode; PERMISSION_DENIED = 7).
        rc, out, err = await grpcurl(
            "-H", f"authorization: Bearer {keys['inference']['key']}", "-format-error",
            "-d", '{"model_name": "nope"}', inference, f"{INFERENCE}/Predictions",
        )  # fmt: skip
        assert rc == 64 + 13 and json.loads(err)["message"] == "Model not found: nope", (out, err)
        rc, out, err = await grpcurl("-d", "{}", inference, f"{INFERENCE}/Ping")
        assert rc == 64 + 7


async def test_no_reflection_hides_the_services(start_api: Callable[..., Any]) -> None:
    network = NetworkSettings(inference_address="127.0.0.1:0", management_address="127.0.0.1:0", reflection=False)
    async with start_api(network=network) as api:
        rc, out, err = await grpcurl(api.app.inference_address, "list")
        assert rc != 0 and "does not support the reflection API" in err
