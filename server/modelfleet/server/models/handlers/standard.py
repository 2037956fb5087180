"""The ModelHandler and batch runner shared by TorchServe's standard handlers (image_classifier, ...).

Called through each standard handler module's `create(context)`. A Pipeline says how one request
becomes one sample (on the worker thread, before the request joins a batch: a bad input fails
alone with BAD_INPUT), how a batch of samples runs through the model (TorchServe's batched
inference and the batched part of its postprocess) and how one sample's result becomes the answer
(TorchServe's JSON, `json.dumps(result, indent=2)`). Samples of one shape run in one forward pass;
if it fails, each runs alone so only the request the model rejects fails.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ...echo import clip
from ...errors import ErrorKind, ModelFleetError, Reason, bad_input
from ..contracts import ModelContext, ModelFiles, ModelHandler, ModelRunner, Request, SequenceContext, StreamRequest
from .labels import INDEX_TO_NAME, MAX_LABEL_FILE_BYTES, Labels, parse_labels
from .limits import RESPONSE_OVERHEAD, too_large
from .tensor import summarize_error

log = logging.getLogger(__name__)


class OutputMismatch(Exception):
    """The model ran, but its output is not what the handler expects: the model's fault, never retried."""


class Pipeline(Protocol):
    """One standard handler's steps for one model version (shared by its workers: keep it immutable)."""

    @property
    def name(self) -> str:
        """The handler's name, for messages."""
        ...

    def preprocess(self, request: Mapping[str, bytes]) -> torch.Tensor:
        """One request to one sample; raise ModelFleetError (BAD_INPUT) or ValueError for bad input."""
        ...

    def batch_key(self, sample: torch.Tensor) -> Hashable:
        """Samples with equal keys may run in one forward pass."""
        ...

    def forward(self, model: Callable[..., Any], samples: Sequence[torch.Tensor]) -> list[Any]:
        """Run the samples (on the model's device) and return one CPU result per sample, in order."""
        ...

    def answer(self, result: Any) -> Any:
        """One sample's result as the JSON value TorchServe answers with."""
        ...


def read_labels(files: ModelFiles) -> Labels | None:
    """The archive's index_to_name.json, or None (TorchServe then answers class indices)."""
    if INDEX_TO_NAME not in files.names():
        return None
    return parse_labels(read_capped(files, INDEX_TO_NAME, max_bytes=MAX_LABEL_FILE_BYTES))


def read_capped(files: ModelFiles, name: str, *, max_bytes: int) -> bytes:
    """An archive member that must be small (labels, vocabularies): a bigger one fails the load."""
    data = files.read(name)
    if len(data) > max_bytes:
        raise ModelFleetError(
            ErrorKind.INVALID_ARGUMENT, Reason.LOAD_FAILED, f"{name} is larger than {max_bytes} bytes"
        )
    return data


def to_cpu(value: Any) -> Any:
    """Tensors inside tuples, lists and dicts moved to the CPU (model outputs on an accelerator)."""
    if isinstance(value, torch.Tensor):
        return value if value.device.type == "cpu" else value.to("cpu")
    if isinstance(value, list):
        return [to_cpu(item) for item in value]
    if isinstance(value, tuple):
        return tuple(to_cpu(item) for item in value)
    if isinstance(value, dict):
        return {key: to_cpu(item) for key, item in value.items()}
    return value


class StandardHandler:
    """ModelHandler for one version with a standard handler: stateless, streams answer once."""

    def __init__(self, pipeline: Pipeline, context: ModelContext) -> None:
        self.pipeline = pipeline
        self.context = context

    @property
    def stateful(self) -> bool:
        return False

    @property
    def streams(self) -> bool:
        return False  # one answer per request: streaming requests join the batches

    def make_runner(self, device: str) -> ModelRunner:
        return StandardRunner(
            self.pipeline,
            self.context.place(device),
            device=device,
            max_response_bytes=self.context.state.max_response_bytes,
        )

    def open_stream(self, request: StreamRequest) -> AsyncIterator[bytes] | None:
        return None  # a worker answers streams with the one result

    def end_sequence(self, sequence: SequenceContext) -> None:
        pass

    def close(self) -> None:
        pass


class StandardRunner:
    """Runs one pipeline on one device for one worker thread."""

    def __init__(self, pipeline: Pipeline, model: Any, *, device: str, max_response_bytes: int) -> None:
        self.pipeline = pipeline
        self.model = model
        self.device = torch.device(device)
        self._max_response_bytes = max_response_bytes

    def run_batch(self, inputs: Sequence[Mapping[str, bytes]]) -> list[bytes | ModelFleetError]:
        results: list[bytes | ModelFleetError] = [_UNSET] * len(inputs)
        groups: dict[Hashable, list[tuple[int, torch.Tensor]]] = {}
        with torch.inference_mode():
            for index, request in enumerate(inputs):
                try:
                    sample = self.pipeline.preprocess(request)
                except ModelFleetError as exc:
                    results[index] = exc
                    continue
                except Exception as exc:  # deterministic code on the client's bytes: the input's fault
                    results[index] = bad_input(clip(f"{self.pipeline.name}: {type(exc).__name__}: {exc}"))
                    continue
                groups.setdefault(self.pipeline.batch_key(sample), []).append((index, sample))
            for group in groups.values():
                self._run_group(group, results)
        assert all(result is not _UNSET for result in results)
        return results

    def run_stream(self, request: Request) -> Iterator[bytes]:
        result = self.run_batch((request.inputs,))[0]
        if isinstance(result, ModelFleetError):
            raise result
        yield result

    def _run_group(self, group: list[tuple[int, torch.Tensor]], results: list[bytes | ModelFleetError]) -> None:
        samples = [sample.to(self.device) for _, sample in group]
        try:
            outputs = self.pipeline.forward(self.model, samples)
            if len(outputs) != len(group):
                raise OutputMismatch(f"{len(outputs)} results for {len(group)} samples")
        except OutputMismatch as exc:
            error = self._output_error(exc)
            for index, _ in group:
                results[index] = error
            return
        except Exception as exc:
            if len(group) > 1:  # one bad member must not fail the others: run each alone
                for member in group:
                    self._run_group([member], results)
                return
            results[group[0][0]] = bad_input(
                clip(f"the model rejected input of shape {list(group[0][1].shape)}: {summarize_error(exc)}")
            )
            return
        for (index, _), output in zip(group, outputs):
            results[index] = self._encode(output)

    def _encode(self, output: Any) -> bytes | ModelFleetError:
        try:
            encoded = json.dumps(self.pipeline.answer(output), indent=2).encode("utf-8")
        except Exception as exc:
            return self._output_error(exc)
        limit = self._max_response_bytes - RESPONSE_OVERHEAD
        if len(encoded) > limit:
            return too_large(len(encoded), limit=self._max_response_bytes, shape=[len(encoded)], exact=True)
        return encoded

    def _output_error(self, exc: Exception) -> ModelFleetError:
        log.warning("handler %r: unexpected model output: %s", self.pipeline.name, clip(str(exc)))
        return ModelFleetError(
            ErrorKind.INTERNAL,
            Reason.INTERNAL,
            clip(f"the model's output does not fit the {self.pipeline.name} handler: {exc}"),
        )


_UNSET: Any = object()

if TYPE_CHECKING:
    _IS_A_HANDLER: type[ModelHandler] = StandardHandler
    _IS_A_RUNNER: type[ModelRunner] = StandardRunner
