"""The objects a ModelDeployment owns, as pure functions of its parsed spec.

reconcile.py calls these and hands the results to kube.py's create-or-patch. Every child carries a
controller owner reference (so deleting the ModelDeployment garbage-collects it) and a hash of its
own desired content in an annotation, so an unchanged child is never written again. Nothing here
does I/O; nothing puts a hash of the models into the pod template, so a model change (ConfigMap)
never rolls the Deployment.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .settings import FleetSettings
from .spec import API_VERSION, KIND, DeploymentSpec

Json = dict[str, Any]

FLEET_LABEL = "modelfleet.io/deployment"
"""On every child and pod: the owning ModelDeployment's name (pod events are routed by it)."""
HASH_ANNOTATION = "modelfleet.io/desired-hash"
"""sha256 of the child's desired content as last written by the operator (not on the pod template)."""
MANAGED_BY = "modelfleet-operator"

INFERENCE_PORT = 7070
MANAGEMENT_PORT = 7071
HEALTH_PORT = 7072
METRICS_PORT = 8082

MOUNT_ROOT = "/etc/modelfleet"
DESIRED_STATE_DIR = f"{MOUNT_ROOT}/desired"
DESIRED_STATE_KEY = "models.json"
TOKENS_DIR = f"{MOUNT_ROOT}/tokens"
MANAGEMENT_TOKEN_FILE = "management"
INFERENCE_TOKEN_FILE = "inference"
STORAGE_CREDENTIALS_DIR = f"{MOUNT_ROOT}/storage-credentials"
"""spec.storage.credentialsSecret, mounted whole (no subPath, which the kubelet never updates), so a
rotated key reaches the server's --storage-credentials-dir without a restart."""
LIVENESS_SERVICE = "modelfleet.liveness"
POD_UID_ENV = "MODELFLEET_POD_UID"
"""The server's --pod-uid as an environment variable (its CLI reads MODELFLEET_<FLAG>)."""

STARTUP_PERIOD_S = 2
"""Startup probe period; failureThreshold = modelLoadTimeoutSeconds / this."""


def names(name: str) -> dict[str, str]:
    """Child object names, derived from the ModelDeployment's name (at most 40 characters)."""
    return {
        "deployment": name,
        "service": name,
        "headless": f"{name}-headless",
        "configmap": f"{name}-models",
        "secret": f"{name}-tokens",
        "networkpolicy": name,
        "pdb": name,
    }


