"""What the API server does to an object before storing it: validation, defaulting, CRD schemas.

Called by the store (apistore.py) on every create and update. Built-in kinds get the defaults a real
API server adds that controllers and operators see (and must not fight: an operator that compares its
desired Deployment with the stored one will see these) plus the validations that catch real bugs
(names, labels, Deployment selectors). Custom resources are pruned, defaulted and validated against
their CRD's openAPIV3Schema (jsonschema), then checked against its CEL rules (celrules.py).
Must not store anything.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import re
from collections.abc import Callable, Iterable
from typing import Any

import jsonschema

from modelfleet.local.apitypes import JSON, ResourceType, invalid

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# Kinds whose names must be DNS-1035 labels (a Service name becomes a DNS label).
_DNS1035_KINDS = frozenset({("", "services")})

_cluster_ips = (f"10.96.{n // 250}.{n % 250 + 2}" for n in itertools.count(1))


def default_cluster_ip(ports: Iterable[int] = ()) -> str:
    """The next address from 10.96.0.0/12-style space (a real cluster's service range)."""
    return next(_cluster_ips)


def admit(
    rtype: ResourceType,
    obj: JSON,
    old: JSON | None,
    *,
    allocate_ip: Callable[[Iterable[int]], str] = default_cluster_ip,
) -> None:
    """Validate and default `obj` in place; raise ApiError 422 (Invalid) listing every cause."""
    causes: list[str] = []
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    _check_name(rtype, name, causes)
    _check_labels(meta.get("labels"), "metadata.labels", causes)
    for field in ("labels", "annotations"):
        if meta.get(field) is not None and not isinstance(meta.get(field), dict):
            causes.append(f"metadata.{field}: Invalid value: must be a map of strings")
    if rtype.key == ("", "services"):
        _service(obj, old, causes, allocate_ip)
    defaulter = _DEFAULTERS.get(rtype.key)
    if defaulter is not None:
        defaulter(obj, old, causes)
    if rtype.schema is not None:
        _apply_schema(rtype.schema, obj, causes)
        if not causes:
            from modelfleet.local import celrules

            causes += celrules.rule_errors(
                rtype.schema, {k: v for k, v in obj.items() if k != "metadata"}, celrules.old_value(old)
            )
    if causes:
        raise invalid(rtype, name, causes)


def _check_name(rtype: ResourceType, name: str, causes: list[str]) -> None:
    pattern, limit = (_DNS1035, 63) if rtype.key in _DNS1035_KINDS else (_SUBDOMAIN, 253)
    if rtype.key == ("apiextensions.k8s.io", "customresourcedefinitions") or rtype.key[1] == "events":
        return  # CRD names contain the group; Event names are generated with dots and digits
    if len(name) > limit or not pattern.fullmatch(name):
        causes.append(
            f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 '
            f"{'label' if limit == 63 else 'subdomain'} must consist of lower case alphanumeric "
            f"characters, '-' or '.'"
        )


def _check_labels(labels: Any, where: str, causes: list[str]) -> None:
    if not isinstance(labels, dict):
        return
    for key, value in labels.items():
        prefix, _, label_name = str(key).rpartition("/")
        if (
            len(label_name) > 63
            or not _LABEL_NAME.fullmatch(label_name)
            or (prefix and (len(prefix) > 253 or not _SUBDOMAIN.fullmatch(prefix)))
        ):
            causes.append(
                f"{where}: Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.'"
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            causes.append(
                f'{where}: Invalid value: "{value}": a valid label must be an empty string or '
                "consist of alphanumeric characters, '-', '_' or '.' (at most 63)"
            )


# ---- built-in defaults ---------------------------------------------------------------------------
def _default_probe(probe: Any) -> None:
    if isinstance(probe, dict):
        for field, value in (
            ("timeoutSeconds", 1),
            ("periodSeconds", 10),
            ("successThreshold", 1),
            ("failureThreshold", 3),
        ):
            probe.setdefault(field, value)


def _default_pod_spec(spec: Any, where: str, causes: list[str]) -> None:
    if not isinstance(spec, dict):
        causes.append(f"{where}: Required value")
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        causes.append(f"{where}.containers: Required value")
        return
    names: set[str] = set()
    for index, container in enumerate(list(containers) + list(spec.get("initContainers") or [])):
        if not isinstance(container, dict) or not container.get("name"):
            causes.append(f"{where}.containers[{index}].name: Required value")
            continue
        if container["name"] in names:
            causes.append(f'{where}.containers[{index}].name: Duplicate value: "{container["name"]}"')
        names.add(container["name"])
        if not container.get("image"):
            causes.append(f"{where}.containers[{index}].image: Required value")
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            _default_probe(container.get(probe))


def _deployment(obj: JSON, old: JSON | None, causes: list[str]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxSurge", "25%")
        rolling.setdefault("maxUnavailable", "25%")
        if rolling["maxSurge"] in (0, "0", "0%") and rolling["maxUnavailable"] in (0, "0", "0%"):
            causes.append(
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"
            )
    elif strategy.get("rollingUpdate"):
        causes.append("spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'")
    if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 0:
        causes.append("spec.replicas: Invalid value: must be greater than or equal to 0")
    template = spec.get("template") or {}
    selector = spec.get("selector")
    template_labels = (template.get("metadata") or {}).get("labels") or {}
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append("spec.selector: Required value")
    else:
        from modelfleet.local.selectors import selector_object_matches

        if not selector_object_matches(selector, template_labels):
            causes.append("spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`")
        if old is not None and (old.get("spec") or {}).get("selector") != selector:
            causes.append("spec.selector: Invalid value: field is immutable")
    _check_labels(template_labels, "spec.template.metadata.labels", causes)
    _default_pod_spec(template.get("spec"), "spec.template.spec", causes)


def _pod(obj: JSON, old: JSON | None, causes: list[str]) -> None:
    _default_pod_spec(obj.get("spec"), "spec", causes)
    if old is None:
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def _service(obj: JSON, old: JSON | None, causes: list[str], allocate_ip: Callable[[Iterable[int]], str]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
    if old_ip and spec.get("clusterIP") not in (None, old_ip):
        causes.append("spec.clusterIP: Invalid value: field is immutable")
    if old_ip:
        spec["clusterIP"] = old_ip
    elif not spec.get("clusterIP"):
        spec["clusterIP"] = allocate_ip(
            [p["port"] for p in spec.get("ports") or [] if isinstance(p, dict) and isinstance(p.get("port"), int)]
        )
    elif spec["clusterIP"] != "None":
        try:
            ipaddress.ip_address(spec["clusterIP"])
        except ValueError:
            causes.append(f'spec.clusterIP: Invalid value: "{spec["clusterIP"]}"')
    spec["clusterIPs"] = [spec["clusterIP"]]
    ports = spec.get("ports") or []
    if not ports and spec["clusterIP"] != "None":
        causes.append("spec.ports: Required value")
    for index, port in enumerate(ports):
        if not isinstance(port, dict) or not isinstance(port.get("port"), int):
            causes.append(f"spec.ports[{index}].port: Required value")
            continue
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port["port"])
        if len(ports) > 1 and not port.get("name"):
            causes.append(f"spec.ports[{index}].name: Required value")


def _secret(obj: JSON, old: JSON | None, causes: list[str]) -> None:
    obj.setdefault("type", "Opaque")
    if obj.get("stringData"):  # the API server folds stringData into data (base64) and drops it
        import base64

        data = obj.setdefault("data", {}) or {}
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data


def _namespace(obj: JSON, old: JSON | None, causes: list[str]) -> None:
    if old is None:
        obj["status"] = {"phase": "Active"}


_DEFAULTERS = {
    ("", "namespaces"): _namespace,
    ("apps", "deployments"): _deployment,
    ("", "pods"): _pod,
    ("", "secrets"): _secret,
}


# ---- custom resources: structural schema ----------------------------------------------------------
def _prune_and_default(schema: JSON, value: Any, *, root: bool = False) -> Any:
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("additionalProperties")
        result: JSON = {}
        for key, item in value.items():
            if root and key in ("apiVersion", "kind", "metadata"):
                result[key] = item
            elif properties is not None and key in properties:
                result[key] = _prune_and_default(properties[key], item)
            elif isinstance(schema.get("additionalProperties"), dict):
                result[key] = _prune_and_default(schema["additionalProperties"], item)
            elif keep_unknown or properties is None and not root:
                result[key] = item
        for key, sub in (properties or {}).items():
            if key not in result and isinstance(sub, dict) and "default" in sub:
                result[key] = _prune_and_default(sub, copy.deepcopy(sub["default"]))
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune_and_default(schema["items"], item) for item in value]
    return value


def _to_json_schema(schema: Any) -> Any:
    """OpenAPI v3 (Kubernetes dialect) → JSON Schema: nullable and int-or-string."""
    if isinstance(schema, list):
        return [_to_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {
        k: _to_json_schema(v)
        for k, v in schema.items()
        if not k.startswith("x-kubernetes-") and k not in ("nullable", "default", "example")
    }
    if schema.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in result:
        result["type"] = [result["type"], "null"]
    return result


def _apply_schema(schema: JSON, obj: JSON, causes: list[str]) -> None:
    pruned = _prune_and_default(schema, obj, root=True)
    obj.clear()
    obj.update(pruned)
    validator = jsonschema.Draft7Validator(_to_json_schema(schema))
    for error in sorted(
        validator.iter_errors({k: v for k, v in obj.items() if k != "metadata"}), key=lambda e: list(e.absolute_path)
    ):
        path = ".".join(str(part) for part in error.absolute_path) or "<root>"
        causes.append(f"{path}: Invalid value: {error.message}")
