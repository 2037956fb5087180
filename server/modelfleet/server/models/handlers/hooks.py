"""The ModelHandler of every hooks module: `default`, the built-in hooks modules and trusted handlers.

Called by handlers.load_handler (through create_hooks_handler). Without `handle`, the tensor
pipeline (tensor.TensorRunner) runs with the module's preprocess/postprocess; with `handle`, each
request goes to it on the worker thread, and what it yields is streamed. Responses are size-checked
here (MESSAGE_TOO_LARGE) so a handler cannot build an answer the transport would refuse.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...echo import clip
from ...errors import ErrorKind, ModelFleetError, Reason, bad_input
from ..contracts import Call, ModelContext, ModelHandler, ModelRunner, Request, SequenceContext, StreamRequest
from .limits import RESPONSE_OVERHEAD, too_large
from .tensor import TensorRunner
from .trusted import TrustedHooks

log = logging.getLogger(__name__)


def create_hooks_handler(hooks: TrustedHooks, context: ModelContext, *, kind: str) -> HooksHandler:
    """The handler of one model version for a hooks module (`kind`: "builtin" or "trusted")."""
    bound = hooks.bound(context)
    if bound.stateful and bound.handle is None:
        raise ModelFleetError(
            ErrorKind.INTERNAL,
            Reason.LOAD_FAILED,
            f"handler {hooks.module_name!r}: STATEFUL handlers need handle(call) to reach call.sequence.state",
        )
    return HooksHandler(bound, context, kind=kind)


class HooksHandler:
    """ModelHandler over a hooks module's functions (see trusted.py for the hooks)."""

    def __init__(self, hooks: TrustedHooks, context: ModelContext, *, kind: str) -> None:
        self.hooks = hooks
        self.context = context
        self.kind = kind
        if hooks.sample_ndim is not None:
            context.state.sample_ndim = hooks.sample_ndim

    @property
    def stateful(self) -> bool:
        return self.hooks.stateful

    @property
    def streams(self) -> bool:
        return self.hooks.handle is not None

    def make_runner(self, device: str) -> ModelRunner:
        module = self.context.place(device)
        if self.hooks.handle is not None:
            return CallRunner(
                self.hooks, module, device=device, max_response_bytes=self.context.state.max_response_bytes
            )
        return TensorRunner(module, device=device, state=self.context.state, hooks=self.hooks)

    def open_stream(self, request: StreamRequest) -> AsyncIterator[bytes] | None:
        return None  # streams run on the workers

    def end_sequence(self, sequence: SequenceContext) -> None:
        if self.hooks.end_sequence is not None:
            self.hooks.end_sequence(sequence)

    def close(self) -> None:
        pass


class CallRunner:
    """Runs a hooks module's handle(call) for each request on one worker (one device)."""

    def __init__(self, hooks: TrustedHooks, module: Any, *, device: str, max_response_bytes: int) -> None:
        assert hooks.handle is not None
        self._handle = hooks.handle
        self._name = hooks.module_name
        self.module = module
        self.device = device
        self._limit = max_response_bytes - RESPONSE_OVERHEAD
        self._max_response_bytes = max_response_bytes

    def run_batch(self, inputs: Sequence[Mapping[str, bytes]]) -> list[bytes | ModelFleetError]:
        results: list[bytes | ModelFleetError] = []
        for one in inputs:
            last: bytes | None = None
            try:
                for last in self._responses(Call(one, self.module, self.device)):  # noqa: B007 (keeps the last)
                    pass
            except ModelFleetError as exc:
                results.append(exc)
                continue
            results.append(last if last is not None else self._nothing())
        return results

    def run_stream(self, request: Request) -> Iterator[bytes]:
        sent = False
        for response in self._responses(
            Call(request.inputs, self.module, self.device, sequence=request.sequence, streaming=True)
        ):
            sent = True
            yield response
        if not sent:
            raise self._nothing()

    def _responses(self, call: Call) -> Iterator[bytes]:
        """The handler's responses, each checked; its exceptions become this request's error."""
        try:
            produced = self._handle(call)
            items: Iterable[bytes] = [produced] if isinstance(produced, (bytes, bytearray)) else produced
            for item in items:
                if not isinstance(item, (bytes, bytearray)):
                    raise TypeError(f"handle produced {type(item).__name__}, not bytes")
                if len(item) > self._limit:
                    raise too_large(len(item), limit=self._max_response_bytes, shape=[len(item)], exact=True)
                yield bytes(item)
        except ModelFleetError:
            raise
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            raise bad_input(clip(f"{type(exc).__name__}: {exc}")) from None
        except Exception as exc:
            log.warning("handler %r failed: %s", self._name, clip(f"{type(exc).__name__}: {exc}"))
            raise ModelFleetError(
                ErrorKind.INTERNAL,
                Reason.INTERNAL,
                clip(f"handler {self._name!r} handle failed: {type(exc).__name__}: {exc}"),
            ) from None

    def _nothing(self) -> ModelFleetError:
        return ModelFleetError(ErrorKind.INTERNAL, Reason.INTERNAL, f"handler {self._name!r} produced no response")


if TYPE_CHECKING:
    _IS_A_HANDLER: type[ModelHandler] = HooksHandler
    _IS_A_RUNNER: type[ModelRunner] = CallRunner
