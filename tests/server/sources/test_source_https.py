"""https sources are fetched with default certificate verification: trusted CA works, anything else fails."""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
from collections.abc import Awaitable, Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.sources import SourceResolver

Refused = Callable[..., Awaitable[ModelFleetError]]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test ca"))
        .issuer_name(_name("test ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def https_server(serve: Any, tmp_path: Path) -> tuple[Any, Path]:
    ca, cert, key = write_pki(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def wrap(server: ThreadingHTTPServer) -> None:
        # Handshake in the handler thread (not in accept), so a client that rejects the certificate
        # only ends that one request (the test server ignores handler errors).
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)

    server = serve(scheme="https", wrap=wrap)
    server.add("tiny.pt", b"model over tls")
    return server, ca


async def test_an_https_server_signed_by_an_unknown_ca_is_refused(
    https_server, make_resolver: Callable[..., SourceResolver], refused: Refused, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = https_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    resolver = make_resolver(re.escape(server.base) + "/.*")

    error = await refused(resolver, server.url("/files/tiny.pt"), ErrorKind.UNAVAILABLE, Reason.SOURCE_FETCH_FAILED)

    assert "CERTIFICATE_VERIFY_FAILED" in error.message


async def test_an_https_server_signed_by_a_trusted_ca_is_fetched(
    https_server, make_resolver: Callable[..., SourceResolver], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = https_server
    # The system trust store, as a cluster would extend it (OpenSSL reads SSL_CERT_FILE when the
    # default context loads its verify paths): verification stays on, the CA becomes known.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))

    source = await make_resolver(re.escape(server.base) + "/.*").resolve(server.url("/files/tiny.pt"))

    assert source.path.read_bytes() == b"model over tls"
