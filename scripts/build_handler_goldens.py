"""Golden answers of TorchServe 0.12's own standard handlers, for test_standard_handler_goldens.py.

Run by scripts/build-handler-goldens.sh inside the reference venv (torch 2.14.1, torchvision
0.29.1, torchserve 0.12.0, captum), never by the server or the test suite. For each case of
tests/server/standard_handlers/golden_cases.json it builds the stand-in model
(standin_models.py), lays out a model folder as TorchServe's model_dir, calls the handler class's
initialize() and handle() with TorchServe's MockContext, and records what it answers (or which
exception it raised). Writes goldens/goldens.json, the input images and source_vocab.json.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import PIL
import torch
import torchvision
from ts.handler_utils.text_utils import get_tokenizer, ngrams_iterator
from ts.torch_handler.image_classifier import ImageClassifier
from ts.torch_handler.image_segmenter import ImageSegmenter
from ts.torch_handler.object_detector import ObjectDetector
from ts.torch_handler.text_classifier import TextClassifier
from ts.torch_handler.unit_tests.test_utils.mock_context import MockContext

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "tests/server/standard_handlers"
sys.path.insert(0, str(ROOT / "tests/support"))
import mf_standin_models as standin_models  # noqa: E402  (the tests' own stand-in models, shared on purpose)
import mf_golden_summary as golden_summary  # noqa: E402

HANDLERS = {
    "image_classifier": ImageClassifier,
    "image_segmenter": ImageSegmenter,
    "object_detector": ObjectDetector,
    "text_classifier": TextClassifier,
}
LABEL_SETS = {"image_classifier": "classifier", "object_detector": "detector", "text_classifier": "text"}


class DefaultVocab(dict):
    """torchtext's Vocab after set_default_index(0): unknown tokens map to <unk>."""

    def __missing__(self, key: str) -> int:
        return 0


def build_vocab(corpus: list[str]) -> dict[str, int]:
    """<unk> first, then each word and bigram of the corpus as TorchServe's text_classifier makes them."""
    handler = TextClassifier()
    stoi = {"<unk>": 0}
    for line in corpus:
        text = handler._remove_html_tags(line).lower()
        text = handler._remove_punctuation(handler._remove_accented_characters(handler._expand_contractions(text)))
        for token in ngrams_iterator(handler._tokenize(text), TextClassifier.ngrams):
            stoi.setdefault(token, len(stoi))
    return stoi


def model_dir(folder: Path, case: dict[str, Any], spec: dict[str, Any], vocab: dict[str, int]) -> Path:
    folder.mkdir()
    model = standin_models.scripted(case["model"], vocab_size=len(vocab))
    model.save(str(folder / "model.pt"))
    label_set = LABEL_SETS.get(case["handler"])
    if label_set and case.get("labels", label_set) is not None:
        (folder / "index_to_name.json").write_text(json.dumps(spec["labels"][label_set]))
    if case["handler"] == "text_classifier":
        torch.save(vocab, folder / "source_vocab.pt")
    return folder


def run_case(folder: Path, case: dict[str, Any], spec: dict[str, Any], vocab: dict[str, int]) -> dict[str, Any]:
    context = MockContext(model_pt_file="model.pt", model_dir=str(folder), model_file=None, gpu_id=None)
    handler = HANDLERS[case["handler"]]()
    handler.initialize(context)
    if case["handler"] == "text_classifier":
        handler.source_vocab = DefaultVocab(vocab)
        rows = [{"data": case["text"].encode("utf-8")}]
    else:
        images = [(HERE / "goldens/inputs" / name).read_bytes() for name in case["inputs"]]
        if case.get("encoding") == "base64":
            rows = [{"data": base64.b64encode(image).decode("ascii")} for image in images]
        else:
            rows = [{"data": image} for image in images]
    record: dict[str, Any] = {}
    try:
        prepared = handler.preprocess(rows)
        if case["handler"] == "text_classifier":
            ids, tokens = prepared
            record["tokens"] = list(tokens)
            record["ids"] = ids.tolist()
        else:
            record["samples"] = [golden_summary.tensor_summary(sample) for sample in prepared]
        answers = handler.handle(rows, context)
    except Exception as exc:  # recorded: the tests check ModelFleet refuses these cleanly
        record["error"] = type(exc).__name__
        record["message"] = str(exc)[:300]
        return record
    # What TorchServe's backend sends (json.dumps(answer, indent=2)), read back as the tests will.
    sent = [json.loads(json.dumps(answer, indent=2)) for answer in answers]
    if case["handler"] == "image_segmenter":
        record["answers"] = [golden_summary.segmentation_summary(answer) for answer in sent]
    else:
        record["answers"] = sent
    return record


def main() -> None:
    cases_path = HERE / "golden_cases.json"
    spec = json.loads(cases_path.read_text())
    inputs = HERE / "goldens/inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for name, image in spec["images"].items():
        (inputs / name).write_bytes(standin_models.image_bytes(image))
    vocab = build_vocab(spec["vocab_corpus"])
    (HERE / "goldens/source_vocab.json").write_text(json.dumps({"stoi": vocab, "default_index": 0}, indent=1) + "\n")
    results: dict[str, Any] = {}
    tokenizer = get_tokenizer("basic_english")
    with tempfile.TemporaryDirectory() as tmp:
        for case in spec["cases"]:
            if "tokenizer" in case:
                tokens = tokenizer(case["text"])
                results[case["id"]] = {"tokens": tokens, "ngrams": list(ngrams_iterator(tokens, case["ngrams"]))}
            else:
                folder = model_dir(Path(tmp) / case["id"], case, spec, vocab)
                results[case["id"]] = run_case(folder, case, spec, vocab)
            print(f"{case['id']}: {'error ' + results[case['id']]['error'] if 'error' in results[case['id']] else 'ok'}")
    goldens = {
        "generated_by": "scripts/build-handler-goldens.sh",
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "torchserve": "0.12.0",
            "pillow": PIL.__version__,
        },
        "cases_sha256": hashlib.sha256(cases_path.read_bytes()).hexdigest(),
        "results": results,
    }
    (HERE / "goldens/goldens.json").write_text(json.dumps(goldens, indent=1) + "\n")


if __name__ == "__main__":
    main()
