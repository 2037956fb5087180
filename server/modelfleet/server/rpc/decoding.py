"""Undecodable request messages: INVALID_ARGUMENT and one rate-limited WARNING, never a traceback.

grpc answers a body its deserializer cannot parse with UNKNOWN (INTERNAL inside a servicer's
`async for`) and logs an ERROR traceback each time: a log flood any client can cause, even
unauthenticated on health and reflection. app.py installs one DecodingInterceptor on every server,
*after* the token interceptor, so a refused call is never parsed and a garbage body without a token
gets the token error. The interceptor wraps each method handler once (cached): the deserializer
returns a sentinel instead of raising, and the behaviour refuses the sentinel with status.py's code
for Reason.BAD_INPUT. Good messages pass untouched: one identity check, no copy.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from modelfleet.server.errors import bad_input
from modelfleet.server.rpc import status
from modelfleet.server.settings import StatusMode

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0
"""At most one warning per method per this many seconds; the next one says how many it skipped."""

_CACHE_LIMIT = 1024
"""Handlers wrapped and kept; servers register a fixed set, so this only guards against a leak."""

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]
Behaviour = Callable[..., Any]


class _Undecodable:
    """The one value a wrapped deserializer returns for bytes it cannot parse."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<undecodable request>"


UNDECODABLE = _Undecodable()


class WarningThrottle:
    """One WARNING per key per interval; the next line carries the count of those suppressed."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_s
        self._clock = clock
        self._state: dict[str, tuple[float, int]] = {}  # key → (last logged at, suppressed since)

    def warn(self, key: str, message: str, *args: object) -> bool:
        """Log `message % args` plus the suppressed count, unless `key` logged within the interval."""
        now = self._clock()
        last = self._state.get(key)
        if last is not None and now - last[0] < self._interval:
            self._state[key] = (last[0], last[1] + 1)
            return False
        suppressed = 0 if last is None else last[1]
        self._state[key] = (now, 0)
        if suppressed:
            log.warning(message + " (and %d more in the last %g s)", *args, suppressed, self._interval)
        else:
            log.warning(message, *args)
        return True


def _type_name(deserializer: Callable[[bytes], Any]) -> str:
    """`pkg.Message` for a generated `Message.FromString`; a generic name otherwise."""
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", None)
    return name if isinstance(name, str) else "protobuf message"


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception:  # DecodeError, bad UTF-8 in a string field, nesting limits: all client bytes
            return UNDECODABLE

    return deserialize


class _Refusal:
    """Aborts one method's calls that carried an undecodable message (and logs, throttled)."""

    def __init__(self, method: str, type_name: str, *, mode: StatusMode, throttle: WarningThrottle) -> None:
        self._method = method
        self._error = bad_input(f"The request message is not a valid {type_name} (protobuf decoding failed)")
        self._codes = status.codes_for(method[method.rfind("/") + 1 :], mode)
        self._throttle = throttle

    async def __call__(self, context: aio.ServicerContext) -> None:
        code = status.code_of(self._error, self._codes)
        message = "Refused an undecodable request to %s from %s with %s"
        self._throttle.warn(self._method, message, self._method, context.peer(), code.name)
        await status.abort(context, self._error, self._codes)  # raises AbortError


class _CheckedRequests:
    """A request stream that ends the call when a message in it is undecodable."""

    __slots__ = ("_requests", "_context", "_refuse")

    def __init__(self, requests: Any, context: aio.ServicerContext, refuse: _Refusal) -> None:
        self._requests = requests.__aiter__()
        self._context = context
        self._refuse = refuse

    def __aiter__(self) -> _CheckedRequests:
        return self

    async def __anext__(self) -> Any:
        request = await self._requests.__anext__()
        if request is UNDECODABLE:
            await self._refuse(self._context)
        return request


def _unary_response(behaviour: Behaviour, refuse: _Refusal) -> Behaviour:
    async def call(request: Any, context: aio.ServicerContext) -> Any:
        if request is UNDECODABLE:
            await refuse(context)
        return await behaviour(request, context)

    return call


def _streaming_response(behaviour: Behaviour, refuse: _Refusal) -> Behaviour:
    if inspect.iscoroutinefunction(behaviour):  # writes through context.write()

        async def write(request: Any, context: aio.ServicerContext) -> None:
            if request is UNDECODABLE:
                await refuse(context)
            await behaviour(request, context)

        return write

    async def generate(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        if request is UNDECODABLE:
            await refuse(context)
        async for response in behaviour(request, context):
            yield response

    return generate


def _request_streaming(behaviour: Behaviour, refuse: _Refusal) -> Behaviour:
    """Same kind of callable as `behaviour` (coroutine or async generator), over checked requests."""
    if inspect.isasyncgenfunction(behaviour):

        async def generate(requests: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            async for response in behaviour(_CheckedRequests(requests, context, refuse), context):
                yield response

        return generate

    async def call(requests: Any, context: aio.ServicerContext) -> Any:
        return await behaviour(_CheckedRequests(requests, context, refuse), context)

    return call


def _is_async(handler: grpc.RpcMethodHandler) -> bool:
    behaviour = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    return inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)


def tolerant_handler(
    handler: grpc.RpcMethodHandler, method: str, *, mode: StatusMode, throttle: WarningThrottle
) -> grpc.RpcMethodHandler:
    """`handler` with a deserializer that never raises and a behaviour that refuses what it could not parse.

    Handlers without a deserializer, or with sync behaviours (run in grpc's thread pool, none
    here), are returned unchanged.
    """
    deserializer = handler.request_deserializer
    if deserializer is None or not _is_async(handler):
        return handler
    refuse = _Refusal(method, _type_name(deserializer), mode=mode, throttle=throttle)
    codecs = {"request_deserializer": _tolerant(deserializer), "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_unary_response(handler.unary_unary, refuse), **codecs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_streaming_response(handler.unary_stream, refuse), **codecs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_request_streaming(handler.stream_unary, refuse), **codecs)
    return grpc.stream_stream_rpc_method_handler(_request_streaming(handler.stream_stream, refuse), **codecs)


# grpc ships no type information, so its base class is Any to mypy (see auth.py).
class DecodingInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """Installs tolerant_handler() on every method; install it after the token interceptor."""

    def __init__(self, mode: StatusMode, *, throttle: WarningThrottle | None = None) -> None:
        self._mode = mode
        self._throttle = throttle or WarningThrottle()
        # (method, id(original)) → (original, wrapped); the original is kept so its id is never
        # reused. The method is part of the key: one handler may serve two paths (reflection v1
        # and v1alpha), and each path gets its own name in the log and its own throttle.
        self._wrapped: dict[tuple[str, int], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED, nothing is parsed
            return None
        method: str = handler_call_details.method
        key = (method, id(handler))
        cached = self._wrapped.get(key)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = tolerant_handler(handler, method, mode=self._mode, throttle=self._throttle)
        if len(self._wrapped) < _CACHE_LIMIT:
            self._wrapped[key] = (handler, wrapped)
        return wrapped
