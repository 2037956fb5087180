"""Management gRPC client for one server pod: token, deadlines, retries, and ErrorInfo decisions.

reconcile.py holds one PodClient per pod address and calls observe() and the four write calls.
Every call sends `authorization: Bearer <management token>` and a deadline, but only once the server
at the address proved it is the pod meant (podidentity.py); transient failures are retried with
exponential backoff; the outcome is decided on the server's google.rpc.ErrorInfo
reason (the `grpc-status-details-bin` trailer), never on the status code alone. No Kubernetes I/O.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelfleet.protos import contract, management_pb2, management_pb2_grpc

from . import podidentity
from .observed import ObservedModel, ObservedPod, ObservedVersion, PodRef
from .settings import PodClientSettings
from .spec import ModelSpec, ModelVersionSpec

log = logging.getLogger(__name__)

DOMAIN = contract.ERROR_DOMAIN
STATUS_DETAILS_KEY = contract.STATUS_DETAILS_KEY

# The server's reasons and what each means for a retry are decided in the wire contract.
PERMANENT_REASONS = contract.reasons_of(contract.RetryClass.PERMANENT)
TRANSIENT_REASONS = contract.reasons_of(contract.RetryClass.TRANSIENT)
STALE_REASONS = contract.reasons_of(contract.RetryClass.STALE)
_GONE = frozenset({contract.Reason.MODEL_NOT_FOUND.value, contract.Reason.VERSION_NOT_FOUND.value})
"""An unregister that finds nothing to remove is done."""
# Without an ErrorInfo (the connection itself failed, a proxy answered) only these codes are retried.
_TRANSIENT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
_PERMANENT_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED})

T = TypeVar("T")


class PodCallError(Exception):
    """A management call failed; `reason` is the server's ErrorInfo reason when it sent one."""

    def __init__(self, method: str, code: grpc.StatusCode, message: str, reason: str | None) -> None:
        self.method = method
        self.code = code
        self.message = message
        self.reason = reason
        super().__init__(f"{method}: {reason or code.name}: {message}")

    @property
    def permanent(self) -> bool:
        return self.reason in PERMANENT_REASONS or (self.reason is None and self.code in _PERMANENT_CODES)

    @property
    def transient(self) -> bool:
        if self.reason is not None:
            return self.reason in TRANSIENT_REASONS
        return self.code in _TRANSIENT_CODES

    @property
    def stale(self) -> bool:
        return self.reason in STALE_REASONS

    @property
    def unverified(self) -> bool:
        """The server at the pod's address is not (or did not prove it is) the pod meant; nothing was sent."""
        return self.reason in podidentity.REASONS


def error_reason(error: aio.AioRpcError) -> tuple[str | None, str]:
    """The ErrorInfo reason (domain modelfleet.io) and the status message of a failed call."""
    message = error.details() or ""
    for key, value in error.trailing_metadata() or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # a malformed trailer must not hide the call's own error
            return None, message
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain in ("", DOMAIN):
                    return info.reason or None, status.message or message
    return None, message


def backoff_delays(settings: PodClientSettings) -> list[float]:
    """Sleeps between attempts: exponential from backoff_initial_s, capped, with ±20 % jitter."""
    delays = []
    delay = settings.backoff_initial_s
    for _ in range(max(0, settings.attempts - 1)):
        delays.append(min(delay, settings.backoff_max_s) * random.uniform(0.8, 1.2))
        delay *= 2
    return delays


class Health:
    """Answers of health(): the server's ServingStatus, with NOT_FOUND (name unknown) as UNKNOWN."""

    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    UNKNOWN = "UNKNOWN"


