"""Channel-level settings of our gRPC servers: options, TLS credentials and binding.

The app passes server_options(...) to grpc.aio.server(options=...) for both API servers, gets
credentials from server_credentials(...) and listens with bind(...). Pure translation of
settings; this module starts nothing and never decides status codes.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc import aio

from modelfleet.server.settings import NetworkSettings, TlsSettings

CLIENT_PING_MIN_INTERVAL_MS = 10_000
"""Clients may send keepalive pings this often (grpc's 5 min default makes the server GOAWAY
clients configured with a shorter keepalive, e.g. behind idle-connection-killing load balancers)."""


class TransportError(Exception):
    """The server cannot listen as configured (address in use, unreadable TLS file); startup fails."""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def server_options(network: NetworkSettings) -> list[tuple[str, int]]:
    """grpc core channel arguments for an API server; unset settings keep grpc's defaults."""
    options = [
        ("grpc.max_receive_message_length", network.max_receive_message_bytes),
        ("grpc.max_send_message_length", network.max_send_message_bytes),
        # grpc turns SO_REUSEPORT on by default: a second server on a port already in use would
        # silently share it. Off, binding fails loudly instead.
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", CLIENT_PING_MIN_INTERVAL_MS),
    ]
    if network.max_connection_age_s is not None:
        # GOAWAY after this age (grpc adds ±10% jitter) so clients reconnect and spread over pods.
        options.append(("grpc.max_connection_age_ms", _ms(network.max_connection_age_s)))
    if network.max_connection_age_grace_s is not None:
        options.append(("grpc.max_connection_age_grace_ms", _ms(network.max_connection_age_grace_s)))
    if network.keepalive_time_s is not None:
        options.append(("grpc.keepalive_time_ms", _ms(network.keepalive_time_s)))
        options.append(("grpc.keepalive_timeout_ms", _ms(network.keepalive_timeout_s)))
        # Keep pinging idle connections (grpc's default stops after 2 pings without data), so
        # dead peers and NAT/conntrack timeouts are noticed on long-idle client connections.
        options.append(("grpc.http2.max_pings_without_data", 0))
    return options


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TransportError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from exc


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials | None:
    """TLS credentials (mTLS when a client CA is set), or None for plaintext."""
    if tls.cert_file is None and tls.key_file is None:
        if tls.client_ca_file is not None:
            raise TransportError("a TLS client CA needs --tls-cert and --tls-key as well")
        return None
    if tls.cert_file is None or tls.key_file is None:
        raise TransportError("TLS needs both --tls-cert and --tls-key")
    chain = _read(tls.cert_file, "certificate")
    key = _read(tls.key_file, "private key")
    client_ca = None if tls.client_ca_file is None else _read(tls.client_ca_file, "client CA")
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def bind(server: aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Listen on `address` ("host:port"; port 0 picks one); returns the bound port."""
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:  # grpc raises "Failed to bind to address ..."
        raise TransportError(f"cannot listen on {address}: in use, or not an address of this host ({exc})") from exc
    if not port:  # older grpc returned 0 instead of raising
        raise TransportError(f"cannot listen on {address}: in use, or not an address of this host")
    return int(port)
