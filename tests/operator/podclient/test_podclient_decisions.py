"""The pod client sends the token and a deadline, retries transient reasons with backoff, stops at
permanent ones, and decides on the ErrorInfo reason (a real grpc.aio server on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from modelfleet.operator.podclient import PodCallError, PodClient
from modelfleet.operator.settings import PodClientSettings
from modelfleet.operator.spec import ModelSpec, ModelVersionSpec
from modelfleet.protos import management_pb2, management_pb2_grpc


def _trailer(code: grpc.StatusCode, message: str, reason: str) -> tuple[tuple[str, bytes], ...]:
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="modelfleet.io"))
    status = status_pb2.Status(code=code.value[0], message=message, details=[packed])
    return (("grpc-status-details-bin", status.SerializeToString()),)


class Scripted(management_pb2_grpc.ManagementAPIsServiceServicer):  # type: ignore[misc]
    """Answers each call with the next scripted (code, reason) or OK; records metadata."""

    def __init__(self) -> None:
        self.script: list[tuple[grpc.StatusCode, str] | None] = []
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.hang = False
        self.pages: list[str] = []

    async def _answer(
        self, method: str, context: aio.ServicerContext, msg: str = "ok"
    ) -> management_pb2.ManagementResponse:
        self.calls.append((method, {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}))
        if self.hang:
            await asyncio.Event().wait()  # never answers: only the caller's deadline ends the call
        step = self.script.pop(0) if self.script else None
        if step is not None:
            code, reason = step
            await context.abort(
                code, f"scripted {reason}", trailing_metadata=_trailer(code, f"scripted {reason}", reason)
            )
        return management_pb2.ManagementResponse(msg=msg)

    async def RegisterModel(self, request: Any, context: aio.ServicerContext) -> Any:
        return await self._answer("RegisterModel", context)

    async def SetDefault(self, request: Any, context: aio.ServicerContext) -> Any:
        return await self._answer("SetDefault", context)

    async def UnregisterModel(self, request: Any, context: aio.ServicerContext) -> Any:
        return await self._answer("UnregisterModel", context)

    async def ListModels(self, request: Any, context: aio.ServicerContext) -> Any:
        return await self._answer("ListModels", context, self.pages[request.next_page_token // 2])


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    servicer = Scripted()
    server = aio.server()
    management_pb2_grpc.add_ManagementAPIsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(None)


MODEL = ModelSpec(name="tiny", versions=(ModelVersionSpec("2.0", "tiny2.pt"),), default_version="2.0")


async def test_every_call_carries_the_bearer_token(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    client = PodClient(address, "s3cret", pod_uid=None, settings=PodClientSettings())
    await client.set_default("tiny", "2.0")
    await client.close()
    assert servicer.calls[0][1]["authorization"] == "Bearer s3cret"


async def test_transient_reasons_are_retried_with_backoff_until_success(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.script = [
        (grpc.StatusCode.UNAVAILABLE, "QUEUE_FULL"),
        (grpc.StatusCode.UNAVAILABLE, "SOURCE_FETCH_FAILED"),
    ]
    client = PodClient(address, "t", pod_uid=None, settings=PodClientSettings(attempts=3, backoff_initial_s=0.01))
    await client.register(MODEL, MODEL.versions[0], load_timeout_s=5)
    await client.close()
    assert [c[0] for c in servicer.calls] == ["RegisterModel"] * 3


async def test_permanent_reasons_are_not_retried_whatever_the_status_code(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    # TorchServe's code for a refused source is NOT_FOUND; the reason decides, not the code.
    servicer.script = [(grpc.StatusCode.NOT_FOUND, "SOURCE_NOT_ALLOWED")]
    client = PodClient(address, "t", pod_uid=None, settings=PodClientSettings(attempts=5, backoff_initial_s=0.01))
    with pytest.raises(PodCallError) as failed:
        await client.register(MODEL, MODEL.versions[0], load_timeout_s=5)
    await client.close()
    assert failed.value.reason == "SOURCE_NOT_ALLOWED" and failed.value.permanent and not failed.value.transient
    assert len(servicer.calls) == 1


async def test_transient_failures_give_up_after_the_configured_attempts(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.script = [(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")] * 5
    client = PodClient(address, "t", pod_uid=None, settings=PodClientSettings(attempts=2, backoff_initial_s=0.01))
    with pytest.raises(PodCallError) as failed:
        await client.set_default("tiny", "2.0")
    await client.close()
    assert failed.value.transient and len(servicer.calls) == 2


async def test_a_registration_that_already_exists_counts_as_done(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.script = [(grpc.StatusCode.UNKNOWN, "ALREADY_EXISTS")]
    client = PodClient(address, "t", pod_uid=None, settings=PodClientSettings())
    await client.register(MODEL, MODEL.versions[0], load_timeout_s=5)
    await client.close()


async def test_unregistering_what_is_gone_counts_as_done(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.script = [(grpc.StatusCode.NOT_FOUND, "VERSION_NOT_FOUND")]
    client = PodClient(address, "t", pod_uid=None, settings=PodClientSettings())
    await client.unregister("tiny", "1.0")
    await client.close()


async def test_calls_have_deadlines(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.hang = True
    client = PodClient(address, "t", pod_uid=None, settings=PodClientSettings(call_timeout_s=0.1, attempts=1))
    with pytest.raises(PodCallError) as failed:
        await client.set_default("tiny", "2.0")
    await client.close()
    assert failed.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and failed.value.transient


async def test_list_models_follows_next_page_tokens(scripted: tuple[Scripted, str]) -> None:
    servicer, address = scripted
    servicer.pages = [
        '{"nextPageToken": "2", "models": [{"modelName": "a"}, {"modelName": "b"}]}',
        '{"models": [{"modelName": "c"}]}',
    ]
    client = PodClient(address, "t", pod_uid=None, settings=PodClientSettings())
    assert await client.list_models() == ["a", "b", "c"]
    await client.close()


async def test_an_unreachable_pod_is_reported_not_raised() -> None:
    from modelfleet.operator.observed import PodRef

    client = PodClient("127.0.0.1:1", "t", pod_uid=None, settings=PodClientSettings(attempts=1, call_timeout_s=0.5))
    observed = await client.observe(PodRef("p", "u", "127.0.0.1", ready=True))
    await client.close()
    assert not observed.reachable and "UNAVAILABLE" in (observed.error or "")
