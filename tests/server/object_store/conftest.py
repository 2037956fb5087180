"""A real S3 API on loopback (moto's server in a subprocess, one per test module) and an in-process app.

The emulator starts without authentication, gets an IAM user with an allow-all policy and its
access key, then switches authentication on (moto's /moto-api/reset-auth), so from then on wrong
keys are refused as AWS refuses them (InvalidAccessKeyId, SignatureDoesNotMatch). Every request
it receives is logged first (s3_emulator.py), which is how the tests prove a GET never happened.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import selectors
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from grpc import aio

from modelfleet.protos import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc
from modelfleet.server.app import App, running_app
from modelfleet.server.rpc.error_details import error_info_from_trailer
from modelfleet.server.settings import (
    AuthSettings,
    ModelSettings,
    NetworkSettings,
    Settings,
    ShutdownSettings,
    SourceSettings,
)

EMULATOR = Path(__file__).with_name("s3_emulator.py")
START_TIMEOUT_S = 60.0
REGION = "us-east-1"
SAMPLE = [float(i) / 16 for i in range(16)]
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True)
class Logged:
    method: str
    host: str
    path: str
    query: str


@dataclass
class Emulator:
    endpoint: str
    """http://127.0.0.1:<port>"""
    port: int
    log: Path
    access_key: str
    secret_key: str
    admin: Any
    """A boto3 S3 client with the valid key (path style), for setting up buckets and objects."""
    iam: Any

    def requests(self) -> list[Logged]:
        lines = self.log.read_text().splitlines()
        return [Logged(*(line.split(" ", 3) + [""] * 4)[:4]) for line in lines if line]

    def mark(self) -> int:
        return len(self.requests())

    def since(self, mark: int) -> list[Logged]:
        return self.requests()[mark:]

    def object_gets(self, mark: int, key: str) -> list[Logged]:
        """GETs of `key` (any bucket, any addressing style) since `mark`."""
        return [r for r in self.since(mark) if r.method == "GET" and r.path.endswith("/" + key)]

    def new_access_key(self) -> tuple[str, str]:
        created = self.iam.create_access_key(UserName="modelfleet")["AccessKey"]
        return created["AccessKeyId"], created["SecretAccessKey"]

    def bucket(self, name: str) -> str:
        with contextlib.suppress(self.admin.exceptions.BucketAlreadyOwnedByYou):
            self.admin.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, body: bytes) -> str:
        """Upload; returns the ETag."""
        self.bucket(bucket)
        return str(self.admin.put_object(Bucket=bucket, Key=key, Body=body)["ETag"])


def _client(service: str, endpoint: str, key: str, secret: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )


