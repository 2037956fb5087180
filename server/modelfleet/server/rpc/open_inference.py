"""GRPCInferenceService, the Open Inference Protocol v2 (KServe v2 / Triton), on the inference port.

One class serves both proto packages (`inference`, and TorchServe's `org.pytorch.serve.grpc.openinference`
without ModelStreamInfer): app.py makes one instance per package's generated module. Thin: each RPC
looks the version up once, converts (oip_convert.py), calls registry.predict_on / stream_on (the same
queues and batches as the TorchServe API) and converts back. Registered through status.add_servicer
in conventional mode whatever --status-mode says; ModelStreamInfer reports failures in-band.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from types import ModuleType
from typing import Any

from grpc import aio

from modelfleet.protos import open_inference_pb2, torchserve_open_inference_pb2
from modelfleet.server.echo import MESSAGE_LIMIT, clip
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.registry import ModelRegistry, ModelVersion
from modelfleet.server.rpc import convert
from modelfleet.server.rpc import oip_convert as oip
from modelfleet.server.rpc.status import INTERNAL_MESSAGE
from modelfleet.server.settings import StatusMode

log = logging.getLogger(__name__)

SERVICE = open_inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
TORCHSERVE_SERVICE = torchserve_open_inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
STATUS_MODE: StatusMode = "conventional"
"""OIP clients (tritonclient, KServe) expect gRPC's usual codes, whatever TorchServe's API answers."""

STREAM_WINDOW = 64
"""ModelStreamInfer requests one call may have running at once, and responses queued for it: a
client that sends without reading cannot make the server buffer without bound (workers.STREAM_WINDOW)."""


def server_version() -> str:
    try:
        return importlib.metadata.version("modelfleet-server")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class OpenInferenceServicer:
    def __init__(
        self,
        registry: ModelRegistry,
        pb: ModuleType,
        *,
        ready: Callable[[], bool],
        max_request_bytes: int,
        max_response_bytes: int,
    ) -> None:
        self._registry = registry
        self._pb: Any = pb  # the package's *_pb2: both have the same message names and fields
        self._ready = ready
        self._max_request = max_request_bytes
        self._max_response = max_response_bytes
        self._version = server_version()

    async def ServerLive(self, request: Any, context: aio.ServicerContext) -> Any:
        return self._pb.ServerLiveResponse(live=True)  # answering at all is being live

    async def ServerReady(self, request: Any, context: aio.ServicerContext) -> Any:
        return self._pb.ServerReadyResponse(ready=self._ready())

    async def ModelReady(self, request: Any, context: aio.ServicerContext) -> Any:
        # An unknown model or version is NOT_FOUND, not ready=false: Triton and KServe both answer so.
        return self._pb.ModelReadyResponse(ready=self._target(request.name, request.version).serving)

    async def ServerMetadata(self, request: Any, context: aio.ServicerContext) -> Any:
        # No extensions: shared memory, model repository, statistics, configuration are not served.
        return self._pb.ServerMetadataResponse(name=oip.SERVER_NAME, version=self._version, extensions=[])

    async def ModelMetadata(self, request: Any, context: aio.ServicerContext) -> Any:
        target = self._target(request.name, request.version)
        name = target.key.name
        versions = sorted(v.key.version for v in self._registry.versions() if v.key.name == name)
        return oip.metadata_response(self._pb, target, versions)

    async def ModelInfer(self, request: Any, context: aio.ServicerContext) -> Any:
        plan = self._plan(request)
        answer = await self._registry.predict_on(plan.target, plan.inputs, deadline=convert.deadline(context))
        return oip.infer_response(self._pb, plan, answer, max_bytes=self._max_response)

    async def ModelStreamInfer(self, requests: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
        """Triton's streaming: requests run concurrently (so they batch), each answered with its id.

        A failed request gets one response with error_message and the call goes on. A streaming
        handler's chunks are sent as they come (Triton's decoupled mode), each marked
        `triton_final_response`. At most STREAM_WINDOW requests run at once; reading more waits.
        """
        responses: asyncio.Queue[Any] = asyncio.Queue(STREAM_WINDOW)
        slots = asyncio.Semaphore(STREAM_WINDOW)
        running: set[asyncio.Task[None]] = set()
        done = object()

        async def run(request: Any) -> None:
            try:
                async with contextlib.aclosing(self._answers(request, context)) as answers:
                    async for response in answers:
                        await responses.put(response)
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for request in requests:
                    await slots.acquire()
                    task = asyncio.get_running_loop().create_task(run(request))
                    running.add(task)
                    task.add_done_callback(running.discard)
                if running:
                    await asyncio.wait(set(running))
            finally:
                # Cancelled means the call is over and nobody reads `responses`: with 64 answers
                # waiting there, putting the end marker would block this task (and the call's close) forever.
                current = asyncio.current_task()
                if current is None or not current.cancelling():
                    await responses.put(done)

        # Headers first, from this task: an undecodable request makes the reader abort the call
        # (decoding.py) while this task may be sending an answer; an abort that also carries the
        # headers collides with that send (grpc: GRPC_CALL_ERROR_TOO_MANY_OPERATIONS) and the call
        # never ends. With the headers sent, the abort is the trailers only.
        await context.send_initial_metadata(())
        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (response := await responses.get()) is not done:
                yield response
            await reader  # an undecodable request ended the call: its abort is raised here
        finally:
            tasks = [reader, *running]
            for task in tasks:
                task.cancel()
            # Let them finish their own cleanup (queued jobs cancelled) before the call ends. Not
            # `await task` under suppress(CancelledError): that would swallow a cancel of this call.
            await asyncio.wait(tasks)
            for task in tasks:
                if not task.cancelled():
                    task.exception()  # retrieved: an abort already raised above is not logged again

    async def _answers(self, request: Any, context: aio.ServicerContext) -> AsyncGenerator[Any, None]:
        """The responses of one stream request; a failure is one in-band error response."""
        pb = self._pb
        held: Any = None  # one response held back, to mark the last one final
        try:
            plan = self._plan(request)
            empty_final = oip.wants_empty_final(request)
            chunks = self._registry.stream_on(plan.target, plan.inputs, deadline=convert.deadline(context))
            async for chunk in chunks:
                response = oip.infer_response(pb, plan, chunk, max_bytes=self._max_response - oip.STREAM_OVERHEAD)
                if held is not None:
                    yield pb.ModelStreamInferResponse(infer_response=oip.final_marked(held, False))
                held = response
            if held is not None:
                final, held = held, None
                yield pb.ModelStreamInferResponse(infer_response=oip.final_marked(final, not empty_final))
            if empty_final:
                empty = pb.ModelInferResponse(model_name=plan.name, model_version=plan.version, id=plan.id)
                yield pb.ModelStreamInferResponse(infer_response=oip.final_marked(empty, True))
            return
        except ModelFleetError as error:
            message = clip(error.message, MESSAGE_LIMIT)
        except Exception:
            log.exception("Unexpected error in ModelStreamInfer")
            message = INTERNAL_MESSAGE
        if held is not None:  # what the handler streamed before it failed is still sent
            yield pb.ModelStreamInferResponse(infer_response=oip.final_marked(held, False))
        yield oip.stream_error(pb, request, message)

    # ---- lookups ------------------------------------------------------------------------------
    def _target(self, name: str, version: str) -> ModelVersion:
        """The version asked for (empty: the default); NOT_FOUND for an unknown model or version."""
        return self._registry.get(oip.model_name(name, "name"), version or None)

    def _plan(self, request: Any) -> oip.Plan:
        target = self._registry.get(oip.model_name(request.model_name, "model_name"), request.model_version or None)
        if not target.pool.ready_count:
            raise ModelFleetError(
                ErrorKind.UNAVAILABLE,
                Reason.NO_WORKERS,
                f"Model {target.key.name} version {target.key.version} is not ready: no worker is ready",
                metadata={"model": target.key.name, "version": target.key.version},
            )
        return oip.plan(request, target, max_bytes=self._max_request)
