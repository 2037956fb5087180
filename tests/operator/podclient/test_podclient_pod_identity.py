"""The pod client sends the management token only to a server that first answered, without a token,
the UID of the pod meant (health Check's `modelfleet-pod-uid`); a wrong, missing or absent answer
leaves the pod unverified and the server never sees the token (told from the server's side)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from modelfleet.operator import podidentity
from modelfleet.operator.observed import PodRef
from modelfleet.operator.podclient import PodCallError, PodClient
from modelfleet.operator.settings import PodClientSettings

from mf_foreign_server import ClaimsPod, ForeignServer, start_foreign_server, stock_health

TOKEN = "the-fleets-management-token"
SETTINGS = PodClientSettings(attempts=2, backoff_initial_s=0.01, call_timeout_s=2.0)
POD = PodRef("demo-0", "pod-a", "127.0.0.1", ready=True)

Start = Callable[..., Awaitable[ForeignServer]]


@pytest.fixture
async def start_pod() -> AsyncIterator[Start]:
    """start_pod(health, port=0): a recording server on 127.0.0.1 with that health servicer."""
    running: list[ForeignServer] = []

    async def start(health_servicer: Any, *, port: int = 0) -> ForeignServer:
        server = await start_foreign_server(f"127.0.0.1:{port}", health_servicer)
        running.append(server)
        return server

    yield start
    for server in running:
        await server.stop()


def _address(pod: ForeignServer) -> str:
    return f"127.0.0.1:{pod.port}"


# Pure ---------------------------------------------------------------------------------------------


def test_only_exactly_the_expected_uid_proves_the_pod() -> None:
    assert podidentity.identity_problem("pod-a", ["pod-a"], address="x") is None
    assert podidentity.identity_problem("pod-a", ["pod-b"], address="x")[0] == podidentity.MISMATCH
    assert podidentity.identity_problem("pod-a", ["pod-a", "pod-b"], address="x")[0] == podidentity.MISMATCH
    assert podidentity.identity_problem("pod-a", [], address="x")[0] == podidentity.MISSING


def test_the_foreign_answer_is_clipped_in_the_message() -> None:
    reason, message = podidentity.identity_problem("pod-a", ["z" * 10_000], address="x") or ("", "")
    assert reason == podidentity.MISMATCH and len(message) < 300


def test_only_the_identity_header_is_read_from_the_metadata() -> None:
    metadata = (("other", "pod-a"), (podidentity.POD_UID_METADATA, "pod-b"), (podidentity.POD_UID_METADATA, b"pod-c"))
    assert podidentity.answered_uids(metadata) == ["pod-b", "pod-c"]
    assert podidentity.answered_uids(None) == []


# Against servers on loopback ------------------------------------------------------------------


async def test_a_matching_uid_is_checked_without_the_token_then_calls_carry_it(start_pod: Start) -> None:
    pod = await start_pod(ClaimsPod("pod-a"))
    client = PodClient(_address(pod), TOKEN, pod_uid="pod-a", settings=SETTINGS)
    try:
        assert await client.list_models() == []
        assert await client.list_models() == []
    finally:
        await client.close()
    # One verification for the connection, sent before anything else and without the token.
    assert pod.recording.methods() == ["Check", "ListModels", "ListModels"]
    check_metadata = dict(pod.recording.calls[0][1])
    assert "authorization" not in check_metadata
    assert dict(pod.recording.calls[1][1])["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("health_servicer", "reason"),
    [
        (lambda: ClaimsPod("pod-b"), podidentity.MISMATCH),  # another pod (another fleet's server)
        (stock_health, podidentity.MISSING),  # a server without the feature: no header
        (lambda: None, podidentity.MISSING),  # no grpc.health.v1 at all: UNIMPLEMENTED
    ],
    ids=["another-pods-uid", "no-header", "no-health-service"],
)
async def test_a_server_that_does_not_prove_the_pod_never_receives_the_token(
    start_pod: Start, health_servicer: Callable[[], Any], reason: str
) -> None:
    pod = await start_pod(health_servicer())
    client = PodClient(_address(pod), TOKEN, pod_uid="pod-a", settings=SETTINGS)
    try:
        with pytest.raises(PodCallError) as failed:
            await client.list_models()
        observed = await client.observe(POD)
        with pytest.raises(PodCallError):
            await client.unregister("tiny", "1.0")
    finally:
        await client.close()
    assert failed.value.reason == reason and failed.value.unverified
    assert not failed.value.transient and not failed.value.permanent  # asked again next pass, not retried now
    assert "token was not sent" in failed.value.message
    assert not observed.reachable and observed.unverified and reason in (observed.error or "")
    assert set(pod.recording.methods()) == {"Check"}  # it was asked who it is, and nothing else
    assert not pod.recording.saw_credentials(TOKEN)


async def test_a_new_server_on_the_same_address_and_channel_is_verified_again(start_pod: Start) -> None:
    first = await start_pod(ClaimsPod("pod-a"))
    port = first.port
    client = PodClient(_address(first), TOKEN, pod_uid="pod-a", settings=SETTINGS)
    try:
        assert await client.list_models() == []
        # The pod goes away and another one takes its address before the operator's view changes.
        await first.stop()
        second = await start_pod(ClaimsPod("pod-b"), port=port)
        with pytest.raises(PodCallError) as failed:
            await client.list_models()
    finally:
        await client.close()
    assert failed.value.reason == podidentity.MISMATCH and "pod-b" in failed.value.message
    assert first.recording.methods() == ["Check", "ListModels"]
    assert set(second.recording.methods()) == {"Check"}
    assert not second.recording.saw_credentials(TOKEN)


async def test_a_pod_that_does_not_answer_is_unreachable_not_unverified() -> None:
    client = PodClient(
        "127.0.0.1:1", TOKEN, pod_uid="pod-a", settings=PodClientSettings(attempts=1, call_timeout_s=0.5)
    )
    try:
        observed = await client.observe(POD)
    finally:
        await client.close()
    assert not observed.reachable and not observed.unverified and "UNAVAILABLE" in (observed.error or "")


async def test_the_real_server_answers_its_pod_uid_on_the_management_port_without_a_token(
    start_server: Callable[..., Any], poll: Callable[..., Any]
) -> None:
    process = start_server("127.0.0.22", extra=("--pod-uid", "3f1c2a9e-0000-4000-8000-00000000abcd"))
    token = "test-management-token"  # the token file start_server writes
    meant = PodClient(
        process.management,
        token,
        pod_uid="3f1c2a9e-0000-4000-8000-00000000abcd",
        settings=PodClientSettings(attempts=1),
    )
    other = PodClient(process.management, token, pod_uid="another-pod", settings=PodClientSettings(attempts=1))

    async def up() -> bool:
        try:
            return await meant.health("") == "SERVING"
        except PodCallError:
            return False

    try:
        await poll(up, timeout=60, interval=0.1)
        assert (await meant.observe(POD)).reachable  # verified, then the token calls went through
        with pytest.raises(PodCallError) as failed:
            await other.list_models()
    finally:
        await meant.close()
        await other.close()
    assert failed.value.reason == podidentity.MISMATCH
    assert "3f1c2a9e-0000-4000-8000-00000000abcd" in failed.value.message
    assert failed.value.code == grpc.StatusCode.UNAUTHENTICATED