def _read_port(process: subprocess.Popen[str]) -> int:
    """The first stdout line, waited for with a bound (never a bare readline that could hang)."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=START_TIMEOUT_S):
            raise RuntimeError(f"the S3 emulator printed no port within {START_TIMEOUT_S:g}s")
    line = process.stdout.readline()
    if not line.strip().isdigit():
        raise RuntimeError(f"the S3 emulator did not start (exit code {process.poll()}): {line!r}")
    return int(line)


@pytest.fixture(scope="module")
def hermetic_environment() -> Iterator[None]:
    """No proxies, no AWS settings from the machine: the server finds only what a test gives it."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_") or name.lower() in _PROXY_VARIABLES:
                patch.delenv(name)
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups from a laptop or CI
        yield


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, hermetic_environment: None) -> Iterator[Emulator]:
    folder = tmp_path_factory.mktemp("s3-emulator")
    log = folder / "requests.log"
    log.touch()
    with (folder / "stderr.log").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(EMULATOR), str(log)], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        port = _read_port(process)
        endpoint = f"http://127.0.0.1:{port}"
        iam = _client("iam", endpoint, "bootstrap", "bootstrap")
        iam.create_user(UserName="modelfleet")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="modelfleet", PolicyName="all", PolicyDocument=json.dumps(policy))
        created = iam.create_access_key(UserName="modelfleet")["AccessKey"]
        key, secret = created["AccessKeyId"], created["SecretAccessKey"]
        switch = urllib.request.Request(
            endpoint + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(switch, timeout=10) as reply:  # authentication on from here
            assert json.loads(reply.read())["status"] == "ok"
        yield Emulator(
            endpoint=endpoint,
            port=port,
            log=log,
            access_key=key,
            secret_key=secret,
            admin=_client("s3", endpoint, key, secret),
            iam=_client("iam", endpoint, key, secret),
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


# ---- a credentials Secret as kubelet mounts it ------------------------------------------------
@dataclass
class SecretMount:
    """A folder laid out as kubelet's AtomicWriter does: files are symlinks into `..data`, itself a
    symlink to a timestamped folder; an update writes a new folder and renames a new `..data` over it."""

    path: Path
    _versions: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def write(self, files: dict[str, str]) -> None:
        version = self.path / f"..2026_01_01_00_00_{next(self._versions):02d}.000000000"
        version.mkdir()
        for name, text in files.items():
            (version / name).write_text(text)
        old = os.readlink(self.path / "..data") if (self.path / "..data").is_symlink() else None
        (self.path / "..data_tmp").symlink_to(version.name)
        os.replace(self.path / "..data_tmp", self.path / "..data")  # the atomic swap
        for name in files:
            if not (self.path / name).is_symlink():
                (self.path / name).symlink_to(f"..data/{name}")
        for link in self.path.iterdir():
            if link.is_symlink() and not link.name.startswith("..") and link.name not in files:
                link.unlink()
        if old is not None:
            for child in (self.path / old).iterdir():
                child.unlink()
            (self.path / old).rmdir()

    def write_keys(self, key: str, secret: str) -> None:
        self.write({"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret})


@pytest.fixture
def secret(tmp_path: Path, s3: Emulator) -> SecretMount:
    """A mounted Secret holding the emulator's valid key pair (KServe's per-value layout)."""
    folder = tmp_path / "s3-secret"
    folder.mkdir()
    mount = SecretMount(folder)
    mount.write_keys(s3.access_key, s3.secret_key)
    return mount


# ---- an in-process app with real stubs --------------------------------------------------------
@dataclass
class Failure:
    code: Any
    details: str
    reason: str | None


@dataclass
class Api:
    app: App
    management: management_pb2_grpc.ManagementAPIsServiceStub
    inference: inference_pb2_grpc.InferenceAPIsServiceStub

    async def register(self, url: str, **fields: Any) -> str:
        fields.setdefault("synchronous", True)
        reply = await self.management.RegisterModel(management_pb2.RegisterModelRequest(url=url, **fields), timeout=60)
        return str(reply.msg)

    async def refused(self, url: str, **fields: Any) -> Failure:
        with pytest.raises(aio.AioRpcError) as raised:
            await self.register(url, **fields)
        error = raised.value
        info = error_info_from_trailer(list(error.trailing_metadata() or ()))
        return Failure(error.code(), error.details() or "", None if info is None else info.reason)

    async def predict(self, name: str) -> list[float]:
        request = inference_pb2.PredictionsRequest(model_name=name, input={"data": json.dumps(SAMPLE).encode()})
        reply = await self.inference.Predictions(request, timeout=30)
        result: list[float] = json.loads(reply.prediction)
        return result


StartApp = Callable[..., contextlib.AbstractAsyncContextManager[Api]]


@pytest.fixture
def start_app(tmp_path: Path, model_store: Path, s3: Emulator, secret: SecretMount) -> StartApp:
    """`async with start_app(*patterns, status_mode=..., **source_settings) as api:`; by default the
    emulator is the endpoint (path style), the Secret holds a valid key, downloads go to tmp_path/downloads."""

    @contextlib.asynccontextmanager
    async def start(*patterns: str, status_mode: str = "conventional", **sources: Any) -> AsyncIterator[Api]:
        values: dict[str, Any] = {
            "model_store": model_store,
            "allowed_source_patterns": patterns,
            "download_dir": tmp_path / "downloads",
            "download_timeout_s": 30.0,
            "storage_endpoint_url": s3.endpoint,
            "storage_addressing_style": "path",
            "storage_credentials_dir": secret.path,
        }
        values.update(sources)
        settings = Settings(
            network=NetworkSettings(inference_address="127.0.0.1:0", management_address="127.0.0.1:0"),
            auth=AuthSettings(enabled=False, enable_model_api=True, key_file=tmp_path / "key_file.json"),
            sources=SourceSettings(**values),
            models=ModelSettings(default_workers=1),
            shutdown=ShutdownSettings(drain_delay_s=0.0, grace_s=5.0),
            status_mode=status_mode,  # type: ignore[arg-type]
        )
        async with running_app(settings) as app:
            management = aio.insecure_channel(app.management_address)
            inference = aio.insecure_channel(app.inference_address)
            try:
                yield Api(
                    app,
                    management_pb2_grpc.ManagementAPIsServiceStub(management),
                    inference_pb2_grpc.InferenceAPIsServiceStub(inference),
                )
            finally:
                await management.close()
                await inference.close()

    return start


@pytest.fixture
def torchscript(tmp_path: Path) -> Callable[..., bytes]:
    """`torchscript(seed)`: the bytes of a real TorchScript model (Linear 16 -> 4)."""
    from modelfleet.server.demo import write_torchscript

    def make(seed: int = 0) -> bytes:
        path = write_torchscript("tiny", tmp_path / f"tiny-{seed}.pt", seed=seed)
        return path.read_bytes()

    return make
