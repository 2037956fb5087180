"""Bearer-token auth: token files (mounted Secrets) → valid tokens per scope, and the interceptor.

The app builds one TokenStore from AuthSettings, starts its reload task, and installs one
TokenAuthInterceptor per server (not at all with --disable-token-auth). The check runs on every
request, so it only compares bytes; files are read by the reload task, never on the request path.
Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from modelfleet.server.errors import Reason
from modelfleet.server.rpc.error_details import error_status_trailer
from modelfleet.server.settings import AuthSettings

log = logging.getLogger(__name__)

MANAGEMENT = "management"
INFERENCE = "inference"
SCOPES = (MANAGEMENT, INFERENCE)

DENIED_MESSAGE = "Token Authorization failed. Token either incorrect, expired, or not provided correctly"
"""TorchServe 0.12's exact wording, so clients that match on it keep working; a detail follows."""

Metadata = Iterable[tuple[str, str | bytes]] | None
# (realpath, st_dev, st_ino, st_mtime_ns, st_ctime_ns, st_size): the real path changes on the
# Kubernetes `..data` symlink swap, the inode on an atomic rename, the times and size on a rewrite.
_Signature = tuple[str, int, int, int, int, int]


class TokenFileError(Exception):
    """A token file given at start cannot be used; raised by the constructor only (fail fast)."""


def bearer_token(metadata: Metadata) -> bytes | None:
    """The token of the first `authorization: Bearer <token>` entry (scheme case-insensitive)."""
    for key, value in metadata or ():
        if key != "authorization":  # gRPC lowercases metadata keys
            continue
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        return token.encode("utf-8", "replace")
    return None


def parse_tokens(text: str) -> tuple[bytes, ...]:
    """One token per line; blank lines and surrounding whitespace ignored; order kept, duplicates dropped."""
    return tuple(dict.fromkeys(line.strip().encode() for line in text.splitlines() if line.strip()))


