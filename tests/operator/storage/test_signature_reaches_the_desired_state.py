"""A model's `signature` (Open Inference Protocol metadata) is checked like the CRD checks it and
written, as given, into the desired-state document every pod reads at start; a model without one
has no `signature` key there (the server then derives it)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from modelfleet.operator import children
from modelfleet.operator.plan import make_plan
from modelfleet.operator.spec import InvalidSpec, parse_spec

SIGNATURE = {
    "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [-1, 16]}],
    "outputs": [{"name": "output__0", "datatype": "FP32", "shape": [-1, 4]}],
}


def _models(**fields: Any) -> list[dict[str, Any]]:
    return [
        {"name": "tiny", "versions": [{"version": "1.0", "url": "tiny.pt"}], **fields},
        {"name": "mlp", "versions": [{"version": "1.0", "url": "mlp.pt"}]},
    ]


def _document(md: dict[str, Any]) -> dict[str, Any]:
    spec = parse_spec(md)
    plan = make_plan(spec, [], failures={}, previous_document=None, now=0.0)
    configmap = children.configmap(spec, plan.document)
    return dict(json.loads(configmap["data"][children.DESIRED_STATE_KEY]))


def test_the_signature_reaches_the_desired_state_and_a_model_without_one_has_no_key(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    document = _document(make_md(models=_models(signature=SIGNATURE)))
    by_name = {m["name"]: m for m in document["models"]}
    assert by_name["tiny"]["signature"] == SIGNATURE
    assert "signature" not in by_name["mlp"]


@pytest.mark.parametrize(
    ("signature", "where", "says"),
    [
        ({"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1]}]}, "inputs[0].datatype", "must be one of"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}]}, "inputs[0].shape[0]", "between -1"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": ["1"]}]}, "inputs[0].shape[0]", "an integer"),
        ({"inputs": [{"name": "x", "datatype": "FP32"}]}, "inputs[0].shape", "is required"),
        ({"outputs": [{"datatype": "FP32", "shape": [1]}]}, "outputs[0].name", "is required"),
        (
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}] * 2},
            "inputs[1].name",
            "appears more than once",
        ),
        ({"input": []}, "signature.input", "unknown field"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1] * 33}]}, "inputs[0].shape", "at most 32"),
        # The server refuses a whole desired-state file over a bad signature: the parser is as strict.
        ({"outputs": [{"name": "y", "datatype": "FP16", "shape": []}]}, "signature.inputs", "at least one tensor"),
        ({"inputs": [], "outputs": [{"name": "y", "datatype": "FP16", "shape": []}]}, "signature.inputs", "at least"),
        ({"inputs": [{"name": "a\tb", "datatype": "FP32", "shape": [1]}]}, "inputs[0].name", "printable"),
        ({"inputs": [{"name": "x" * 129, "datatype": "FP32", "shape": [1]}]}, "inputs[0].name", "at most 128"),
    ],
)
def test_a_bad_signature_is_an_invalid_spec_naming_the_field(
    make_md: Callable[..., dict[str, Any]], signature: dict[str, Any], where: str, says: str
) -> None:
    with pytest.raises(InvalidSpec) as refused:
        parse_spec(make_md(models=_models(signature=signature)))
    assert any("spec.models[0].signature" in p and where in p and says in p for p in refused.value.problems), (
        refused.value.problems
    )
