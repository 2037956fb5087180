"""Built-in `text_classifier` handler module: TorchServe 0.12's TextClassifier, over .pt/.pt2 models.

Input: UTF-8 text in `data` or `body`, normalised and split into words and bigrams as TorchServe
does (text_normalize.py), looked up in the archive's vocabulary. The model is called as
`model(token_ids, offsets)` (TorchServe's EmbeddingBag convention); requests of a batch share one
call with one offset per text (TorchServe runs only one text per call), and a model that answers
fewer rows runs each text alone. Answer per text: every class as `{label: softmax probability}`.
The vocabulary is `source_vocab.json`, `{"stoi": {"token": index}, "default_index": index | null}`
(torchtext's get_stoi() and get_default_index()); TorchServe's pickled `source_vocab.pt` is never
loaded: `modelfleet-convert` turns it into source_vocab.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ...errors import ErrorKind, ModelFleetError, Reason, bad_input
from ..contracts import ModelContext, ModelFiles
from . import text_normalize
from .labels import Labels, scores_by_label
from .standard import OutputMismatch, StandardHandler, read_labels, to_cpu

VOCAB_FILE = "source_vocab.json"
PICKLED_VOCAB_FILE = "source_vocab.pt"


@dataclass(frozen=True)
class Vocabulary:
    stoi: Mapping[str, int]
    default_index: int | None = None

    def index(self, token: str) -> int:
        found = self.stoi.get(token, self.default_index)
        if found is None:
            raise bad_input(
                f"the word {token[:100]!r} is not in the model's vocabulary, which has no default index "
                "(TorchServe fails such requests too)"
            )
        return found


@dataclass(frozen=True)
class TextPipeline:
    vocabulary: Vocabulary
    labels: Labels | None
    name: str = "text_classifier"

    def preprocess(self, request: Mapping[str, bytes]) -> torch.Tensor:
        raw = request.get("data") or request.get("body")
        if not raw:
            raise bad_input("no text: send UTF-8 text in the input entry 'data' or 'body'")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise bad_input(f"the text is not UTF-8 ({exc.reason} at byte {exc.start})") from None
        tokens = text_normalize.tokens(text)
        if not tokens:
            raise bad_input("the text has no words once markup and punctuation are removed")
        return torch.tensor([self.vocabulary.index(token) for token in tokens], dtype=torch.int64)

    def batch_key(self, sample: torch.Tensor) -> Hashable:
        return "texts"  # any lengths share a call: one offset per text

    def forward(self, model: Callable[..., Any], samples: Sequence[torch.Tensor]) -> list[Any]:
        scores, got = _run(model, samples)
        if scores is None and len(samples) > 1:  # the model ignores extra offsets: one text per call, as TorchServe
            rows: list[torch.Tensor] = []
            for sample in samples:
                row, got = _run(model, [sample])
                if row is None:
                    break
                rows.append(row)
            else:
                scores = torch.cat(rows)
        if scores is None:
            raise OutputMismatch(f"expected class scores of shape [texts, classes], got {got}")
        return list(torch.nn.functional.softmax(scores, dim=1).tolist())

    def answer(self, result: Any) -> Any:
        return scores_by_label(range(len(result)), result, self.labels)


def _run(model: Callable[..., Any], samples: Sequence[torch.Tensor]) -> tuple[torch.Tensor | None, str]:
    """model(all token ids, one start offset per text): the scores, or None and what came instead."""
    starts = [0]
    for sample in samples[:-1]:
        starts.append(starts[-1] + int(sample.shape[0]))
    offsets = torch.tensor(starts, dtype=torch.int64, device=samples[0].device)
    output = to_cpu(model(torch.cat(list(samples)), offsets))
    if isinstance(output, torch.Tensor) and output.dim() == 2 and output.shape[0] == len(samples):
        return output, ""
    return None, f"shape {list(output.shape)}" if isinstance(output, torch.Tensor) else type(output).__name__


def read_vocabulary(files: ModelFiles) -> Vocabulary:
    names = files.names()
    if VOCAB_FILE not in names:
        if PICKLED_VOCAB_FILE in names:
            raise ModelFleetError(
                ErrorKind.INVALID_ARGUMENT,
                Reason.UNSUPPORTED_FORMAT,
                f"the archive's vocabulary is {PICKLED_VOCAB_FILE}, a pickle, which the server never loads "
                f"(unpickling runs code). Convert the archive with `modelfleet-convert`, which writes {VOCAB_FILE}, "
                f'or add {VOCAB_FILE} yourself: {{"stoi": vocab.get_stoi(), "default_index": '
                "vocab.get_default_index()}",
            )
        raise ModelFleetError(
            ErrorKind.INVALID_ARGUMENT,
            Reason.UNSUPPORTED_FORMAT,
            f"the text_classifier handler needs the vocabulary {VOCAB_FILE} in the archive "
            '({"stoi": {"token": index}, "default_index": index or null}); `modelfleet-convert` writes it',
        )
    return parse_vocabulary(files.read(VOCAB_FILE))  # capped by ModelFiles (64 MiB)


def parse_vocabulary(raw: bytes) -> Vocabulary:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad_vocabulary(f"it is not JSON ({exc})") from None
    stoi = document.get("stoi") if isinstance(document, dict) else None
    if not isinstance(stoi, dict):
        raise _bad_vocabulary('it must be an object with "stoi": {"token": index}')
    if not all(type(index) is int and index >= 0 for index in stoi.values()):
        raise _bad_vocabulary("every index in stoi must be a non-negative integer")
    default = document.get("default_index")
    if default is not None and (type(default) is not int or default < 0):
        raise _bad_vocabulary("default_index must be a non-negative integer or null")
    return Vocabulary(stoi=stoi, default_index=default)


def create(context: ModelContext) -> StandardHandler:
    pipeline = TextPipeline(vocabulary=read_vocabulary(context.files), labels=read_labels(context.files))
    return StandardHandler(pipeline, context)


def _bad_vocabulary(why: str) -> ModelFleetError:
    return ModelFleetError(ErrorKind.INVALID_ARGUMENT, Reason.LOAD_FAILED, f"{VOCAB_FILE}: {why}")
