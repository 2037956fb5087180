"""The local API treats objects as a real API server does, seen through the official kubernetes client."""

from __future__ import annotations

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException


def test_create_stamps_metadata_and_answers_201(api, apps, make_deployment):
    created, code, _ = apps.create_namespaced_deployment_with_http_info("default", make_deployment())
    assert code == 201
    meta = created.metadata
    assert meta.namespace == "default" and meta.uid and meta.creation_timestamp
    assert meta.generation == 1 and meta.resource_version
    stored = api.emulator.objects["apps/v1/deployments", "default", "web"]
    assert stored["metadata"]["uid"] == meta.uid


def test_duplicate_create_is_409_and_missing_object_is_404(apps, make_deployment):
    apps.create_namespaced_deployment("default", make_deployment())
    with pytest.raises(ApiException) as duplicate:
        apps.create_namespaced_deployment("default", make_deployment())
    assert duplicate.value.status == 409
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment("nope", "default")
    assert missing.value.status == 404


def test_generate_name_gives_a_unique_name(core):
    body = {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}
    first = core.create_namespaced_config_map("default", body)
    second = core.create_namespaced_config_map("default", body)
    assert first.metadata.name.startswith("cfg-") and first.metadata.name != second.metadata.name


def test_generation_moves_on_spec_changes_only(apps, make_deployment):
    apps.create_namespaced_deployment("default", make_deployment())
    labelled = apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"team": "ml"}}})
    assert labelled.metadata.generation == 1
    status = apps.patch_namespaced_deployment_status("web", "default", {"status": {"replicas": 7}})
    assert status.metadata.generation == 1 and status.status.replicas == 7
    scaled = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 2}})
    assert scaled.metadata.generation == 2


def test_main_resource_writes_never_change_status_and_status_writes_change_only_status(apps, make_deployment):
    apps.create_namespaced_deployment("default", make_deployment())
    apps.patch_namespaced_deployment_status("web", "default", {"status": {"replicas": 3}})
    after_main = apps.patch_namespaced_deployment("web", "default", {"status": {"replicas": 9}})
    assert after_main.status.replicas == 3
    after_status = apps.patch_namespaced_deployment_status(
        "web", "default", {"spec": {"replicas": 5}, "status": {"replicas": 4}}
    )
    assert after_status.spec.replicas == 1 and after_status.status.replicas == 4


def test_a_no_op_patch_keeps_the_resource_version(apps, make_deployment):
    created = apps.create_namespaced_deployment("default", make_deployment())
    same = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 1}})
    assert same.metadata.resource_version == created.metadata.resource_version


def test_failed_json_patch_test_is_422(apps, make_deployment):
    apps.create_namespaced_deployment("default", make_deployment())
    with pytest.raises(ApiException) as failed:
        apps.patch_namespaced_deployment(
            "web",
            "default",
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
                {"op": "replace", "path": "/spec/replicas", "value": 3},
            ],
        )
    assert failed.value.status == 422
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 1


def test_stale_resource_version_on_replace_is_409(apps, make_deployment):
    created = apps.create_namespaced_deployment("default", make_deployment())
    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 2}})
    created.spec.replicas = 4
    with pytest.raises(ApiException) as stale:
        apps.replace_namespaced_deployment("web", "default", created)
    assert stale.value.status == 409


def test_strategic_merge_merges_containers_by_name(apps, make_deployment):
    apps.create_namespaced_deployment("default", make_deployment())
    patched = apps.patch_namespaced_deployment(
        "web", "default", {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}}}}
    )
    images = {c.name: c.image for c in patched.spec.template.spec.containers}
    assert images == {"main": "busybox:2", "sidecar": "busybox:1"}


def test_defaults_are_filled_in_as_a_cluster_would(apps, core, make_deployment):
    created = apps.create_namespaced_deployment("default", make_deployment())
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.spec.template.spec.restart_policy == "Always"
    service = core.create_namespaced_service(
        "default", {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    )
    assert service.spec.cluster_ip and service.spec.ports[0].target_port == 80


def test_invalid_objects_are_rejected_with_422(apps, make_deployment):
    body = make_deployment("Bad_Name")
    with pytest.raises(ApiException) as bad_name:
        apps.create_namespaced_deployment("default", body)
    assert bad_name.value.status == 422
    mismatched = make_deployment()
    mismatched["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(ApiException) as bad_selector:
        apps.create_namespaced_deployment("default", mismatched)
    assert bad_selector.value.status == 422


def test_label_selector_filters_lists(apps, make_deployment):
    apps.create_namespaced_deployment("default", make_deployment("a", labels={"team": "ml"}))
    apps.create_namespaced_deployment("default", make_deployment("b", labels={"team": "web"}))

    def names(selector):
        return sorted(
            d.metadata.name for d in apps.list_namespaced_deployment("default", label_selector=selector).items
        )

    assert names("team=ml") == ["a"]
    assert names("team!=ml") == ["b"]
    assert names("team in (ml,web)") == ["a", "b"]
    assert names("!team") == []


def test_namespaces_and_leases_are_served(core, client):
    assert {"default", "kube-system"} <= {n.metadata.name for n in core.list_namespace().items}
    leases = kubernetes.client.CoordinationV1Api(client)
    lease = leases.create_namespaced_lease(
        "default", {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    )
    assert lease.spec.holder_identity == "a"


def test_every_request_lands_in_the_audit_log(api, apps, core, make_deployment):
    api.emulator.audit.reset()
    apps.create_namespaced_deployment("default", make_deployment())
    apps.read_namespaced_deployment("web", "default")
    apps.patch_namespaced_deployment_status("web", "default", {"status": {"replicas": 1}})
    core.list_namespaced_pod("default")
    verbs = [(r.verb, r.resource, r.subresource, r.code) for r in api.emulator.audit]
    assert verbs == [
        ("create", "deployments", None, 201),
        ("get", "deployments", None, 200),
        ("patch", "deployments", "status", 200),
        ("list", "pods", None, 200),
    ]
    assert [w.verb for w in api.emulator.audit.writes()] == ["create", "patch"]
    api.emulator.audit.reset()
    assert api.emulator.audit.writes() == []