class TokenStore:
    """The valid tokens of each scope, re-read from their files while the server runs.

    Scopes without a file get one generated token, written to `settings.key_file` (0600).
    A file that is briefly missing, empty or unreadable (a half-done rotation) keeps the previous
    tokens and logs a warning: a rotation glitch must never lock every client out.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self._interval = settings.reload_interval_s
        self._files: dict[str, Path] = {}
        self._tokens: dict[str, tuple[bytes, ...]] = {}
        self._signatures: dict[str, _Signature] = {}
        self._problems: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        configured = {MANAGEMENT: settings.management_token_file, INFERENCE: settings.inference_token_file}
        generated: dict[str, str] = {}
        for scope, path in configured.items():
            if path is None:
                token = secrets.token_urlsafe(32)
                generated[scope] = token
                self._tokens[scope] = (token.encode(),)
                continue
            self._files[scope] = path
            problem = self._reload_scope(scope, path)
            if problem is not None:
                raise TokenFileError(f"{scope} token file {path}: {problem}")
        self.key_file: Path | None = None
        """Where generated tokens were written; None when every scope has a token file."""
        if generated:
            write_key_file(settings.key_file, generated)
            self.key_file = settings.key_file
            log.info("Generated %s token(s) written to %s", " and ".join(generated), settings.key_file)

    def check(self, scope: str, metadata: Metadata) -> bool:
        """Whether the call's bearer token is one of the scope's tokens (runs on every request)."""
        candidate = bearer_token(metadata)
        if candidate is None:
            return False
        valid = False
        # No early exit: the time taken does not depend on which token matched or how much of it.
        for token in self._tokens.get(scope, ()):
            valid |= hmac.compare_digest(token, candidate)
        return valid

    def reload_now(self) -> None:
        """Re-read every token file whose identity or content changed (the reload task calls this)."""
        for scope, path in self._files.items():
            problem = self._reload_scope(scope, path)
            if problem is None:
                if self._problems.pop(scope, None) is not None:
                    log.info("The %s token file %s is usable again", scope, path)
            elif self._problems.get(scope) != problem:  # warn once per problem, not every poll
                self._problems[scope] = problem
                log.warning("Keeping the previous %s tokens: %s: %s", scope, path, problem)

    def start(self) -> None:
        """Start polling the token files on the running loop (no-op without files or when started)."""
        if self._files and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="token-file-reload")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self.reload_now()
            except Exception:  # the poller must outlive any surprise; requests keep the old tokens
                log.exception("Token file reload failed")

    def _reload_scope(self, scope: str, path: Path) -> str | None:
        """Load `path` if it changed; returns a problem description instead of raising."""
        try:
            before = _signature(path)
            if before == self._signatures.get(scope):
                return None
            text = Path(before[0]).read_text(encoding="utf-8")
            after = _signature(path)
        except (OSError, UnicodeDecodeError) as exc:
            return f"cannot read it ({exc.__class__.__name__}: {exc})"
        if after != before:
            return "it changed while being read"  # a rewrite in progress: try again next poll
        tokens = parse_tokens(text)
        if not tokens:
            return "it holds no tokens"
        if tokens != self._tokens.get(scope):
            if scope in self._tokens:
                log.info("Reloaded %d %s token(s) from %s", len(tokens), scope, path)
            self._tokens[scope] = tokens
        self._signatures[scope] = after
        return None


def _signature(path: Path) -> _Signature:
    real = os.path.realpath(path)
    st = os.stat(real)
    return (real, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def write_key_file(path: Path, tokens: Mapping[str, str]) -> None:
    """Write `{"<scope>": {"key": "<token>"}}` (TorchServe's key_file.json shape) with mode 0600.

    Written to a new file created 0600 (O_EXCL, so never through a planted symlink) and renamed
    over the target, so the tokens are never readable by others, not even for a moment.
    """
    content = json.dumps({scope: {"key": token} for scope, token in tokens.items()}, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)  # exactly 0600 whatever the umask
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


# grpc ships no type information, so its base class is Any to mypy; grpc.aio.server() only
# accepts instances of this exact base, hence the subclass.
class TokenAuthInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """Lets a call through only with its service's scope token; open services need none.

    Services in neither mapping are denied (default deny: a service added later without a scope
    is closed, not open). A valid call gets the continuation's handler untouched, so the happy
    path costs one dict lookup and one token comparison.
    """

    def __init__(
        self,
        store: TokenStore,
        scope_by_service: Mapping[str, str],
        open_services: Iterable[str],
        *,
        code: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED,
        codes: Mapping[str, grpc.StatusCode] | None = None,
    ) -> None:
        unknown = set(scope_by_service.values()) - set(SCOPES)
        if unknown:
            raise ValueError(f"unknown token scope(s) {sorted(unknown)}; expected {SCOPES}")
        self._store = store
        self._scope_by_service = dict(scope_by_service)
        self._open = frozenset(open_services)
        self._code = code  # PERMISSION_DENIED as TorchServe; the app passes status.py's choice
        self._codes = dict(codes or {})  # per-service overrides (Open Inference: always UNAUTHENTICATED)

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Awaitable[grpc.RpcMethodHandler | None]:
        """The continuation's own awaitable when the call may pass, else one that builds the refusal.

        A plain method, not a coroutine: grpc awaits what it returns, so a call that passes costs no
        coroutine frame of its own (this runs on the event loop for every request).
        """
        method: str = handler_call_details.method
        service = method[1 : method.rfind("/")]  # "/pkg.Service/Method" → "pkg.Service"
        if service in self._open:
            return continuation(handler_call_details)
        scope = self._scope_by_service.get(service)
        metadata = handler_call_details.invocation_metadata
        if scope is not None and self._store.check(scope, metadata):
            return continuation(handler_call_details)
        return self._refuse(continuation, handler_call_details, service=service, scope=scope, metadata=metadata)

    async def _refuse(
        self,
        continuation: Continuation,
        details: grpc.HandlerCallDetails,
        *,
        service: str,
        scope: str | None,
        metadata: Metadata,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        return _denying_handler(handler, self._codes.get(service, self._code), *_denial(scope, metadata))


def _denial(scope: str | None, metadata: Metadata) -> tuple[str, dict[str, str]]:
    if scope is None:
        return f"{DENIED_MESSAGE} (no token opens this service)", {}
    if bearer_token(metadata) is None:
        detail = f"send 'authorization: Bearer <{scope} token>' metadata"
        return f"{DENIED_MESSAGE} ({detail})", {"scope": scope, "problem": "missing"}
    detail = f"the token is not a valid {scope} token"
    return f"{DENIED_MESSAGE} ({detail})", {"scope": scope, "problem": "invalid"}


def _denying_handler(
    handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, message: str, info: dict[str, str]
) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind that aborts before reading any request."""
    trailer = error_status_trailer(code, message, reason=Reason.TOKEN_INVALID.value, metadata=info)

    async def deny(request: Any, context: aio.ServicerContext) -> None:
        await context.abort(code, message, trailing_metadata=trailer)

    # No deserializer: the request bytes are never parsed for a call that is refused.
    request_streaming = handler is not None and handler.request_streaming
    response_streaming = handler is not None and handler.response_streaming
    if request_streaming and response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)
