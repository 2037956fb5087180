"""The optional ports the app wires: plaintext health-only (for kubelet probes when TLS is on) and /metrics."""

from __future__ import annotations

import asyncio
import datetime
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import empty_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelfleet.protos import inference_pb2, inference_pb2_grpc
from modelfleet.server.settings import AuthSettings, ModelSettings, NetworkSettings, TlsSettings


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.pem", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


async def test_with_tls_on_a_plaintext_port_serves_health_only_without_a_token(
    start_api: Callable[..., Any], make_model: Callable[..., Any], tmp_path: Path
) -> None:
    make_model("tiny.pt")
    cert, key = self_signed(tmp_path)
    network = NetworkSettings(
        inference_address="127.0.0.1:0", management_address="127.0.0.1:0", health_address="127.0.0.1:0"
    )
    async with start_api(
        network=network,
        tls=TlsSettings(cert_file=cert, key_file=key),
        auth=AuthSettings(key_file=tmp_path / "keys.json"),
        models=ModelSettings(default_workers=1, startup_models=("tiny=tiny.pt",)),
    ) as api:
        health_address = f"127.0.0.1:{api.app.health_port}"
        async with aio.insecure_channel(health_address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "modelfleet.liveness", "tiny", "tiny/1.0"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
            with_token_free_stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
            got = await api.failure(with_token_free_stub.Ping(empty_pb2.Empty(), timeout=10))
            assert got.code == grpc.StatusCode.UNIMPLEMENTED  # health only on this port

        token = json.loads((tmp_path / "keys.json").read_text())["inference"]["key"]
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        options = (("grpc.ssl_target_name_override", "localhost"),)
        async with aio.secure_channel(api.app.inference_address, credentials, options=options) as channel:
            stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
            reply = await stub.Predictions(
                inference_pb2.PredictionsRequest(model_name="tiny", input={"data": api.sample_bytes}),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=30,
            )
            assert len(json.loads(reply.prediction)) == 4
        # The API port does not speak plaintext.
        got = await api.failure(api.inference.Ping(empty_pb2.Empty(), timeout=5))
        assert got.code == grpc.StatusCode.UNAVAILABLE


async def test_metrics_port_serves_prometheus_text_for_registered_models(
    start_api: Callable[..., Any], make_model: Callable[..., Any]
) -> None:
    make_model("tiny.pt")
    network = NetworkSettings(
        inference_address="127.0.0.1:0", management_address="127.0.0.1:0", metrics_address="127.0.0.1:0"
    )
    async with start_api(network=network) as api:
        await api.register("tiny.pt")
        await api.predict("tiny")
        url = f"http://127.0.0.1:{api.app.metrics_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
        (line,) = [line for line in body.splitlines() if line.startswith("ts_inference_requests_total{")]
        assert 'model_name="tiny"' in line and 'model_version="1.0"' in line
        assert float(line.rsplit(" ", 1)[1]) == 1.0
