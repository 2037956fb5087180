"""Watches, the scale subresource, CRD registration and garbage collection on the local API."""

from __future__ import annotations

import threading

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException


def _watch_events(list_fn, *args, count: int, **kwargs) -> list[tuple[str, str]]:
    """The first `count` (type, name) events of a watch, within a bounded wait."""
    seen: list[tuple[str, str]] = []
    watcher = kubernetes.watch.Watch()
    for event in watcher.stream(list_fn, *args, timeout_seconds=5, **kwargs):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) >= count:
            watcher.stop()
    return seen


def test_watch_streams_changes_and_resumes_from_a_resource_version(core):
    first = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})
    core.delete_namespaced_config_map("a", "default")
    resumed = _watch_events(
        core.list_namespaced_config_map, "default", count=3, resource_version=first.metadata.resource_version
    )
    assert resumed == [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    fresh = _watch_events(core.list_namespaced_config_map, "default", count=1)
    assert fresh == [("ADDED", "b")]


def test_a_change_made_while_watching_is_streamed_once(core):
    listed = core.list_namespaced_config_map("default")
    writer = threading.Timer(0.2, core.create_namespaced_config_map, ("default", {"metadata": {"name": "late"}}))
    writer.start()
    try:
        events = _watch_events(
            core.list_namespaced_config_map, "default", count=1, resource_version=listed.metadata.resource_version
        )
    finally:
        writer.join()
    assert events == [("ADDED", "late")]


def test_label_selector_watch_sees_an_object_leave_the_selection(core):
    core.create_namespaced_config_map("default", {"metadata": {"name": "a", "labels": {"team": "ml"}}})
    listed = core.list_namespaced_config_map("default", label_selector="team=ml")
    core.patch_namespaced_config_map("a", "default", {"metadata": {"labels": {"team": "web"}}})
    events = _watch_events(
        core.list_namespaced_config_map,
        "default",
        count=1,
        label_selector="team=ml",
        resource_version=listed.metadata.resource_version,
    )
    assert events == [("DELETED", "a")]


def test_deployment_scale_subresource_reads_and_writes_a_scale(apps, make_deployment):
    apps.create_namespaced_deployment("default", make_deployment(replicas=2))
    current = apps.read_namespaced_deployment_scale("web", "default")
    assert current.kind == "Scale" and current.spec.replicas == 2 and current.status.selector == "app=web"
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 3


def test_an_applied_crd_serves_its_kind_with_status_scale_schema_and_defaults(client, custom, widget_crd):
    extensions = kubernetes.client.ApiextensionsV1Api(client)
    extensions.create_custom_resource_definition(widget_crd)
    established = extensions.read_custom_resource_definition("widgets.example.io")
    assert {c.type: c.status for c in established.status.conditions}["Established"] == "True"
    resources = kubernetes.client.CustomObjectsApi(client).get_api_resources("example.io", "v1").resources
    assert {"widgets", "widgets/status", "widgets/scale"} <= {r.name for r in resources}

    widget = custom.create_namespaced_custom_object(
        "example.io",
        "v1",
        "default",
        "widgets",
        {
            "apiVersion": "example.io/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"size": "small", "unknownField": 1},
        },
    )
    assert widget["spec"] == {"size": "small", "replicas": 1}  # pruned and defaulted

    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(
            "example.io",
            "v1",
            "default",
            "widgets",
            {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "bad"}, "spec": {"size": "huge"}},
        )
    assert rejected.value.status == 422

    custom.patch_namespaced_custom_object_scale(
        "example.io", "v1", "default", "widgets", "w", {"spec": {"replicas": 4}}
    )
    custom.patch_namespaced_custom_object_status(
        "example.io", "v1", "default", "widgets", "w", {"status": {"replicas": 4}}
    )
    scale = custom.get_namespaced_custom_object_scale("example.io", "v1", "default", "widgets", "w")
    assert scale["spec"]["replicas"] == 4 and scale["status"]["replicas"] == 4


def _owned_config_map(core, owner, name: str) -> None:
    core.create_namespaced_config_map(
        "default",
        {
            "metadata": {
                "name": name,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": owner.metadata.name,
                        "uid": owner.metadata.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            }
        },
    )


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_deleting_an_owner_deletes_its_dependents(apps, core, make_deployment, policy):
    owner = apps.create_namespaced_deployment("default", make_deployment())
    _owned_config_map(core, owner, "child")
    core.create_namespaced_config_map("default", {"metadata": {"name": "bystander"}})
    apps.delete_namespaced_deployment("web", "default", propagation_policy=policy)
    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["bystander"]
    with pytest.raises(ApiException):
        apps.read_namespaced_deployment("web", "default")


def test_orphan_deletion_keeps_dependents_without_the_owner_reference(apps, core, make_deployment):
    owner = apps.create_namespaced_deployment("default", make_deployment())
    _owned_config_map(core, owner, "child")
    apps.delete_namespaced_deployment("web", "default", propagation_policy="Orphan")
    child = core.read_namespaced_config_map("child", "default")
    assert not child.metadata.owner_references


def test_finalizers_hold_deletion_until_removed(core):
    core.create_namespaced_config_map("default", {"metadata": {"name": "held", "finalizers": ["x/y"]}})
    core.delete_namespaced_config_map("held", "default")
    marked = core.read_namespaced_config_map("held", "default")
    assert marked.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("held", "default")
    assert gone.value.status == 404


def test_deleting_a_crd_deletes_its_objects_and_kind(client, custom, widget_crd):
    extensions = kubernetes.client.ApiextensionsV1Api(client)
    extensions.create_custom_resource_definition(widget_crd)
    custom.create_namespaced_custom_object(
        "example.io",
        "v1",
        "default",
        "widgets",
        {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "small"}},
    )
    extensions.delete_custom_resource_definition("widgets.example.io")
    with pytest.raises(ApiException) as unknown:
        custom.list_namespaced_custom_object("example.io", "v1", "default", "widgets")
    assert unknown.value.status == 404


def test_a_bound_pod_stays_terminating_until_its_kubelet_deletes_it_with_grace_zero(core):
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "p"},
            "spec": {"nodeName": "local", "containers": [{"name": "main", "image": "busybox:1"}]},
        },
    )
    core.delete_namespaced_pod("p", "default")
    terminating = core.read_namespaced_pod("p", "default")
    assert terminating.metadata.deletion_timestamp and terminating.metadata.deletion_grace_period_seconds == 30
    core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}})
    assert core.read_namespaced_pod("p", "default").status.phase == "Running"  # still there
    core.delete_namespaced_pod("p", "default", grace_period_seconds=0)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod("p", "default")
    assert gone.value.status == 404


def test_an_unbound_pod_is_deleted_at_once(core):
    core.create_namespaced_pod(
        "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "main", "image": "busybox:1"}]}}
    )
    core.delete_namespaced_pod("p", "default")
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod("p", "default")
    assert gone.value.status == 404
