"""TLS and mutual TLS with a CA, server and client certificates made in the test."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelfleet.server.rpc.health import HealthServicer
from modelfleet.server.rpc.transport import TransportError, server_credentials
from modelfleet.server.settings import TlsSettings


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str, *, issuer: Pem | None, ca: bool = False, server: bool = False
) -> tuple[Pem, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    if issuer is None:
        issuer_name, signing_key = _name(subject), key
    else:
        issuer_name = x509.load_pem_x509_certificate(issuer.cert).subject
        signing_key = serialization.load_pem_private_key(issuer.key, password=None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(signing_key, hashes.SHA256())
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Pem(cert.public_bytes(serialization.Encoding.PEM), pem_key), key


@dataclass(frozen=True)
class Pki:
    ca: Pem
    server: Pem
    client: Pem
    other_ca: Pem
    stranger: Pem  # a client certificate from a CA the server does not trust
    files: dict[str, Path]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, _ = _issue("modelfleet test CA", issuer=None, ca=True)
    other_ca, _ = _issue("someone else's CA", issuer=None, ca=True)
    server, _ = _issue("modelfleet server", issuer=ca, server=True)
    client, _ = _issue("modelfleet operator", issuer=ca)
    stranger, _ = _issue("stranger", issuer=other_ca)
    files = {}
    for name, data in {"ca.pem": ca.cert, "server.pem": server.cert, "server.key": server.key}.items():
        files[name] = folder / name
        files[name].write_bytes(data)
    return Pki(ca, server, client, other_ca, stranger, files)


async def serve(start_server, credentials: grpc.ServerCredentials) -> int:
    health = HealthServicer()
    _, port = await start_server(credentials=credentials, setup=health.add_to_server)
    return int(port)


async def liveness(channel: aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="modelfleet.liveness"), timeout=5
    )
    return int(reply.status)


def tls_channel(port: int, pki: Pki, client: Pem | None = None) -> aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert,
        private_key=None if client is None else client.key,
        certificate_chain=None if client is None else client.cert,
    )
    return aio.secure_channel(f"127.0.0.1:{port}", credentials)


async def test_a_tls_client_is_served_and_a_plaintext_one_is_not(start_server, pki: Pki) -> None:
    settings = TlsSettings(cert_file=pki.files["server.pem"], key_file=pki.files["server.key"])
    port = await serve(start_server, server_credentials(settings))
    async with tls_channel(port, pki) as channel:
        assert await liveness(channel) == health_pb2.HealthCheckResponse.SERVING
    async with aio.insecure_channel(f"127.0.0.1:{port}") as plaintext:
        with pytest.raises(aio.AioRpcError) as caught:
            await liveness(plaintext)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_refuses_clients_without_a_trusted_certificate(start_server, pki: Pki) -> None:
    settings = TlsSettings(
        cert_file=pki.files["server.pem"], key_file=pki.files["server.key"], client_ca_file=pki.files["ca.pem"]
    )
    port = await serve(start_server, server_credentials(settings))
    for client in (None, pki.stranger):
        async with tls_channel(port, pki, client) as channel:
            with pytest.raises(aio.AioRpcError) as caught:
                await liveness(channel)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    async with tls_channel(port, pki, pki.client) as channel:
        assert await liveness(channel) == health_pb2.HealthCheckResponse.SERVING


def test_no_certificate_means_plaintext() -> None:
    assert server_credentials(TlsSettings()) is None


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"cert_file": "server.pem"}, "both"),
        ({"key_file": "server.key"}, "both"),
        ({"client_ca_file": "ca.pem"}, "client CA"),
        ({"cert_file": "server.pem", "key_file": "missing.key"}, "missing.key"),
        ({"cert_file": "server.pem", "key_file": "server.key", "client_ca_file": "missing-ca.pem"}, "missing-ca.pem"),
    ],
)
def test_an_incomplete_or_unreadable_tls_setup_fails_at_start_with_a_clear_message(
    pki: Pki, given: dict[str, str], message: str
) -> None:
    folder = pki.files["ca.pem"].parent
    settings = TlsSettings(**{field: folder / name for field, name in given.items()})
    with pytest.raises(TransportError, match=message):
        server_credentials(settings)
