"""One reconcile function against the real HTTP in-memory API (no pods: replicas 0 or pods not yet
scheduled): children are written once, valid and owned; an idle pass writes nothing; a bad spec
leaves running children alone; deleting the resource garbage-collects them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import kubernetes_validate
import pytest

from modelfleet.operator.kube import Kube
from modelfleet.operator.reconcile import Reconciler
from modelfleet.operator.settings import FleetSettings, OperatorSettings

CHILDREN = [
    ("Deployment", "demo"),
    ("Service", "demo"),
    ("Service", "demo-headless"),
    ("ConfigMap", "demo-models"),
    ("Secret", "demo-tokens"),
    ("NetworkPolicy", "demo"),
    ("PodDisruptionBudget", "demo"),
]
KEY = ("default", "demo")


@pytest.fixture
async def reconciler(kube: Kube) -> AsyncIterator[Reconciler]:
    r = Reconciler(kube, OperatorSettings())
    yield r
    await r.close()


async def _create(kube: Kube, body: dict[str, Any]) -> dict[str, Any]:
    body = dict(body, metadata={k: v for k, v in body["metadata"].items() if k not in ("uid", "generation")})
    return await kube.create(body)


def _operator_writes(api: Any) -> list[Any]:
    return [r for r in api.audit.writes(user_agent="modelfleet-operator")]


async def test_children_are_created_valid_and_owned_and_an_idle_pass_writes_nothing(
    api: Any, kube: Kube, reconciler: Reconciler, make_md: Callable[..., dict[str, Any]], k8s_versions: tuple[str, str]
) -> None:
    created = await _create(kube, make_md(replicas=0, resources={"limits": {"nvidia.com/gpu": 1}}))
    await reconciler.reconcile(KEY)
    for kind, name in CHILDREN:
        obj = await kube.get(kind, "default", name)
        assert obj is not None, (kind, name)
        assert obj["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
        for version in k8s_versions:  # what the operator actually wrote, as the API stored it
            kubernetes_validate.validate(obj, version, strict=True)
    body = await kube.get("ModelDeployment", "default", "demo")
    conditions = {c["type"]: c for c in body["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Ready"]["reason"] == "ScaledToZero"
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"]
    assert body["status"]["selector"] == "app.kubernetes.io/name=modelfleet-server,modelfleet.io/deployment=demo"

    before = len(_operator_writes(api))
    assert before >= len(CHILDREN) + 1  # the children and the status were written by this client
    for _ in range(3):
        assert await reconciler.reconcile(KEY) is None
    assert len(_operator_writes(api)) == before
    assert reconciler.last[KEY].writes == 0


async def test_a_model_change_rewrites_the_configmap_only(
    api: Any, kube: Kube, reconciler: Reconciler, make_md: Callable[..., dict[str, Any]]
) -> None:
    await _create(kube, make_md(replicas=0))
    await reconciler.reconcile(KEY)
    deployment_rv = (await kube.get("Deployment", "default", "demo"))["metadata"]["resourceVersion"]
    models = [
        {
            "name": "tiny",
            "versions": [{"version": "1.0", "url": "tiny.pt"}, {"version": "2.0", "url": "tiny2.pt"}],
            "defaultVersion": "2.0",
        }
    ]
    await kube.patch_merge("ModelDeployment", "default", "demo", {"spec": {"models": models}})
    api.audit.reset()
    await reconciler.reconcile(KEY)
    written = {(r.resource, r.subresource) for r in _operator_writes(api)}
    # The ConfigMap, the status, and an Event saying the default moved (no pods: nothing to wait for).
    assert written == {("configmaps", None), ("modeldeployments", "status"), ("events", None)}
    assert (await kube.get("Deployment", "default", "demo"))["metadata"]["resourceVersion"] == deployment_rv
    configmap = await kube.get("ConfigMap", "default", "demo-models")
    assert '"defaultVersion": "2.0"' in configmap["data"]["models.json"]  # no pods: nothing to cut over


async def test_an_invalid_spec_is_reported_and_running_children_are_untouched(
    api: Any,
    kube: Kube,
    reconciler: Reconciler,
    make_md: Callable[..., dict[str, Any]],
    outdated_crd: Callable[[Any], Any],
) -> None:
    await _create(kube, make_md(replicas=0))
    await reconciler.reconcile(KEY)
    versions = {c: (await kube.get(*c[:1], "default", c[1]))["metadata"]["resourceVersion"] for c in CHILDREN}
    await outdated_crd(kube)  # an older CRD without the CEL rules lets this through
    await kube.patch_merge(
        "ModelDeployment",
        "default",
        "demo",
        {"spec": {"models": [{"name": "tiny", "versions": [{"version": "1.0", "url": "a"}], "defaultVersion": "9.9"}]}},
    )
    await reconciler.reconcile(KEY)
    body = await kube.get("ModelDeployment", "default", "demo")
    conditions = {c["type"]: c for c in body["status"]["conditions"]}
    assert conditions["Ready"]["reason"] == "InvalidSpec" and conditions["Degraded"]["status"] == "True"
    assert "defaultVersion" in conditions["Degraded"]["message"]
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"] == 2
    assert {c: (await kube.get(*c[:1], "default", c[1]))["metadata"]["resourceVersion"] for c in CHILDREN} == versions
    events = await kube.list_objects("Event", "default")
    assert any(e["type"] == "Warning" and e["reason"] == "InvalidSpec" for e in events)


async def test_a_resource_without_an_image_runs_the_operators_default_server_image(
    kube: Kube, make_md: Callable[..., dict[str, Any]]
) -> None:
    body = make_md(replicas=0)
    del body["spec"]["image"]  # the CRD admits it: the operator supplies the image
    await _create(kube, body)
    settings = OperatorSettings(fleet=FleetSettings(default_server_image="registry.example/modelfleet-server:0.2.0"))
    reconciler = Reconciler(kube, settings)
    try:
        await reconciler.reconcile(KEY)
    finally:
        await reconciler.close()
    deployment = await kube.get("Deployment", "default", "demo")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/modelfleet-server:0.2.0"
    conditions = {c["type"]: c for c in (await kube.get("ModelDeployment", "default", "demo"))["status"]["conditions"]}
    assert conditions["Ready"]["reason"] == "ScaledToZero"


async def test_dropping_the_image_without_a_default_server_image_is_invalid_and_children_are_untouched(
    kube: Kube, reconciler: Reconciler, make_md: Callable[..., dict[str, Any]]
) -> None:
    await _create(kube, make_md(replicas=0))
    await reconciler.reconcile(KEY)
    versions = {c: (await kube.get(*c[:1], "default", c[1]))["metadata"]["resourceVersion"] for c in CHILDREN}
    await kube.patch_merge("ModelDeployment", "default", "demo", {"spec": {"image": None}})  # the CRD admits it
    await reconciler.reconcile(KEY)
    body = await kube.get("ModelDeployment", "default", "demo")
    assert "image" not in body["spec"]
    conditions = {c["type"]: c for c in body["status"]["conditions"]}
    assert conditions["Ready"]["reason"] == "InvalidSpec" and conditions["Degraded"]["status"] == "True"
    assert (
        "spec.image" in conditions["Degraded"]["message"]
        and "--default-server-image" in conditions["Degraded"]["message"]
    )
    assert {c: (await kube.get(*c[:1], "default", c[1]))["metadata"]["resourceVersion"] for c in CHILDREN} == versions
    events = await kube.list_objects("Event", "default")
    assert any(e["type"] == "Warning" and e["reason"] == "InvalidSpec" and "spec.image" in e["message"] for e in events)


async def test_scaling_the_resource_scales_the_deployment(
    kube: Kube, reconciler: Reconciler, make_md: Callable[..., dict[str, Any]]
) -> None:
    await _create(kube, make_md(replicas=1))
    await reconciler.reconcile(KEY)
    # What `kubectl scale mdep/demo --replicas=3` and an HPA do: the scale subresource.
    await kube.request(
        "PATCH",
        Kube.path("ModelDeployment", "default", "demo", "scale"),
        body={"spec": {"replicas": 3}},
        content_type="application/merge-patch+json",
    )
    await reconciler.reconcile(KEY)
    assert (await kube.get("Deployment", "default", "demo"))["spec"]["replicas"] == 3
    scale = await kube.request("GET", Kube.path("ModelDeployment", "default", "demo", "scale"))
    assert scale["status"]["selector"] == "app.kubernetes.io/name=modelfleet-server,modelfleet.io/deployment=demo"


async def test_deleting_the_resource_removes_every_child_by_owner_reference(
    kube: Kube, reconciler: Reconciler, make_md: Callable[..., dict[str, Any]], poll: Callable[..., Any]
) -> None:
    await _create(kube, make_md(replicas=0))
    await reconciler.reconcile(KEY)
    await kube.delete("ModelDeployment", "default", "demo")

    async def all_gone() -> bool:
        return all([await kube.get(kind, "default", name) is None for kind, name in CHILDREN])

    await poll(all_gone)
    assert await reconciler.reconcile(KEY) is None


async def test_a_user_token_secret_is_used_and_never_written(
    api: Any, kube: Kube, reconciler: Reconciler, make_md: Callable[..., dict[str, Any]]
) -> None:
    await _create(kube, make_md(replicas=0, tokenSecretRef={"name": "mine"}))
    await reconciler.reconcile(KEY)
    body = await kube.get("ModelDeployment", "default", "demo")
    degraded = next(c for c in body["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "mine" in degraded["message"]
    assert await kube.get("Secret", "default", "demo-tokens") is None
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "mine", "namespace": "default"},
            "data": {"management": "bWdtdAo=", "inference": "aW5mCg=="},
        }
    )
    api.audit.reset()
    await reconciler.reconcile(KEY)
    assert not [r for r in _operator_writes(api) if r.resource == "secrets"]
    body = await kube.get("ModelDeployment", "default", "demo")
    assert next(c for c in body["status"]["conditions"] if c["type"] == "Degraded")["status"] == "False"


async def test_disabling_the_network_policy_removes_it(
    kube: Kube, reconciler: Reconciler, make_md: Callable[..., dict[str, Any]]
) -> None:
    await _create(kube, make_md(replicas=0))
    await reconciler.reconcile(KEY)
    assert await kube.get("NetworkPolicy", "default", "demo") is not None
    await kube.patch_merge("ModelDeployment", "default", "demo", {"spec": {"networkPolicy": {"enabled": False}}})
    await reconciler.reconcile(KEY)
    assert await kube.get("NetworkPolicy", "default", "demo") is None


async def test_pods_the_operator_cannot_read_keep_the_configmap_default_during_a_cut_over(
    kube: Kube, reconciler: Reconciler, make_md: Callable[..., dict[str, Any]]
) -> None:
    """Without the management token no pod can be observed; "every pod switched" must then be false,
    not vacuously true, or a pod restarting mid-cut-over would load a default the others do not serve."""
    v1 = {"version": "1.0", "url": "tiny.pt#version=1.0"}
    v2 = {"version": "2.0", "url": "tiny.pt#version=2.0"}
    await _create(kube, make_md(tokenSecretRef={"name": "mine"}, models=[{"name": "tiny", "versions": [v1]}]))
    await reconciler.reconcile(KEY)
    document = await _configmap_document(kube)
    assert document["models"][0]["defaultVersion"] == "1.0"
    labels = (await kube.get("Deployment", "default", "demo"))["spec"]["selector"]["matchLabels"]
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "demo-pod", "namespace": "default", "labels": labels},
            "spec": {"containers": [{"name": "server", "image": "x"}]},
        }
    )
    await kube.patch_merge(
        "Pod", "default", "demo-pod", {"status": {"phase": "Running", "podIP": "127.0.0.9"}}, subresource="status"
    )
    await kube.patch_merge(
        "ModelDeployment",
        "default",
        "demo",
        {"spec": {"models": [{"name": "tiny", "versions": [v1, v2], "defaultVersion": "2.0"}]}},
    )
    await reconciler.reconcile(KEY)  # the token Secret "mine" does not exist: the pod cannot be read
    assert (await _configmap_document(kube))["models"][0]["defaultVersion"] == "1.0"
    body = await kube.get("ModelDeployment", "default", "demo")
    assert next(c for c in body["status"]["conditions"] if c["type"] == "Degraded")["status"] == "True"


async def _configmap_document(kube: Kube) -> dict[str, Any]:
    configmap = await kube.get("ConfigMap", "default", "demo-models")
    assert configmap is not None
    return dict(json.loads(configmap["data"]["models.json"]))
