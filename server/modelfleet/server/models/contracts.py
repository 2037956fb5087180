"""Values and seams shared by the domain modules (sources, loading, registry, workers, handlers).

Kept in one small module so each domain module can be written and tested alone against these
shapes. The handler seam is here: every handler (built in or trusted) is a ModelHandler made from
a ModelContext, and makes one ModelRunner per worker (docs/handlers.md is the prose contract).
Nothing here touches torch at import time or does I/O.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ModelFleetError
from ..settings import DEFAULT_MAX_MESSAGE_BYTES, ModelSettings

if TYPE_CHECKING:
    from .archive import Manifest


@dataclass(frozen=True)
class RegisterSpec:
    """What a caller (RegisterModel, or the desired-state file) asks to load."""

    url: str
    """Model store name, file:// path or http(s):// URL, optionally with #version=/#sha256= fragments."""
    model_name: str = ""
    """Overrides the manifest's name; required when the source has no manifest and no usable file stem."""
    handler: str = ""
    """Overrides the manifest's handler; must be built in or trusted."""
    batch_size: int = 1
    max_batch_delay_ms: int = 100
    initial_workers: int = 0
    """0 means the server's default worker count (TorchServe's quirk)."""
    response_timeout_s: int = 120
    startup_timeout_s: int = 120
    synchronous: bool = False
    expected_version: str | None = None
    """When set (desired-state file, operator), loading fails unless the source's version equals it."""
    signature: ModelSignature | None = None
    """Declared tensors (the desired-state entry's `signature`); the Open Inference metadata's source
    when the model file cannot say (see signature.py for the order)."""


@dataclass(frozen=True)
class ResolvedSource:
    """A model source made local and checked against the allow-list."""

    url: str
    """The URL as the client gave it (reported as modelUrl)."""
    path: Path
    """A local file or folder inside an allowed location (downloads land in the server's cache)."""
    version_hint: str | None = None
    """From a `#version=<v>` fragment; only used for bare .pt/.pt2/.safetensors files."""


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a model's signature, in Open Inference Protocol terms."""

    name: str
    datatype: str
    """An OIP datatype ("FP32", "INT64", "BYTES", ...)."""
    shape: tuple[int, ...]
    """-1 for a dimension of any size (the batch dimension when it is dynamic)."""


@dataclass(frozen=True)
class ModelSignature:
    """The tensors a model version takes and gives, as ModelMetadata reports them."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    origin: str
    """Where it came from: "model" (a .pt2 program), "desired-state", "archive" (signature.json) or "default"."""


# ---- what handlers are given -----------------------------------------------------------------
@dataclass
class ModelState:
    """Shared by all runners of one loaded model version: what a handler knows or learns once."""

    sample_ndim: int | None = None
    """Dimensions of one input sample; from the model (.pt2) or learned from the first request."""
    max_request_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """The server's request size limit (network.max_receive_message_bytes): bounds the element
    count a tensor's shape may name, empty tensors included."""
    max_response_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """The server's response size limit (network.max_send_message_bytes): a bigger answer is
    refused (MESSAGE_TOO_LARGE) before it is built."""


class ModelFiles(Protocol):
    """Read-only access to the files a model archive or folder carries besides the model
    (e.g. `index_to_name.json`). Valid while the handler is created (ModelContext); read what
    you need then. Names are archive member paths; nothing is ever imported or unpickled."""

    def names(self) -> list[str]:
        """Every member name except MAR-INF/ and the serialized model file."""
        ...

    def read(self, name: str) -> bytes:
        """The member's bytes; NOT_FOUND-style UNSUPPORTED_FORMAT error when missing, capped in size."""
        ...


@dataclass(frozen=True)
class ModelContext:
    """Everything a handler learns about its model version once, at load (on the loading thread)."""

    name: str
    version: str
    handler_name: str
    """Canonical: `default`, `generation`, another built-in name or a trusted module name."""
    serialized_format: str
    """"torchscript", "export" or "safetensors"."""
    module: Any
    """The loaded model on the CPU (a torch.nn.Module, ScriptModule or exported module)."""
    place: Callable[[str], Any]
    """device -> the model on that device (the CPU module itself, else one copy per device)."""
    state: ModelState
    files: ModelFiles
    manifest: Manifest | None = None
    """The archive's MANIFEST.json fields; None for a bare .pt/.pt2/.safetensors file."""
    settings: ModelSettings = field(default_factory=ModelSettings)


@dataclass
class SequenceContext:
    """One open sequence of StreamPredictions2 requests (TorchServe's sequence batching).

    A stateful handler keeps what it needs across the sequence's requests in `state`; the server
    drops it when the sequence ends, idles out, its client disconnects or the model is unregistered.
    Requests of one sequence run one at a time, in order, on the same worker thread.
    """

    sequence_id: str
    state: dict[str, Any] = field(default_factory=dict)
    """The handler's memory for this sequence; starts empty."""
    started: bool = True
    """True for the request that opened the sequence (TorchServe's ts_request_sequence_start)."""
    ending: bool = False
    """True when the client marked this request as the sequence's last (ts_request_sequence_end)."""
    end_requested: bool = False
    """Set by end(): the handler ends the sequence after the current request."""
    released: str | None = None
    """Why the sequence was released ("end", "idle", "disconnect", "unregister", "worker"); set before
    the handler's end_sequence hook runs."""

    def end(self) -> None:
        """End the sequence after the current request (as a client's sequence-end marker would)."""
        self.end_requested = True


