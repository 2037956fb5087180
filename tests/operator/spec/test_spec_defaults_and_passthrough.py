"""The parser fills the CRD's defaults and passes scheduling fields through untouched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelfleet.operator.spec import parse_spec


def test_defaults_match_the_crd(make_md: Callable[..., dict[str, Any]], crd_doc: dict[str, Any]) -> None:
    spec = parse_spec(make_md())
    schema = crd_doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    model_schema = schema["models"]["items"]["properties"]
    model = spec.models[0]
    assert spec.replicas == schema["replicas"]["default"]
    assert spec.image_pull_policy == schema["imagePullPolicy"]["default"]
    assert spec.model_load_timeout_s == schema["modelLoadTimeoutSeconds"]["default"]
    assert model.min_workers == model_schema["minWorkers"]["default"]
    assert model.max_workers == model.min_workers  # "defaults to minWorkers"
    assert model.batch_size == model_schema["batchSize"]["default"]
    assert model.max_batch_delay_ms == model_schema["maxBatchDelayMs"]["default"]
    assert model.response_timeout_s == model_schema["responseTimeoutS"]["default"]
    assert spec.model_store.mount_path == schema["modelStore"]["properties"]["mountPath"]["default"]
    assert spec.pdb_max_unavailable == schema["disruptionBudget"]["properties"]["maxUnavailable"]["default"]


def test_a_single_version_is_the_default(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(models=[{"name": "m", "versions": [{"version": "3.1", "url": "m.pt#version=3.1"}]}]))
    assert spec.models[0].default_version == "3.1"


def test_without_a_token_secret_the_operator_generates_one_named_after_the_resource(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    generated = parse_spec(make_md("fleet")).token
    assert (generated.secret_name, generated.generated) == ("fleet-tokens", True)
    given = parse_spec(make_md("fleet", tokenSecretRef={"name": "mine", "inferenceKey": "inf"})).token
    assert (given.secret_name, given.generated, given.management_key, given.inference_key) == (
        "mine",
        False,
        "management",
        "inf",
    )


def test_scheduling_fields_pass_through_unchanged(make_md: Callable[..., dict[str, Any]]) -> None:
    affinity = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
            ]
        }
    }
    spread = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]
    spec = parse_spec(
        make_md(
            resources={"limits": {"nvidia.com/mig-1g.10gb": 2, "amd.com/gpu": "1"}},
            affinity=affinity,
            topologySpreadConstraints=spread,
            runtimeClassName="nvidia",
            priorityClassName="high",
            nodeSelector={"gpu": "a100"},
            resourceClaims=[{"name": "gpu", "resourceClaimName": "shared"}],
        )
    )
    assert spec.resources == {"limits": {"nvidia.com/mig-1g.10gb": 2, "amd.com/gpu": "1"}}
    assert spec.affinity == affinity
    assert list(spec.topology_spread_constraints) == spread
    assert (spec.runtime_class_name, spec.priority_class_name) == ("nvidia", "high")
    assert spec.node_selector == {"gpu": "a100"}
    assert spec.resource_claims[0].resource_claim_name == "shared"


def test_identity_comes_from_metadata(make_md: Callable[..., dict[str, Any]]) -> None:
    doc = make_md("a", namespace="team")
    doc["metadata"].update(uid="u-1", generation=7)
    spec = parse_spec(doc)
    assert (spec.name, spec.namespace, spec.uid, spec.generation) == ("a", "team", "u-1", 7)
