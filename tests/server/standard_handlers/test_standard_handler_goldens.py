"""ModelFleet's standard handlers answer what TorchServe 0.12's own handler classes answer.

The goldens come from scripts/build-handler-goldens.sh, which runs TorchServe's ImageClassifier,
ImageSegmenter, ObjectDetector and TextClassifier (torchvision, captum, torch 2.14.1) over the
same stand-in models and inputs (golden_cases.json). Numbers must agree within 1e-5.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.handlers import text_normalize

import mf_golden_summary as golden_summary
from mf_standard_archives import CASES, GOLDENS, HERE, as_json, image

GOLDEN = json.loads((GOLDENS / "goldens.json").read_text())
RESULTS: dict[str, Any] = GOLDEN["results"]
TOLERANCE = 1e-5
MODEL_CASES = [case for case in CASES["cases"] if "handler" in case]
TOKENIZER_CASES = [case for case in CASES["cases"] if "tokenizer" in case]


def test_goldens_were_built_from_the_current_case_list() -> None:
    digest = hashlib.sha256((HERE / "golden_cases.json").read_bytes()).hexdigest()
    assert GOLDEN["cases_sha256"] == digest, "golden_cases.json changed: rerun scripts/build-handler-goldens.sh"
    assert list(RESULTS) == [case["id"] for case in CASES["cases"]]
    assert GOLDEN["versions"]["torchserve"] == "0.12.0"


def test_every_case_is_checked_by_a_test_here() -> None:
    checked = {case["id"] for case in MODEL_CASES} | {case["id"] for case in TOKENIZER_CASES}
    assert checked == set(RESULTS)


def close(actual: Any, expected: Any, *, path: str = "") -> None:
    """Equal structure (and key order), numbers within TOLERANCE."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), f"{path}: {actual!r} != {expected!r}"
        for key in expected:
            close(actual[key], expected[key], path=f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for index, (a, e) in enumerate(zip(actual, expected)):
            close(a, e, path=f"{path}[{index}]")
    elif isinstance(expected, float):
        assert isinstance(actual, (int, float)) and abs(actual - expected) <= TOLERANCE, (
            f"{path}: {actual} != {expected}"
        )
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def requests_of(case: dict[str, Any]) -> list[dict[str, bytes]]:
    if case["handler"] == "text_classifier":
        return [{"data": case["text"].encode("utf-8")}]
    images = [image(name) for name in case["inputs"]]
    if case.get("encoding") == "base64":
        images = [base64.b64encode(data) for data in images]
    return [{"data": data} for data in images]


@pytest.mark.parametrize("case", MODEL_CASES, ids=[case["id"] for case in MODEL_CASES])
def test_answers_equal_torchserve(case: dict[str, Any], load_standard: Any) -> None:
    golden = RESULTS[case["id"]]
    loaded = load_standard(case["handler"], case["model"], labels=case.get("labels", True) is not None)
    answers = loaded.make_runner("cpu").run_batch(requests_of(case))
    if "error" in golden:
        # TorchServe fails these inside its transforms (an HTTP 500); ModelFleet says why, as bad input.
        for answer in answers:
            assert isinstance(answer, ModelFleetError), answer
            assert (answer.kind, answer.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)
            assert "RGB" in answer.message
        return
    decoded = [as_json(answer) for answer in answers]
    if case["handler"] == "image_segmenter":
        decoded = [golden_summary.segmentation_summary(answer) for answer in decoded]
    close(decoded, golden["answers"])


@pytest.mark.parametrize("case_id", ["classifier_batch", "segmenter_batch"])
def test_torch_export_programs_answer_as_torchserve_too(case_id: str, load_standard: Any) -> None:
    case = next(c for c in MODEL_CASES if c["id"] == case_id)
    loaded = load_standard(case["handler"], case["model"], exported=True)
    assert loaded.serialized_format == "export"
    decoded = [as_json(answer) for answer in loaded.make_runner("cpu").run_batch(requests_of(case))]
    if case["handler"] == "image_segmenter":
        decoded = [golden_summary.segmentation_summary(answer) for answer in decoded]
    close(decoded, RESULTS[case_id]["answers"])


@pytest.mark.parametrize("case", [c for c in MODEL_CASES if "samples" in RESULTS[c["id"]]], ids=lambda c: c["id"])
def test_image_preprocessing_equals_torchvision(case: dict[str, Any], load_standard: Any) -> None:
    loaded = load_standard(case["handler"], case["model"])
    pipeline = loaded.handler.pipeline  # type: ignore[attr-defined]
    for request, expected in zip(requests_of(case), RESULTS[case["id"]]["samples"]):
        close(golden_summary.tensor_summary(pipeline.preprocess(request)), expected)


@pytest.mark.parametrize("case", [c for c in MODEL_CASES if "tokens" in RESULTS[c["id"]]], ids=lambda c: c["id"])
def test_text_becomes_the_tokens_and_ids_torchserve_looks_up(case: dict[str, Any], load_standard: Any) -> None:
    golden = RESULTS[case["id"]]
    assert text_normalize.basic_english(text_normalize.clean(case["text"])) == golden["tokens"]
    pipeline = load_standard(case["handler"], case["model"]).handler.pipeline  # type: ignore[attr-defined]
    assert pipeline.preprocess({"data": case["text"].encode()}).tolist() == golden["ids"]


@pytest.mark.parametrize("case", TOKENIZER_CASES, ids=[case["id"] for case in TOKENIZER_CASES])
def test_basic_english_and_ngrams_equal_torchtext(case: dict[str, Any]) -> None:
    tokens = text_normalize.basic_english(case["text"])
    assert tokens == RESULTS[case["id"]]["tokens"]
    assert list(text_normalize.ngrams(tokens, case["ngrams"])) == RESULTS[case["id"]]["ngrams"]


def test_answers_are_torchserve_json_byte_for_byte(load_standard: Any) -> None:
    answer = (
        load_standard("image_classifier", "classifier").make_runner("cpu").run_batch([{"data": image("exact.png")}])[0]
    )
    assert isinstance(answer, bytes)
    assert answer == json.dumps(json.loads(answer), indent=2).encode()  # TorchServe's backend: indent=2