class PodClient:
    """Talks to one pod's management port; create it and close() it on the running loop.

    `pod_uid`: the UID of the pod object meant; every call waits until the server at the address
    answered it (podidentity.py). None trusts the address (tests and tools that started the server
    themselves); the operator always passes the UID.
    """

    def __init__(self, address: str, token: str, *, pod_uid: str | None, settings: PodClientSettings) -> None:
        self.address = address
        self.token = token
        self.pod_uid = pod_uid
        self._settings = settings
        options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.keepalive_time_ms", 30_000),
            # Reconnect quickly to a restarted pod instead of waiting out grpc's default 20 s backoff.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2_000),
            # No transparent retries: grpc must never replay a call (token included) on a connection
            # made after the verification; _call retries itself, verifying first.
            ("grpc.enable_retries", 0),
        ]
        self._channel = aio.insecure_channel(address, options=options)
        self._stub = management_pb2_grpc.ManagementAPIsServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._identity = podidentity.ConnectionWatch(self._channel)
        self._reported: str | None = None

    async def close(self) -> None:
        await self._channel.close()
        await self._identity.close()

    async def verify(self) -> None:
        """Make sure the server on this channel's connection is pod `pod_uid`; PodCallError if not.

        Asks grpc.health.v1 Check with no token and reads `modelfleet-pod-uid`; cached until the
        channel's connection changes. Unverified: reason POD_IDENTITY_MISMATCH or _MISSING, not retried.
        """
        if self.pod_uid is None or self._identity.verified:
            return
        self._identity.start()
        answered, unreachable = await self._ask_identity()
        if unreachable is not None:
            raise unreachable
        problem = podidentity.identity_problem(self.pod_uid, answered, address=self.address)
        if problem is None:
            self._identity.mark_verified()
            self._reported = None
            return
        self._identity.forget()
        reason, message = problem
        message += "; the management token was not sent"
        if message != self._reported:  # once per new answer, not once per pass
            log.warning("Pod %s unverified: %s", self.pod_uid, message)
            self._reported = message
        raise PodCallError("Health/Check", grpc.StatusCode.UNAUTHENTICATED, message, reason)

    async def _ask_identity(self) -> tuple[list[str], PodCallError | None]:
        """The UIDs the server answered, or the error when nobody answered (unreachable: retried as
        usual). Returned, not raised here: a traceback through this frame would keep the call object,
        and with it the channel's shutdown, alive until the garbage collector runs."""
        call = self._health.Check(
            health_pb2.HealthCheckRequest(service=""), timeout=self._settings.call_timeout_s, wait_for_ready=False
        )
        try:
            await call
        except aio.AioRpcError as exc:
            answered = podidentity.answered_uids(exc.initial_metadata())
            if not answered and exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                reason, message = error_reason(exc)
                return [], PodCallError("Health/Check", exc.code(), message, reason)
            return answered, None  # someone answered (any status): what it said about itself decides
        return podidentity.answered_uids(await call.initial_metadata()), None

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    async def _call(self, method: str, request: Any, *, timeout_s: float, retry: bool = True) -> str:
        call: Callable[..., Awaitable[management_pb2.ManagementResponse]] = getattr(self._stub, method)
        delays = backoff_delays(self._settings) if retry else []
        attempt = 0
        while True:
            try:
                await self.verify()
                response = await call(request, timeout=timeout_s, metadata=self._metadata, wait_for_ready=False)
                return str(response.msg)
            except aio.AioRpcError as exc:
                reason, message = error_reason(exc)
                error = PodCallError(method, exc.code(), message, reason)
            except PodCallError as exc:  # from verify(): unreachable (transient) or unverified (not)
                error = exc
            if not error.transient or attempt >= len(delays):
                raise error
            log.debug("%s on %s failed (%s); retrying in %.2f s", method, self.address, error, delays[attempt])
            await asyncio.sleep(delays[attempt])
            attempt += 1

    # Reads -----------------------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        names: list[str] = []
        token = 0
        for _ in range(1000):  # bounded: 100 per page
            text = await self._call(
                "ListModels",
                management_pb2.ListModelsRequest(limit=100, next_page_token=token),
                timeout_s=self._settings.call_timeout_s,
            )
            page = _json(text, "ListModels")
            names.extend(str(m["modelName"]) for m in page.get("models", []) if "modelName" in m)
            next_token = str(page.get("nextPageToken") or "")
            if not next_token.isdigit() or int(next_token) <= token:
                return names
            token = int(next_token)
        return names

    async def describe(self, model: str, version: str = "all") -> list[dict[str, Any]]:
        text = await self._call(
            "DescribeModel",
            management_pb2.DescribeModelRequest(model_name=model, model_version=version),
            timeout_s=self._settings.call_timeout_s,
        )
        document = _json(text, "DescribeModel")
        if not isinstance(document, list):
            raise PodCallError("DescribeModel", grpc.StatusCode.INTERNAL, "answer is not a JSON array", None)
        return [entry for entry in document if isinstance(entry, dict)]

    async def health(self, service: str) -> str:
        """SERVING / NOT_SERVING / UNKNOWN (NOT_FOUND: the server does not know the name)."""
        await self.verify()  # no token here, but the answer must come from the pod meant
        try:
            answer = await self._health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=self._settings.call_timeout_s
            )
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return Health.UNKNOWN
            reason, message = error_reason(exc)
            raise PodCallError("Health/Check", exc.code(), message, reason) from None
        return Health.SERVING if answer.status == health_pb2.HealthCheckResponse.SERVING else Health.NOT_SERVING

    async def observe(self, pod: PodRef) -> ObservedPod:
        """Every model with its versions, workers, default and per-version health; errors → unreachable."""
        try:
            models: dict[str, ObservedModel] = {}
            for name in await self.list_models():
                observed = await self._observe_model(name)
                if observed is not None:
                    models[name] = observed
            return ObservedPod(pod=pod, models=models)
        except PodCallError as exc:
            return ObservedPod(pod=pod, models=None, error=str(exc), unverified=exc.unverified)

    async def _observe_model(self, name: str) -> ObservedModel | None:
        try:
            every = await self.describe(name, "all")
            default = await self.describe(name, "")
        except PodCallError as exc:
            if exc.stale:  # unregistered between ListModels and DescribeModel
                return None
            raise
        versions: dict[str, ObservedVersion] = {}
        for entry in every:
            version = str(entry.get("modelVersion", ""))
            workers = [w for w in entry.get("workers", []) if isinstance(w, dict)]
            serving = await self.health(f"{name}/{version}") == Health.SERVING
            versions[version] = ObservedVersion(
                version=version,
                url=str(entry.get("modelUrl", "")),
                min_workers=_int(entry.get("minWorkers")),
                max_workers=_int(entry.get("maxWorkers")),
                workers=len(workers),
                ready_workers=sum(1 for w in workers if w.get("status") == "READY"),
                serving=serving,
            )
        default_version = str(default[0].get("modelVersion", "")) if default else ""
        return ObservedModel(name=name, default_version=default_version, versions=versions)

    # Writes ----------------------------------------------------------------------------------

    async def register(self, model: ModelSpec, version: ModelVersionSpec, *, load_timeout_s: int) -> None:
        """Load a version and wait for its workers (synchronous); ALREADY_EXISTS counts as done."""
        request = management_pb2.RegisterModelRequest(
            url=version.url,
            model_name=model.name,
            handler=model.handler,
            batch_size=model.batch_size,
            max_batch_delay=model.max_batch_delay_ms,
            response_timeout=model.response_timeout_s,
            initial_workers=model.min_workers,
            startup_timeout=load_timeout_s,
            synchronous=True,
        )
        try:
            # The deadline covers the server's own load budget plus the call's usual allowance.
            await self._call(
                "RegisterModel", request, timeout_s=load_timeout_s + self._settings.call_timeout_s, retry=True
            )
        except PodCallError as exc:
            if exc.reason != contract.Reason.ALREADY_EXISTS.value:
                raise

    async def scale(self, model: str, version: str, *, min_workers: int, max_workers: int, timeout_s: float) -> None:
        await self._call(
            "ScaleWorker",
            management_pb2.ScaleWorkerRequest(
                model_name=model,
                model_version=version,
                min_worker=min_workers,
                max_worker=max_workers,
                synchronous=True,
            ),
            timeout_s=timeout_s,
        )

    async def set_default(self, model: str, version: str) -> None:
        await self._call(
            "SetDefault",
            management_pb2.SetDefaultRequest(model_name=model, model_version=version),
            timeout_s=self._settings.call_timeout_s,
        )

    async def unregister(self, model: str, version: str) -> None:
        try:
            await self._call(
                "UnregisterModel",
                management_pb2.UnregisterModelRequest(model_name=model, model_version=version),
                timeout_s=self._settings.call_timeout_s,
            )
        except PodCallError as exc:
            if exc.reason not in _GONE:  # already gone: done
                raise


def _json(text: str, method: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise PodCallError(method, grpc.StatusCode.INTERNAL, "answer is not JSON", None) from None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class PodClients:
    """The PodClient of each pod address, reused across passes; closes those of vanished pods."""

    def __init__(self, settings: PodClientSettings) -> None:
        self._settings = settings
        self._clients: dict[str, PodClient] = {}

    def get(self, address: str, token: str, *, pod_uid: str) -> PodClient:
        """The client for the pod `pod_uid` at `address`; it verifies that pod before sending the token."""
        client = self._clients.get(address)
        if client is None or client.token != token or client.pod_uid != pod_uid:
            if client is not None:
                # The token changed (rotated Secret) or another pod has the address now: a fresh
                # client with nothing verified; the old channel closes later.
                asyncio.get_running_loop().create_task(client.close())
            client = self._clients[address] = PodClient(address, token, pod_uid=pod_uid, settings=self._settings)
        return client

    async def retain(self, addresses: Mapping[str, object] | set[str]) -> None:
        for address in [a for a in self._clients if a not in addresses]:
            await self._clients.pop(address).close()

    async def close(self) -> None:
        await self.retain(set())
