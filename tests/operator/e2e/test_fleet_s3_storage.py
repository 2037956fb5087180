"""A fleet serving a model from a real S3 API: moto's standalone server on 127.0.0.1 (a subprocess on
an ephemeral port) checks every request's keys against its IAM users, so a model that loads proves the
keys came from the ModelDeployment's credentials Secret. Before that Secret exists the status says
so (pods sit in ContainerCreating); once it exists the fleet becomes Ready, a gRPC Predictions call
answers what the model computes, and Open Inference ModelMetadata reports the spec's signature.
Rotating the keys (the Secret rewritten in the other layout, the old key deleted in the store) lets
the same pod load a new version: no pod restarts."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mf_net import free_port
from mf_polling import eventually_sync

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

BUCKET = "models"
SECRET = "model-store-credentials"
ALLOW_ALL = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
SAMPLE = [i / 16 for i in range(16)]  # conftest.SAMPLE, as numbers
SIGNATURE = {
    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 16]}],
    "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 4]}],
}


@dataclass
class S3:
    endpoint: str
    keys: tuple[str, str]
    """The IAM user's first access key (id, secret)."""

    def client(self, service: str, keys: tuple[str, str] | None = None) -> Any:
        import boto3
        from botocore.config import Config

        key_id, secret = keys or self.keys
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3]:
    """moto's server enforcing IAM keys after the first 3 requests, which make the user and its key."""
    pytest.importorskip("moto.server", reason="moto[server] is in requirements-test.txt")
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    return True
            except OSError:
                return process.poll() is not None  # exited: the assertion below says so

        eventually_sync(up, timeout=30, interval=0.1)
        assert process.poll() is None, (tmp_path / "moto.log").read_text()
        iam = S3(endpoint, ("bootstrap", "bootstrap")).client("iam")
        iam.create_user(UserName="reader")
        iam.put_user_policy(UserName="reader", PolicyName="all", PolicyDocument=ALLOW_ALL)
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        yield S3(endpoint, (key["AccessKeyId"], key["SecretAccessKey"]))
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()


def _expected(path: Path) -> list[float]:
    import torch

    with torch.no_grad():
        out = torch.jit.load(str(path))(torch.tensor([SAMPLE]))
    return [float(x) for x in out.flatten()]


def _numbers(answer: str) -> list[float]:
    def flat(value: Any) -> list[float]:
        return [x for item in value for x in flat(item)] if isinstance(value, list) else [float(value)]

    return flat(json.loads(answer))


def _secret_data(**files: str) -> dict[str, str]:
    return {name: base64.b64encode(text.encode()).decode() for name, text in files.items()}


async def test_a_fleet_serves_a_model_from_s3_with_the_secrets_keys_and_rotates_them_in_place(
    product: Any, poll: Callable[..., Any], s3: S3, e2e_store: Path
) -> None:
    storage = s3.client("s3")
    storage.create_bucket(Bucket=BUCKET)
    storage.upload_file(str(e2e_store / "tiny.pt"), BUCKET, "tiny/1.0/s3-tiny-1.pt")
    storage.upload_file(str(e2e_store / "tiny2.pt"), BUCKET, "tiny/2.0/s3-tiny-2.pt")
    v1 = {"version": "1.0", "url": f"s3://{BUCKET}/tiny/1.0/s3-tiny-1.pt#version=1.0"}
    v2 = {"version": "2.0", "url": f"s3://{BUCKET}/tiny/2.0/s3-tiny-2.pt#version=2.0"}

    await product.start_operator()
    await product.create(
        replicas=1,
        models=[{"name": "tiny", "versions": [v1], "signature": SIGNATURE}],
        allowedSources=[f"s3://{BUCKET}/tiny/.*"],
        storage={
            "credentialsSecret": {"name": SECRET},
            "endpoint": s3.endpoint,
            "region": "us-east-1",
            "addressingStyle": "path",
        },
    )

    async def reasons() -> tuple[str, str, str]:
        return tuple(
            [(await product.condition(kind)).get("reason", "") for kind in ("Ready", "Progressing", "Degraded")]
        )

    # No Secret yet: the pod cannot mount it, and the status says which Secret and why.
    await poll(lambda: _is(reasons, ("StorageSecretMissing",) * 3), timeout=60)
    assert f'Secret "{SECRET}"' in (await product.condition("Ready"))["message"]
    (pod,) = await product.pods()
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"

    key_id, secret_key = s3.keys
    await product.kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": "default"},
            "data": _secret_data(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret_key),
        }
    )
    await poll(lambda: product.ready(replicas=1, summary="tiny:1.0"), timeout=120)
    token = await product.token("inference")
    answer = await product.predict(await product.service_address(), "tiny", token=token)
    assert _numbers(answer) == pytest.approx(_expected(e2e_store / "tiny.pt"), abs=1e-5)
    assert await _metadata(await product.service_address(), token) == SIGNATURE  # spec → desired state → pod
    (serving,) = await product.pods()

    # Rotation: a new key in the shared-credentials layout, the old one deleted in the store.
    iam = s3.client("iam")
    new = iam.create_access_key(UserName="reader")["AccessKey"]
    ini = f"[default]\naws_access_key_id = {new['AccessKeyId']}\naws_secret_access_key = {new['SecretAccessKey']}\n"
    rotated: dict[str, Any] = {
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
        **_secret_data(credentials=ini),
    }
    await product.kube.patch_merge("Secret", "default", SECRET, {"data": rotated})
    iam.delete_access_key(UserName="reader", AccessKeyId=key_id)
    await product.patch_spec({"models": [{"name": "tiny", "versions": [v1, v2], "defaultVersion": "2.0"}]})
    await poll(lambda: product.ready(replicas=1, summary="tiny:2.0"), timeout=120)
    (after,) = await product.pods()
    assert after["metadata"]["uid"] == serving["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0
    answer = await product.predict(await product.service_address(), "tiny", token=token)
    assert _numbers(answer) == pytest.approx(_expected(e2e_store / "tiny2.pt"), abs=1e-5)


async def _metadata(address: str, token: str) -> dict[str, Any]:
    """What Open Inference Protocol clients see of "tiny" (ModelMetadata), as a signature."""
    from grpc import aio

    from modelfleet.protos import open_inference_pb2, open_inference_pb2_grpc

    async with aio.insecure_channel(address) as channel:
        reply = await open_inference_pb2_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
            open_inference_pb2.ModelMetadataRequest(name="tiny"),
            metadata=[("authorization", f"Bearer {token}")],
            timeout=10,
        )
    return {
        side: [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in getattr(reply, side)]
        for side in ("inputs", "outputs")
    }


async def _is(read: Callable[[], Any], expected: Any) -> bool:
    return bool(await read() == expected)