@dataclass(frozen=True)
class Request:
    """One streaming request as a worker's runner sees it."""

    inputs: Mapping[str, bytes]
    sequence: SequenceContext | None = None
    """Set on StreamPredictions2 when the handler is stateful."""


@dataclass(frozen=True)
class Call:
    """One request as a hooks module's `handle(call)` sees it (on a worker thread)."""

    inputs: Mapping[str, bytes]
    """The request's input entries (sequence markers removed)."""
    model: Any
    """The model on this worker's device."""
    device: str
    sequence: SequenceContext | None = None
    """The request's sequence on StreamPredictions2 when the handler is stateful, else None."""
    streaming: bool = False
    """True on StreamPredictions/StreamPredictions2: every yielded response is sent as it comes.
    On Predictions only the last (final) one is sent."""


@dataclass(frozen=True)
class StreamRequest:
    """One streaming request as ModelHandler.open_stream sees it (on the event loop)."""

    inputs: Mapping[str, bytes]
    device: str
    """The device of the version's first worker ("cpu" when it has none)."""
    deadline: float | None


# ---- the seam ---------------------------------------------------------------------------------
class ModelRunner(Protocol):
    """Runs one model version on one device. One instance per worker; called from that worker's thread only."""

    def run_batch(self, inputs: Sequence[Mapping[str, bytes]]) -> list[bytes | ModelFleetError]:
        """Decode each request, run them together, encode each result.

        Must return exactly one entry per input, in order. A bad input yields a
        ModelFleetError (BAD_INPUT) in its slot and never fails its neighbours.
        """
        ...

    def run_stream(self, request: Request) -> Iterator[bytes]:
        """The responses of one streaming request, in order; the last one is final.

        A handler that does not stream yields its one result. Raise ModelFleetError for a request
        that fails; responses already yielded have been sent.
        """
        ...


class ModelHandler(Protocol):
    """One model version's handler: the single shape every built-in and trusted handler has.

    Made once per loaded version by its handler factory (HandlerFactory); the registry and the
    workers only ever talk to this.
    """

    @property
    def stateful(self) -> bool:
        """Whether StreamPredictions2 sequences keep per-sequence state (routed to one worker each)."""
        ...

    @property
    def streams(self) -> bool:
        """Whether a runner's run_stream may yield several responses. False: streaming requests join
        batches with the others (run_batch) and are answered once."""
        ...

    def make_runner(self, device: str) -> ModelRunner:
        """A runner for one worker on `device` (called on that worker's thread)."""
        ...

    def open_stream(self, request: StreamRequest) -> AsyncIterator[bytes] | None:
        """This handler's own streaming, off the worker queue (e.g. a shared decode loop), or None
        to have a worker run it (ModelRunner.run_stream). Called on the event loop."""
        ...

    def end_sequence(self, sequence: SequenceContext) -> None:
        """The sequence is released (sequence.released says why); free what its state holds.
        Called on the sequence's worker thread when it is alive, else on a pool thread."""
        ...

    def close(self) -> None:
        """The version is unregistered or the server stops: stop threads, free resources."""
        ...


HandlerFactory = Callable[[ModelContext], ModelHandler]
"""What a built-in handler module's `create` is, and what hooks.create_hooks_handler binds."""


@dataclass(frozen=True)
class LoadInfo:
    """How a version was loaded, as DescribeModel and the tests report it."""

    engine: str
    """The serialized format: "torchscript", "export" or "safetensors"."""
    runtime: str = "python"
    handler_kind: str = "builtin"
    """"builtin" or "trusted"."""
    layout: str = "file"
    """"file", "mar" or "folder"."""
    serialized_file: str = ""


@dataclass
class LoadedModel:
    """A model version loaded from its source, with its handler, ready to create one runner per worker."""

    name: str
    """Manifest model name, or the request's override."""
    version: str
    handler_name: str
    serialized_format: str
    """"torchscript", "export" or "safetensors"."""
    handler: ModelHandler
    info: LoadInfo | None = None
    signature: ModelSignature | None = None
    """What the model, or a declaration, says about its tensors (None: signature.py's defaults)."""
    state: ModelState | None = None
    """The handlers' shared knowledge (the sample rank learned from the first request)."""

    def make_runner(self, device: str) -> ModelRunner:
        return self.handler.make_runner(device)

    @property
    def load_info(self) -> LoadInfo:
        return self.info if self.info is not None else LoadInfo(engine=self.serialized_format)
