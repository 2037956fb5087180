"""Custom resources are checked against their CRD's CEL rules (x-kubernetes-validations), including
transition rules on update, as a real API server does."""

from __future__ import annotations

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException


@pytest.fixture
def widgets(client, custom, widget_crd):
    spec = widget_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [
        {"rule": "self.replicas <= 10", "message": "at most 10 replicas"},
        {"rule": "self.size == oldSelf.size", "message": "size is immutable"},
    ]
    kubernetes.client.ApiextensionsV1Api(client).create_custom_resource_definition(widget_crd)

    def create(name: str, **spec_fields):
        return custom.create_namespaced_custom_object(
            "example.io",
            "v1",
            "default",
            "widgets",
            {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec_fields},
        )

    return create


def test_a_failing_cel_rule_rejects_the_object_with_its_message(widgets):
    with pytest.raises(ApiException) as rejected:
        widgets("big", size="small", replicas=11)
    assert rejected.value.status == 422 and "at most 10 replicas" in rejected.value.body
    assert widgets("ok", size="small", replicas=10)["spec"]["replicas"] == 10


def test_transition_rules_apply_on_update_only(widgets, custom):
    widgets("w", size="small")
    with pytest.raises(ApiException) as rejected:
        custom.patch_namespaced_custom_object(
            "example.io", "v1", "default", "widgets", "w", {"spec": {"size": "large"}}
        )
    assert rejected.value.status == 422 and "size is immutable" in rejected.value.body
    patched = custom.patch_namespaced_custom_object(
        "example.io", "v1", "default", "widgets", "w", {"spec": {"replicas": 3}}
    )
    assert patched["spec"] == {"size": "small", "replicas": 3}
