"""The CRD (schema, list-map keys, CEL rules evaluated with cel-python) and the operator's parser
accept and reject the same ModelDeployments: whatever `kubectl apply` lets through, the operator
runs, and whatever an API server without admission stores, the operator still refuses."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import celpy
import jsonschema
import pytest

from modelfleet.operator.spec import InvalidSpec, parse_spec


def _defaulted(schema: dict[str, Any], value: Any) -> Any:
    """Apply schema defaults as the API server does before running CEL rules."""
    if isinstance(value, dict) and schema.get("type") == "object":
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _defaulted(sub, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_defaulted(schema["items"], item) for item in value]
    return value


def _rule_errors(schema: dict[str, Any], value: Any, path: str, env: celpy.Environment) -> list[str]:
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):  # an eval error fails too
            errors.append(f"{path}: {rule['message']}")
    if schema.get("x-kubernetes-list-type") == "map" and isinstance(value, list):
        keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value]
        if len(keys) != len(set(keys)):
            errors.append(f"{path}: duplicate list-map key")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                errors += _rule_errors(sub, value[key], f"{path}.{key}", env)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += _rule_errors(schema["items"], item, f"{path}[{i}]", env)
    return errors


@pytest.fixture
def admit(crd_doc: dict[str, Any]) -> Callable[[dict[str, Any]], list[str]]:
    """What a real API server would say: schema errors, duplicate list-map keys, failing CEL rules."""
    schema = crd_doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft7Validator(schema)
    env = celpy.Environment()

    def run(doc: dict[str, Any]) -> list[str]:
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        if errors:
            return errors
        return _rule_errors(schema, _defaulted(schema, copy.deepcopy(doc)), "", env)

    return run


FULL_SPEC: dict[str, Any] = {
    "replicas": 3,
    "image": "ghcr.io/modelfleet/server:0.1.0",
    "imagePullPolicy": "Always",
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccountName": "models",
    "models": [
        {
            "name": "resnet-50",
            "versions": [
                {"version": "1.0", "url": "resnet-1.mar"},
                {"version": "2.0+cu121", "url": "https://m.example/r2.mar#sha256=" + "a" * 64},
            ],
            "defaultVersion": "2.0+cu121",
            "minWorkers": 2,
            "maxWorkers": 4,
            "batchSize": 8,
            "maxBatchDelayMs": 5,
            "responseTimeoutS": 30,
            "handler": "modelfleet_handlers.vision",
            "signature": {
                "inputs": [{"name": "input__0", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
                "outputs": [{"name": "output__0", "datatype": "FP32", "shape": [-1, 1000]}],
            },
        },
        {"name": "tiny", "versions": [{"version": "1.0", "url": "tiny.pt#version=1.0"}]},
    ],
    "resources": {
        "limits": {"nvidia.com/mig-1g.10gb": 1, "amd.com/gpu": "1", "memory": "16Gi"},
        "requests": {"cpu": "500m"},
    },
    "nodeSelector": {"nvidia.com/gpu.product": "A100"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
            }
        }
    },
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
    ],
    "runtimeClassName": "nvidia",
    "priorityClassName": "inference",
    "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-gpu", "request": "gpu"}],
    "modelLoadTimeoutSeconds": 900,
    "tokenSecretRef": {"name": "my-tokens", "managementKey": "mgmt"},
    "modelStore": {
        "mountPath": "/models",
        "readOnly": True,
        "volume": {"persistentVolumeClaim": {"claimName": "models"}},
    },
    "allowedSources": ["https://m\\.example/.*", "s3://models/prod/.*"],
    "storage": {
        "credentialsSecret": {"name": "model-store.credentials"},
        "endpoint": "http://minio.minio:9000",
        "region": "us-east-1",
        "addressingStyle": "path",
    },
    "strategy": {"type": "RollingUpdate", "maxSurge": 0, "maxUnavailable": 1},
    "disruptionBudget": {"maxUnavailable": "25%"},
    "networkPolicy": {"enabled": True, "metricsNamespaces": ["monitoring"]},
    "metrics": {"enabled": True},
    "logLevel": "DEBUG",
}


def _doc(make_md: Callable[..., dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return make_md("demo", **spec)


@pytest.mark.parametrize("spec", [{}, FULL_SPEC], ids=["minimal", "every-field"])
def test_valid_specs_pass_the_crd_and_the_parser(
    spec: dict[str, Any], admit: Callable[[dict[str, Any]], list[str]], make_md: Callable[..., dict[str, Any]]
) -> None:
    doc = _doc(make_md, **spec)
    assert admit(doc) == []
    parsed = parse_spec(doc)
    assert parsed.name == "demo"


def _model(**fields: Any) -> list[dict[str, Any]]:
    model = {"name": "tiny", "versions": [{"version": "1.0", "url": "tiny.pt"}]}
    model.update(fields)
    return [model]


IN = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]}
OUT = {"outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("bad-model-name", {"models": _model(name="-tiny")}, "models[0].name"),
    ("slash-in-model-name", {"models": _model(name="a/b")}, "models[0].name"),
    ("reserved-version", {"models": _model(versions=[{"version": "all", "url": "x.pt"}])}, "reserved"),
    ("bad-version", {"models": _model(versions=[{"version": "1 0", "url": "x.pt"}])}, "versions[0].version"),
    (
        "duplicate-version",
        {
            "models": _model(
                versions=[{"version": "1.0", "url": "a"}, {"version": "1.0", "url": "b"}], defaultVersion="1.0"
            )
        },
        "more than once",
    ),
    ("default-not-a-version", {"models": _model(defaultVersion="9.9")}, "must be one of"),
    (
        "two-versions-no-default",
        {"models": _model(versions=[{"version": "1", "url": "a"}, {"version": "2", "url": "b"}])},
        "defaultVersion",
    ),
    ("min-above-max", {"models": _model(minWorkers=3, maxWorkers=2)}, "must not exceed"),
    ("zero-workers", {"models": _model(minWorkers=0)}, "minWorkers"),
    ("duplicate-model", {"models": _model() + _model()}, "more than once"),
    ("no-models", {"models": []}, "spec.models"),
    ("no-url", {"models": _model(versions=[{"version": "1.0"}])}, "url"),
    ("negative-replicas", {"replicas": -1}, "spec.replicas"),
    (
        "claim-with-both",
        {"resourceClaims": [{"name": "g", "resourceClaimName": "a", "resourceClaimTemplateName": "b"}]},
        "exactly one",
    ),
    ("claim-with-neither", {"resourceClaims": [{"name": "g"}]}, "exactly one"),
    ("recreate-with-surge", {"strategy": {"type": "Recreate", "maxSurge": 1}}, "RollingUpdate only"),
    ("surge-and-unavailable-zero", {"strategy": {"maxSurge": 0, "maxUnavailable": "0%"}}, "both be 0"),
    ("store-over-operator-files", {"modelStore": {"mountPath": "/etc/modelfleet/x"}}, "mountPath"),
    ("bad-quantity", {"resources": {"limits": {"nvidia.com/gpu": "lots"}}}, "quantity"),
    ("short-load-timeout", {"modelLoadTimeoutSeconds": 5}, "modelLoadTimeoutSeconds"),
    ("bad-toleration", {"tolerations": [{"key": "k", "operator": "Maybe"}]}, "operator"),
    ("token-ref-without-name", {"tokenSecretRef": {"managementKey": "m"}}, "tokenSecretRef.name"),
    ("bad-pull-policy", {"imagePullPolicy": "Sometimes"}, "imagePullPolicy"),
    ("bad-batch-size", {"models": _model(batchSize=0)}, "batchSize"),
    ("bad-addressing-style", {"storage": {"addressingStyle": "sideways"}}, "storage.addressingStyle"),
    ("endpoint-without-scheme", {"storage": {"endpoint": "minio:9000"}}, "storage.endpoint"),
    ("endpoint-with-password", {"storage": {"endpoint": "http://k:s@minio:9000"}}, "storage.endpoint"),
    ("endpoint-with-query", {"storage": {"endpoint": "https://s3.example.com/?a=b"}}, "storage.endpoint"),
    ("secret-not-a-dns-name", {"storage": {"credentialsSecret": {"name": "My_Secret"}}}, "credentialsSecret.name"),
    ("secret-without-name", {"storage": {"credentialsSecret": {}}}, "credentialsSecret.name"),
    ("bad-region", {"storage": {"region": "us east 1"}}, "storage.region"),
    (
        "bad-datatype",
        {"models": _model(signature={"inputs": [{"name": "x", "datatype": "float32", "shape": [1]}], **OUT})},
        "signature.inputs[0].datatype",
    ),
    (
        "dimension-below-minus-one",
        {"models": _model(signature={**IN, "outputs": [{"name": "y", "datatype": "FP32", "shape": [-2]}]})},
        "signature.outputs[0].shape[0]",
    ),
    (
        "tensor-without-shape",
        {"models": _model(signature={"inputs": [{"name": "x", "datatype": "FP32"}], **OUT})},
        "signature.inputs[0].shape",
    ),
    (
        "duplicate-tensor",
        {"models": _model(signature={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}] * 2, **OUT})},
        "more than once",
    ),
    ("signature-without-inputs", {"models": _model(signature=OUT)}, "signature.inputs"),
    ("signature-with-no-outputs", {"models": _model(signature={**IN, "outputs": []})}, "signature.outputs"),
    (
        "control-character-in-a-tensor-name",
        {"models": _model(signature={"inputs": [{"name": "a\nb", "datatype": "FP32", "shape": [1]}], **OUT})},
        "signature.inputs[0].name",
    ),
]


@pytest.mark.parametrize(("mutation", "where"), [(m, w) for _, m, w in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_specs_are_refused_by_both(
    mutation: dict[str, Any],
    where: str,
    admit: Callable[[dict[str, Any]], list[str]],
    make_md: Callable[..., dict[str, Any]],
) -> None:
    doc = _doc(make_md, **mutation)
    assert admit(doc), "the CRD lets this through"
    with pytest.raises(InvalidSpec) as refused:
        parse_spec(doc)
    assert any(where in problem for problem in refused.value.problems), refused.value.problems


def _without_image(make_md: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    doc = make_md("demo")
    del doc["spec"]["image"]
    return doc


def test_an_omitted_image_is_admitted_and_runs_the_operators_default_server_image(
    admit: Callable[[dict[str, Any]], list[str]], make_md: Callable[..., dict[str, Any]]
) -> None:
    for doc in (_without_image(make_md), make_md("demo", image="")):
        assert admit(doc) == []
        assert parse_spec(doc, default_image="registry.example/server:2").image == "registry.example/server:2"
    explicit = parse_spec(make_md("demo", image="mine:1"), default_image="registry.example/server:2")
    assert explicit.image == "mine:1"


def test_without_a_default_server_image_an_imageless_spec_is_invalid(make_md: Callable[..., dict[str, Any]]) -> None:
    """The CRD cannot know the operator's flags: here the operator alone refuses, and says how to fix it."""
    for doc in (_without_image(make_md), make_md("demo", image="")):
        with pytest.raises(InvalidSpec) as refused:
            parse_spec(doc)
        (problem,) = refused.value.problems
        assert problem.startswith("spec.image: is required")
        assert "--default-server-image" in problem


def test_an_image_longer_than_the_crd_allows_is_refused_by_both(
    admit: Callable[[dict[str, Any]], list[str]], make_md: Callable[..., dict[str, Any]]
) -> None:
    doc = make_md("demo", image="r/" + "x" * 1023)
    assert admit(doc)
    with pytest.raises(InvalidSpec, match="spec.image"):
        parse_spec(doc, default_image="registry.example/server:2")


def test_a_long_name_is_refused_by_both(
    admit: Callable[[dict[str, Any]], list[str]], make_md: Callable[..., dict[str, Any]]
) -> None:
    doc = make_md("x" * 41)
    assert admit(doc)
    with pytest.raises(InvalidSpec, match="metadata.name"):
        parse_spec(doc)


def test_parser_lists_every_problem_at_once(make_md: Callable[..., dict[str, Any]]) -> None:
    doc = make_md(replicas=-1, image="", models=_model(name="-x", minWorkers=5, maxWorkers=1))
    with pytest.raises(InvalidSpec) as refused:
        parse_spec(doc)
    text = " | ".join(refused.value.problems)
    for fragment in ("spec.replicas", "spec.image", "models[0].name", "must not exceed"):
        assert fragment in text