def selector_labels(spec: DeploymentSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": "modelfleet-server", FLEET_LABEL: spec.name}


def labels(spec: DeploymentSpec) -> dict[str, str]:
    return {
        **selector_labels(spec),
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/component": "server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def label_selector(spec: DeploymentSpec) -> str:
    """The pods' selector as a string (status.selector, list calls)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(spec).items()))


def owner_reference(spec: DeploymentSpec) -> Json:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": spec.name,
        "uid": spec.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(spec: DeploymentSpec, name: str) -> Json:
    return {
        "name": name,
        "namespace": spec.namespace,
        "labels": labels(spec),
        "ownerReferences": [owner_reference(spec)],
    }


def content_hash(obj: Mapping[str, Any]) -> str:
    """sha256 over everything the operator decides (labels, annotations, spec/data), canonical JSON."""
    meta = obj.get("metadata", {})
    annotations = {k: v for k, v in meta.get("annotations", {}).items() if k != HASH_ANNOTATION}
    content = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    content["labels"] = meta.get("labels", {})
    content["annotations"] = annotations
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def stamped(obj: Json) -> Json:
    """The object with its content hash annotation set."""
    meta = obj.setdefault("metadata", {})
    meta.setdefault("annotations", {})[HASH_ANNOTATION] = content_hash(obj)
    return obj


# Deployment --------------------------------------------------------------------------------


def server_args(spec: DeploymentSpec) -> list[str]:
    """The server's command line (contract: `modelfleet-server` flags); $(POD_IP) is expanded by the kubelet."""
    args = [
        f"--inference-address=$(POD_IP):{INFERENCE_PORT}",
        f"--management-address=$(POD_IP):{MANAGEMENT_PORT}",
        f"--health-address=$(POD_IP):{HEALTH_PORT}",
    ]
    if spec.metrics_enabled:
        args.append(f"--metrics-address=$(POD_IP):{METRICS_PORT}")
    args += [
        f"--model-store={spec.model_store.mount_path}",
        f"--desired-state={DESIRED_STATE_DIR}/{DESIRED_STATE_KEY}",
        "--enable-model-api",
        f"--management-token-file={TOKENS_DIR}/{MANAGEMENT_TOKEN_FILE}",
        f"--inference-token-file={TOKENS_DIR}/{INFERENCE_TOKEN_FILE}",
    ]
    args += [f"--allowed-sources={pattern}" for pattern in spec.allowed_sources]
    args += storage_args(spec)
    args.append(f"--log-level={spec.log_level}")
    return args


def storage_args(spec: DeploymentSpec) -> list[str]:
    """The server's --storage-* flags for spec.storage; none when unset (the server's defaults apply)."""
    storage = spec.storage
    args = []
    if storage.endpoint:
        args.append(f"--storage-endpoint-url={storage.endpoint}")
    if storage.region:
        args.append(f"--storage-region={storage.region}")
    if storage.addressing_style:
        args.append(f"--storage-addressing-style={storage.addressing_style}")
    if storage.credentials_secret:
        args.append(f"--storage-credentials-dir={STORAGE_CREDENTIALS_DIR}")
    return args


def _grpc_probe(service: str, *, period_s: int, failure_threshold: int, timeout_s: int = 2) -> Json:
    return {
        "grpc": {"port": HEALTH_PORT, "service": service},
        "periodSeconds": period_s,
        "timeoutSeconds": timeout_s,
        "failureThreshold": failure_threshold,
    }


def _container(spec: DeploymentSpec) -> Json:
    ports = [
        {"name": "grpc", "containerPort": INFERENCE_PORT, "protocol": "TCP"},
        {"name": "management", "containerPort": MANAGEMENT_PORT, "protocol": "TCP"},
        {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
    ]
    if spec.metrics_enabled:
        ports.append({"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"})
    resources: Json = {k: dict(v) for k, v in spec.resources.items()}
    if spec.resource_claims:
        resources["claims"] = [
            {"name": c.name, **({"request": c.request} if c.request else {})} for c in spec.resource_claims
        ]
    container: Json = {
        "name": "server",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["modelfleet-server"],
        "args": server_args(spec),
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
            # The server's --pod-uid: it answers it on health Check, and the operator sends the
            # management token only to a server that answers this pod's UID (podidentity.py).
            {"name": POD_UID_ENV, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.uid"}}},
        ],
        "ports": ports,
        # A crash's last log lines become the termination message the operator's Degraded reason quotes
        # (podcauses.py); with the default policy a crashing server leaves it empty.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # The load timeout is the startup budget; liveness never depends on models.
        "startupProbe": _grpc_probe(
            "",
            period_s=STARTUP_PERIOD_S,
            failure_threshold=max(1, -(-spec.model_load_timeout_s // STARTUP_PERIOD_S)),
        ),
        "readinessProbe": _grpc_probe("", period_s=2, failure_threshold=2),
        "livenessProbe": _grpc_probe(LIVENESS_SERVICE, period_s=10, failure_threshold=3, timeout_s=5),
        "volumeMounts": [
            {"name": "desired-state", "mountPath": DESIRED_STATE_DIR, "readOnly": True},
            {"name": "tokens", "mountPath": TOKENS_DIR, "readOnly": True},
            {"name": "model-store", "mountPath": spec.model_store.mount_path, "readOnly": spec.model_store.read_only},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.storage.credentials_secret:
        container["volumeMounts"].append(
            {"name": "storage-credentials", "mountPath": STORAGE_CREDENTIALS_DIR, "readOnly": True}
        )
    if resources:
        container["resources"] = resources
    return container


def _pod_spec(spec: DeploymentSpec, child_names: Mapping[str, str]) -> Json:
    pod: Json = {
        "containers": [_container(spec)],
        "volumes": [
            {
                "name": "desired-state",
                "configMap": {
                    "name": child_names["configmap"],
                    "items": [{"key": DESIRED_STATE_KEY, "path": DESIRED_STATE_KEY}],
                },
            },
            {
                "name": "tokens",
                "secret": {
                    "secretName": spec.token.secret_name,
                    "items": [
                        {"key": spec.token.management_key, "path": MANAGEMENT_TOKEN_FILE},
                        {"key": spec.token.inference_key, "path": INFERENCE_TOKEN_FILE},
                    ],
                    "defaultMode": 0o440,
                },
            },
            {"name": "model-store", **spec.model_store.volume},
            {"name": "tmp", "emptyDir": {}},
        ],
        # The server never talks to the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if spec.storage.credentials_secret:
        # Not optional: a pod without its credentials would only fail later, on every download.
        pod["volumes"].append(
            {
                "name": "storage-credentials",
                "secret": {"secretName": spec.storage.credentials_secret, "defaultMode": 0o440},
            }
        )
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in spec.image_pull_secrets]
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.affinity:
        pod["affinity"] = dict(spec.affinity)
    if spec.topology_spread_constraints:
        pod["topologySpreadConstraints"] = [
            {"labelSelector": {"matchLabels": selector_labels(spec)}, **c} for c in spec.topology_spread_constraints
        ]
    if spec.runtime_class_name:
        pod["runtimeClassName"] = spec.runtime_class_name
    if spec.priority_class_name:
        pod["priorityClassName"] = spec.priority_class_name
    if spec.resource_claims:
        pod["resourceClaims"] = [
            {
                "name": c.name,
                **({"resourceClaimName": c.resource_claim_name} if c.resource_claim_name else {}),
                **(
                    {"resourceClaimTemplateName": c.resource_claim_template_name}
                    if c.resource_claim_template_name
                    else {}
                ),
            }
            for c in spec.resource_claims
        ]
    return pod


def deployment(spec: DeploymentSpec) -> Json:
    child_names = names(spec.name)
    strategy: Json = {"type": spec.strategy.type}
    if spec.strategy.type == "RollingUpdate":
        rolling = {
            k: v
            for k, v in (("maxSurge", spec.strategy.max_surge), ("maxUnavailable", spec.strategy.max_unavailable))
            if v is not None
        }
        if rolling:
            strategy["rollingUpdate"] = rolling
    return stamped(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(spec, child_names["deployment"]),
            "spec": {
                "replicas": spec.replicas,
                "selector": {"matchLabels": selector_labels(spec)},
                "strategy": strategy,
                "revisionHistoryLimit": 3,
                "template": {"metadata": {"labels": labels(spec)}, "spec": _pod_spec(spec, child_names)},
            },
        }
    )


# Services ----------------------------------------------------------------------------------


def _inference_port() -> Json:
    # appProtocol grpc: meshes and gateways then speak HTTP/2 to it. The management port is never here.
    return {"name": "grpc", "port": INFERENCE_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}


def service(spec: DeploymentSpec) -> Json:
    return stamped(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(spec, names(spec.name)["service"]),
            "spec": {"type": "ClusterIP", "selector": selector_labels(spec), "ports": [_inference_port()]},
        }
    )


def headless_service(spec: DeploymentSpec) -> Json:
    """One DNS record per ready pod, for clients balancing with grpc's round_robin policy."""
    return stamped(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(spec, names(spec.name)["headless"]),
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "None",
                "selector": selector_labels(spec),
                "ports": [_inference_port()],
            },
        }
    )


# ConfigMap and Secret ----------------------------------------------------------------------


def desired_state_json(document: Mapping[str, Any]) -> str:
    """The exact text stored in the ConfigMap (stable, so an unchanged document is never rewritten)."""
    return json.dumps(document, indent=2) + "\n"


def configmap(spec: DeploymentSpec, document: Mapping[str, Any]) -> Json:
    """The desired-state file; `document` comes from plan.py (defaults flip only after a cut-over)."""
    return stamped(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(spec, names(spec.name)["configmap"]),
            "data": {DESIRED_STATE_KEY: desired_state_json(document)},
        }
    )


def token_secret(spec: DeploymentSpec, *, management_token: str, inference_token: str) -> Json:
    """The generated token Secret; created once, never rewritten (tokens would change under clients)."""

    def encode(text: str) -> str:
        return base64.b64encode(f"{text}\n".encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _metadata(spec, spec.token.secret_name),
        "data": {
            spec.token.management_key: encode(management_token),
            spec.token.inference_key: encode(inference_token),
        },
    }


# NetworkPolicy and PodDisruptionBudget -----------------------------------------------------


def network_policy(spec: DeploymentSpec, fleet: FleetSettings) -> Json:
    ingress: list[Json] = [
        # Inference: any pod in the cluster (a namespaceSelector of {} matches every namespace).
        {"ports": [{"port": INFERENCE_PORT, "protocol": "TCP"}], "from": [{"namespaceSelector": {}}]},
        # Management: the operator's pods only.
        {
            "ports": [{"port": MANAGEMENT_PORT, "protocol": "TCP"}],
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": fleet.operator_namespace}},
                    "podSelector": {"matchLabels": dict(fleet.operator_pod_labels)},
                }
            ],
        },
        # Health: kubelet probes come from the node, whose address no selector can name.
        {"ports": [{"port": HEALTH_PORT, "protocol": "TCP"}]},
    ]
    if spec.metrics_enabled and spec.metrics_namespaces:
        ingress.append(
            {
                "ports": [{"port": METRICS_PORT, "protocol": "TCP"}],
                "from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
                    for ns in spec.metrics_namespaces
                ],
            }
        )
    return stamped(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _metadata(spec, names(spec.name)["networkpolicy"]),
            "spec": {
                "podSelector": {"matchLabels": selector_labels(spec)},
                "policyTypes": ["Ingress"],
                "ingress": ingress,
            },
        }
    )


def pod_disruption_budget(spec: DeploymentSpec) -> Json:
    return stamped(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _metadata(spec, names(spec.name)["pdb"]),
            "spec": {"maxUnavailable": spec.pdb_max_unavailable, "selector": {"matchLabels": selector_labels(spec)}},
        }
    )


OWNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec.replicas", "spec.strategy", "spec.revisionHistoryLimit", "spec.template"),
    "Service": ("spec.type", "spec.selector", "spec.ports"),
    "ConfigMap": ("data",),
    "Secret": (),
    "NetworkPolicy": ("spec",),
    "PodDisruptionBudget": ("spec",),
}
"""Per kind, the fields the operator overwrites when its child drifted. Everything else (a Service's
clusterIP, a Deployment's selector, fields the API server defaults) is left alone."""
