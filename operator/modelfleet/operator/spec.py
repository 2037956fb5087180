"""ModelDeployment custom resource → frozen dataclasses, with every CRD rule checked again.

Called by reconcile.py on each pass. The API server normally enforces the CRD's schema and CEL
rules, but the operator must not trust that (an old CRD, an in-memory API without admission), so
this module re-checks them and applies the same defaults; every problem becomes one InvalidSpec
listing all messages with their field paths. Pure: no I/O, no Kubernetes client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelfleet.protos import contract

GROUP = "modelfleet.io"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
KIND = "ModelDeployment"
API_VERSION = f"{GROUP}/{VERSION}"

# The server checks the same patterns (wire contract), so a name the spec accepts also registers.
NAME_PATTERN = re.compile(contract.NAME_PATTERN)
VERSION_PATTERN = re.compile(contract.VERSION_PATTERN)
RESERVED_VERSIONS = contract.RESERVED_VERSIONS
_QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_HANDLER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)?$")
_INT_OR_PERCENT = re.compile(r"^[0-9]+%?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENDPOINT = re.compile(
    r"^https?://([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])"
    r"(:[0-9]{1,5})?(/[^\s?#]*)?$"
)
_REGION = re.compile(r"^[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?$")
ADDRESSING_STYLES = ("auto", "virtual", "path")
DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
)  # fmt: skip
"""Open Inference Protocol tensor datatypes (a signature's `datatype`)."""
OPERATOR_MOUNT_ROOT = "/etc/modelfleet"

Json = dict[str, Any]


class InvalidSpec(Exception):
    """The resource's spec cannot be run; `problems` holds one `path: message` per violation."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class ModelVersionSpec:
    version: str
    url: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    versions: tuple[ModelVersionSpec, ...]
    default_version: str
    min_workers: int = 1
    max_workers: int = 1
    batch_size: int = 1
    max_batch_delay_ms: int = 100
    response_timeout_s: int = 120
    handler: str = ""
    signature: contract.SignatureEntry | None = None
    """{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}, checked; passed to the desired state."""

    def version(self, version: str) -> ModelVersionSpec | None:
        return next((v for v in self.versions if v.version == version), None)


@dataclass(frozen=True)
class TokenRef:
    secret_name: str
    management_key: str = "management"
    inference_key: str = "inference"
    generated: bool = True
    """True when the operator owns (and created) the Secret; False for a user's tokenSecretRef."""


@dataclass(frozen=True)
class ResourceClaimSpec:
    name: str
    resource_claim_name: str | None = None
    resource_claim_template_name: str | None = None
    request: str | None = None


@dataclass(frozen=True)
class ModelStoreSpec:
    mount_path: str = "/models"
    read_only: bool = False
    volume: Json = field(default_factory=lambda: {"emptyDir": {}})


@dataclass(frozen=True)
class StorageSpec:
    """spec.storage: how servers reach an object store (each field set becomes a --storage-* flag)."""

    credentials_secret: str | None = None
    """Secret mounted read-only for the server's --storage-credentials-dir; None: botocore's default chain."""
    endpoint: str | None = None
    region: str | None = None
    addressing_style: str | None = None


@dataclass(frozen=True)
class StrategySpec:
    type: str = "RollingUpdate"
    max_surge: int | str | None = None
    max_unavailable: int | str | None = None


@dataclass(frozen=True)
class DeploymentSpec:
    """One ModelDeployment's spec with defaults applied, plus the object identity children need."""

    name: str
    namespace: str
    uid: str
    generation: int
    image: str
    """spec.image, else the operator's default server image (never empty)."""
    models: tuple[ModelSpec, ...]
    replicas: int = 1
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    service_account_name: str | None = None
    resources: Json = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Json, ...] = ()
    affinity: Json | None = None
    topology_spread_constraints: tuple[Json, ...] = ()
    runtime_class_name: str | None = None
    priority_class_name: str | None = None
    resource_claims: tuple[ResourceClaimSpec, ...] = ()
    model_load_timeout_s: int = 600
    token: TokenRef = field(default_factory=lambda: TokenRef(secret_name=""))
    model_store: ModelStoreSpec = field(default_factory=ModelStoreSpec)
    allowed_sources: tuple[str, ...] = ()
    storage: StorageSpec = field(default_factory=StorageSpec)
    strategy: StrategySpec = field(default_factory=StrategySpec)
    pdb_max_unavailable: int | str = 1
    network_policy_enabled: bool = True
    metrics_namespaces: tuple[str, ...] = ()
    metrics_enabled: bool = True
    log_level: str = "INFO"

    def model(self, name: str) -> ModelSpec | None:
        return next((m for m in self.models if m.name == name), None)


class _Checker:
    """Collects problems instead of stopping at the first, so a user fixes them in one edit."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def obj(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, "must be an object")
            return {}
        return value

    def array(self, value: Any, path: str, *, max_items: int) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, "must be an array")
            return []
        if len(value) > max_items:
            self.fail(path, f"must have at most {max_items} items")
        return value

    def string(
        self,
        value: Any,
        path: str,
        *,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        max_length: int = 253,
        enum: Sequence[str] = (),
    ) -> str | None:
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(path, "must be a string")
            return default
        if len(value) > max_length:
            self.fail(path, f"must be at most {max_length} characters")
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(path, f"{value!r} must match {pattern.pattern}")
        if enum and value not in enum:
            self.fail(path, f"{value!r} must be one of {', '.join(enum)}")
        return value

    def integer(self, value: Any, path: str, *, default: int, minimum: int, maximum: int) -> int:
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(path, "must be an integer")
            return default
        if not minimum <= value <= maximum:
            self.fail(path, f"must be between {minimum} and {maximum}")
        return value

    def boolean(self, value: Any, path: str, *, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(path, "must be a boolean")
            return default
        return value

    def int_or_percent(self, value: Any, path: str) -> int | str | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and _INT_OR_PERCENT.fullmatch(value):
            return value
        self.fail(path, "must be a non-negative integer or a percentage such as 25%")
        return None


def parse_spec(body: Mapping[str, Any], *, default_image: str = "") -> DeploymentSpec:
    """Parse a whole ModelDeployment object (metadata + spec); raises InvalidSpec.

    `default_image` is the operator's default server image (FleetSettings.default_server_image):
    it applies when spec.image is left out or empty; with neither, the spec is invalid.
    """
    check = _Checker()
    meta, name, namespace = _identity(check, body)
    spec = check.obj(body.get("spec"), "spec")
    if "spec" not in body:
        check.fail("spec", "is required")
    image = _image(check, spec, default_image)
    models = _models(check, spec.get("models"))
    token = _token(check, spec.get("tokenSecretRef"), name)
    store = _model_store(check, spec.get("modelStore"))
    strategy = check.obj(spec.get("strategy"), "spec.strategy")
    pdb = check.obj(spec.get("disruptionBudget"), "spec.disruptionBudget")
    netpol = check.obj(spec.get("networkPolicy"), "spec.networkPolicy")
    metrics = check.obj(spec.get("metrics"), "spec.metrics")
    pull_secrets = _pull_secrets(check, spec)
    placement = _placement(check, spec)
    allowed = _allowed_sources(check, spec)
    storage = _storage(check, spec.get("storage"))
    metrics_namespaces = _metrics_namespaces(check, netpol)

    result = DeploymentSpec(
        name=name,
        namespace=namespace,
        uid=str(meta.get("uid") or ""),
        generation=int(meta.get("generation") or 0),
        image=image or "",
        models=models,
        replicas=check.integer(spec.get("replicas"), "spec.replicas", default=1, minimum=0, maximum=1000),
        image_pull_policy=check.string(
            spec.get("imagePullPolicy"),
            "spec.imagePullPolicy",
            default="IfNotPresent",
            enum=("Always", "IfNotPresent", "Never"),
        )
        or "IfNotPresent",
        image_pull_secrets=tuple(pull_secrets),
        service_account_name=check.string(spec.get("serviceAccountName"), "spec.serviceAccountName") or None,
        resources=_resources(check, spec.get("resources")),
        node_selector=placement.node_selector,
        tolerations=placement.tolerations,
        affinity=placement.affinity,
        topology_spread_constraints=placement.spread,
        runtime_class_name=check.string(spec.get("runtimeClassName"), "spec.runtimeClassName") or None,
        priority_class_name=check.string(spec.get("priorityClassName"), "spec.priorityClassName") or None,
        resource_claims=_claims(check, spec.get("resourceClaims")),
        model_load_timeout_s=check.integer(
            spec.get("modelLoadTimeoutSeconds"), "spec.modelLoadTimeoutSeconds", default=600, minimum=10, maximum=86400
        ),
        token=token,
        model_store=store,
        allowed_sources=tuple(allowed),
        storage=storage,
        strategy=_strategy(check, strategy),
        pdb_max_unavailable=_or_default(
            check.int_or_percent(pdb.get("maxUnavailable"), "spec.disruptionBudget.maxUnavailable"), 1
        ),
        network_policy_enabled=check.boolean(netpol.get("enabled"), "spec.networkPolicy.enabled", default=True),
        metrics_namespaces=tuple(metrics_namespaces),
        metrics_enabled=check.boolean(metrics.get("enabled"), "spec.metrics.enabled", default=True),
        log_level=check.string(
            spec.get("logLevel"), "spec.logLevel", default="INFO", enum=("DEBUG", "INFO", "WARNING", "ERROR")
        )
        or "INFO",
    )
    _check_strategy(check, result.strategy)
    if check.problems:
        raise InvalidSpec(check.problems)
    return result


# Steps of parse_spec, in the order its problems are reported ---------------------------------


def _identity(check: _Checker, body: Mapping[str, Any]) -> tuple[Mapping[str, Any], str, str]:
    """(metadata, name, namespace)."""
    meta = check.obj(body.get("metadata"), "metadata")
    name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
    if not name or not namespace:
        check.fail("metadata", "name and namespace are required")
    if len(name) > 40:
        # Children are named <name>-tokens, <name>-headless, …; Service names are DNS labels (63).
        check.fail("metadata.name", "must be at most 40 characters (child object names derive from it)")
    return meta, name, namespace


def _image(check: _Checker, spec: Mapping[str, Any], default_image: str) -> str:
    # The CRD cannot know the operator's default, so it admits a spec without an image; this is
    # where such a spec becomes runnable (default image) or InvalidSpec (none configured).
    image = check.string(spec.get("image"), "spec.image", max_length=1024) or default_image
    if not image:
        check.fail(
            "spec.image",
            "is required: this operator has no default server image (set spec.image, or start the operator "
            "with --default-server-image, which the Helm chart sets from server.image)",
        )
    return image


def _pull_secrets(check: _Checker, spec: Mapping[str, Any]) -> list[str]:
    pull_secrets = []
    for i, entry in enumerate(check.array(spec.get("imagePullSecrets"), "spec.imagePullSecrets", max_items=16)):
        secret = check.string(
            check.obj(entry, f"spec.imagePullSecrets[{i}]").get("name"), f"spec.imagePullSecrets[{i}].name"
        )
        if secret:
            pull_secrets.append(secret)
    return pull_secrets


@dataclass(frozen=True)
class _Placement:
    node_selector: dict[str, str]
    affinity: Json | None
    tolerations: tuple[Json, ...]
    spread: tuple[Json, ...]


def _placement(check: _Checker, spec: Mapping[str, Any]) -> _Placement:
    """Where pods may run: passed through to the pod template after shape checks."""
    node_selector = check.obj(spec.get("nodeSelector"), "spec.nodeSelector")
    for key, value in node_selector.items():
        if not isinstance(value, str):
            check.fail(f"spec.nodeSelector.{key}", "must be a string")
    affinity = spec.get("affinity")
    if affinity is not None:
        check.obj(affinity, "spec.affinity")
    tolerations = [
        dict(check.obj(t, f"spec.tolerations[{i}]"))
        for i, t in enumerate(check.array(spec.get("tolerations"), "spec.tolerations", max_items=64))
    ]
    for i, toleration in enumerate(tolerations):
        check.string(toleration.get("operator"), f"spec.tolerations[{i}].operator", enum=("Exists", "Equal"))
        check.string(
            toleration.get("effect"),
            f"spec.tolerations[{i}].effect",
            enum=("NoSchedule", "PreferNoSchedule", "NoExecute"),
        )
    spread = [
        dict(check.obj(t, f"spec.topologySpreadConstraints[{i}]"))
        for i, t in enumerate(
            check.array(spec.get("topologySpreadConstraints"), "spec.topologySpreadConstraints", max_items=16)
        )
    ]
    return _Placement(
        node_selector={str(k): str(v) for k, v in node_selector.items()},
        affinity=dict(affinity) if isinstance(affinity, Mapping) else None,
        tolerations=tuple(tolerations),
        spread=tuple(spread),
    )


def _allowed_sources(check: _Checker, spec: Mapping[str, Any]) -> list[str]:
    allowed = []
    for i, pattern in enumerate(check.array(spec.get("allowedSources"), "spec.allowedSources", max_items=32)):
        text = check.string(pattern, f"spec.allowedSources[{i}]", max_length=1024)
        if text:
            try:
                re.compile(text)
            except re.error as exc:
                check.fail(f"spec.allowedSources[{i}]", f"is not a valid regular expression ({exc})")
            allowed.append(text)
    return allowed


def _metrics_namespaces(check: _Checker, netpol: Mapping[str, Any]) -> list[str]:
    found = []
    for i, ns in enumerate(
        check.array(netpol.get("metricsNamespaces"), "spec.networkPolicy.metricsNamespaces", max_items=16)
    ):
        text = check.string(ns, f"spec.networkPolicy.metricsNamespaces[{i}]", max_length=63, pattern=_DNS_LABEL)
        if text:
            found.append(text)
    return found


def _strategy(check: _Checker, strategy: Mapping[str, Any]) -> StrategySpec:
    return StrategySpec(
        type=check.string(
            strategy.get("type"), "spec.strategy.type", default="RollingUpdate", enum=("RollingUpdate", "Recreate")
        )
        or "RollingUpdate",
        max_surge=check.int_or_percent(strategy.get("maxSurge"), "spec.strategy.maxSurge"),
        max_unavailable=check.int_or_percent(strategy.get("maxUnavailable"), "spec.strategy.maxUnavailable"),
    )


def _check_strategy(check: _Checker, strategy: StrategySpec) -> None:
    if strategy.type == "Recreate" and (strategy.max_surge is not None or strategy.max_unavailable is not None):
        check.fail("spec.strategy", "maxSurge and maxUnavailable apply to RollingUpdate only")
    if strategy.max_surge in (0, "0", "0%") and strategy.max_unavailable in (0, "0", "0%"):
        check.fail("spec.strategy", "maxSurge and maxUnavailable cannot both be 0")


def _or_default(value: int | str | None, default: int | str) -> int | str:
    return default if value is None else value


def _models(check: _Checker, raw: Any) -> tuple[ModelSpec, ...]:
    entries = check.array(raw, "spec.models", max_items=64)
    if not entries:
        check.fail("spec.models", "must list at least one model")
    models: list[ModelSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        path = f"spec.models[{i}]"
        obj = check.obj(entry, path)
        name = check.string(obj.get("name"), f"{path}.name", pattern=NAME_PATTERN, max_length=contract.MAX_NAME_LENGTH)
        if not name:
            check.fail(f"{path}.name", "is required")
            name = f"<model {i}>"
        elif name in seen:
            check.fail(f"{path}.name", f"{name!r} appears more than once")
        seen.add(name)
        versions = _versions(check, obj.get("versions"), f"{path}.versions")
        names = [v.version for v in versions]
        default = check.string(
            obj.get("defaultVersion"),
            f"{path}.defaultVersion",
            pattern=VERSION_PATTERN,
            max_length=contract.MAX_VERSION_LENGTH,
        )
        if default is None:
            if len(versions) > 1:
                check.fail(f"{path}.defaultVersion", "is required when a model lists more than one version")
            default = names[0] if names else ""
        elif names and default not in names:
            check.fail(
                f"{path}.defaultVersion", f"{default!r} must be one of the model's versions ({', '.join(names)})"
            )
        min_workers = check.integer(obj.get("minWorkers"), f"{path}.minWorkers", default=1, minimum=1, maximum=256)
        max_workers = check.integer(
            obj.get("maxWorkers"), f"{path}.maxWorkers", default=min_workers, minimum=1, maximum=256
        )
        if min_workers > max_workers:
            check.fail(f"{path}", f"minWorkers ({min_workers}) must not exceed maxWorkers ({max_workers})")
        models.append(
            ModelSpec(
                name=name,
                versions=versions,
                default_version=default,
                min_workers=min_workers,
                max_workers=max_workers,
                batch_size=check.integer(obj.get("batchSize"), f"{path}.batchSize", default=1, minimum=1, maximum=4096),
                max_batch_delay_ms=check.integer(
                    obj.get("maxBatchDelayMs"), f"{path}.maxBatchDelayMs", default=100, minimum=0, maximum=60000
                ),
                response_timeout_s=check.integer(
                    obj.get("responseTimeoutS"), f"{path}.responseTimeoutS", default=120, minimum=1, maximum=86400
                ),
                handler=check.string(obj.get("handler"), f"{path}.handler", default="", pattern=_HANDLER) or "",
                signature=_signature(check, obj.get("signature"), f"{path}.signature"),
            )
        )
    return tuple(models)


def _versions(check: _Checker, raw: Any, path: str) -> tuple[ModelVersionSpec, ...]:
    entries = check.array(raw, path, max_items=16)
    if not entries:
        check.fail(path, "must list at least one version")
    versions: list[ModelVersionSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        obj = check.obj(entry, f"{path}[{i}]")
        version = check.string(
            obj.get("version"), f"{path}[{i}].version", pattern=VERSION_PATTERN, max_length=contract.MAX_VERSION_LENGTH
        )
        url = check.string(obj.get("url"), f"{path}[{i}].url", max_length=2048)
        if not version:
            check.fail(f"{path}[{i}].version", "is required")
            continue
        if version in RESERVED_VERSIONS:
            check.fail(f"{path}[{i}].version", f"{version!r} is reserved")
        if version in seen:
            check.fail(f"{path}[{i}].version", f"{version!r} appears more than once")
        seen.add(version)
        if not url:
            check.fail(f"{path}[{i}].url", "is required")
            continue
        versions.append(ModelVersionSpec(version=version, url=url))
    return tuple(versions)


def _signature(check: _Checker, raw: Any, path: str) -> contract.SignatureEntry | None:
    """A clean copy (only the known keys), so nothing unchecked reaches the desired-state file."""
    if raw is None:
        return None
    obj = check.obj(raw, path)
    for key in obj:
        if key not in ("inputs", "outputs"):
            check.fail(f"{path}.{key}", "unknown field (use inputs or outputs)")
    sides: dict[str, list[contract.SignatureTensorEntry]] = {}
    for side in ("inputs", "outputs"):
        tensors: list[contract.SignatureTensorEntry] = []
        seen: set[str] = set()
        entries = check.array(obj.get(side), f"{path}.{side}", max_items=64)
        if not entries:
            check.fail(f"{path}.{side}", "must list at least one tensor (the server refuses a signature without)")
        for i, entry in enumerate(entries):
            where = f"{path}.{side}[{i}]"
            tensor = check.obj(entry, where)
            name = check.string(tensor.get("name"), f"{where}.name", max_length=128)
            datatype = check.string(tensor.get("datatype"), f"{where}.datatype", enum=DATATYPES)
            shape = check.array(tensor.get("shape"), f"{where}.shape", max_items=32)
            for key, value in (("name", name), ("datatype", datatype)):
                if not value:
                    check.fail(f"{where}.{key}", "is required")
            if name and not name.isprintable():
                check.fail(f"{where}.name", "must be printable (no control characters)")
            if tensor.get("shape") is None:
                check.fail(f"{where}.shape", "is required")
            dims = [
                check.integer(d, f"{where}.shape[{j}]", default=-1, minimum=-1, maximum=2**63 - 1)
                for j, d in enumerate(shape)
            ]
            if name in seen:
                check.fail(f"{where}.name", f"{name!r} appears more than once")
            seen.add(name or "")
            tensors.append({"name": name or "", "datatype": datatype or "", "shape": dims})
        sides[side] = tensors
    return {"inputs": sides["inputs"], "outputs": sides["outputs"]}


def _storage(check: _Checker, raw: Any) -> StorageSpec:
    obj = check.obj(raw, "spec.storage")
    secret: str | None = None
    if obj.get("credentialsSecret") is not None:
        ref = check.obj(obj.get("credentialsSecret"), "spec.storage.credentialsSecret")
        secret = check.string(ref.get("name"), "spec.storage.credentialsSecret.name", pattern=_DNS_SUBDOMAIN)
        if not secret:
            check.fail("spec.storage.credentialsSecret.name", "is required (a Secret in this namespace)")
    endpoint = check.string(obj.get("endpoint"), "spec.storage.endpoint", max_length=2048)
    if endpoint and not _ENDPOINT.fullmatch(endpoint):
        # Not the pattern itself: the message says what a user typed wrong (a scheme, a password).
        check.fail(
            "spec.storage.endpoint",
            f"{endpoint!r} must be an http:// or https:// URL with a host, an optional port and path, and no "
            "user name, password, query or fragment (credentials belong in credentialsSecret)",
        )
    return StorageSpec(
        credentials_secret=secret or None,
        endpoint=endpoint or None,
        region=check.string(obj.get("region"), "spec.storage.region", pattern=_REGION, max_length=64) or None,
        addressing_style=check.string(
            obj.get("addressingStyle"), "spec.storage.addressingStyle", enum=ADDRESSING_STYLES
        )
        or None,
    )


def _resources(check: _Checker, raw: Any) -> Json:
    obj = check.obj(raw, "spec.resources")
    result: Json = {}
    for section in ("limits", "requests"):
        quantities = check.obj(obj.get(section), f"spec.resources.{section}")
        if len(quantities) > 32:
            check.fail(f"spec.resources.{section}", "must have at most 32 entries")
        clean: dict[str, int | str] = {}
        for resource, quantity in quantities.items():
            text = str(quantity) if isinstance(quantity, int) and not isinstance(quantity, bool) else quantity
            if not isinstance(text, str) or not _QUANTITY.fullmatch(text):
                check.fail(f"spec.resources.{section}.{resource}", f"{quantity!r} is not a resource quantity")
                continue
            clean[str(resource)] = quantity
        if clean:
            result[section] = clean
    for key in obj:
        if key not in ("limits", "requests"):
            check.fail(f"spec.resources.{key}", "unknown field (use limits, requests or resourceClaims)")
    return result


def _claims(check: _Checker, raw: Any) -> tuple[ResourceClaimSpec, ...]:
    claims: list[ResourceClaimSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(check.array(raw, "spec.resourceClaims", max_items=16)):
        path = f"spec.resourceClaims[{i}]"
        obj = check.obj(entry, path)
        name = check.string(obj.get("name"), f"{path}.name", pattern=_DNS_LABEL, max_length=63)
        claim = check.string(obj.get("resourceClaimName"), f"{path}.resourceClaimName")
        template = check.string(obj.get("resourceClaimTemplateName"), f"{path}.resourceClaimTemplateName")
        request = check.string(obj.get("request"), f"{path}.request", max_length=63)
        if not name:
            check.fail(f"{path}.name", "is required")
            continue
        if name in seen:
            check.fail(f"{path}.name", f"{name!r} appears more than once")
        seen.add(name)
        if (claim is None) == (template is None):
            check.fail(path, "exactly one of resourceClaimName and resourceClaimTemplateName must be set")
        claims.append(ResourceClaimSpec(name, claim, template, request or None))
    return tuple(claims)


def _token(check: _Checker, raw: Any, name: str) -> TokenRef:
    if raw is None:
        return TokenRef(secret_name=f"{name}-tokens", generated=True)
    obj = check.obj(raw, "spec.tokenSecretRef")
    secret = check.string(obj.get("name"), "spec.tokenSecretRef.name")
    if not secret:
        check.fail("spec.tokenSecretRef.name", "is required")
    return TokenRef(
        secret_name=secret or "",
        management_key=check.string(
            obj.get("managementKey"), "spec.tokenSecretRef.managementKey", default="management", pattern=_SECRET_KEY
        )
        or "management",
        inference_key=check.string(
            obj.get("inferenceKey"), "spec.tokenSecretRef.inferenceKey", default="inference", pattern=_SECRET_KEY
        )
        or "inference",
        generated=False,
    )


def _model_store(check: _Checker, raw: Any) -> ModelStoreSpec:
    obj = check.obj(raw, "spec.modelStore")
    mount_path = check.string(obj.get("mountPath"), "spec.modelStore.mountPath", default="/models", max_length=1024)
    mount_path = mount_path or "/models"
    if not mount_path.startswith("/"):
        check.fail("spec.modelStore.mountPath", "must be an absolute path")
    if mount_path.startswith(OPERATOR_MOUNT_ROOT):
        check.fail(
            "spec.modelStore.mountPath",
            f"must not be under {OPERATOR_MOUNT_ROOT} (the operator mounts its files there)",
        )
    volume = obj.get("volume")
    if volume is not None:
        volume = dict(check.obj(volume, "spec.modelStore.volume"))
        volume.pop("name", None)
        if len(volume) != 1:
            check.fail(
                "spec.modelStore.volume", "must hold exactly one volume source, e.g. {persistentVolumeClaim: {...}}"
            )
    return ModelStoreSpec(
        mount_path=mount_path,
        read_only=check.boolean(obj.get("readOnly"), "spec.modelStore.readOnly", default=False),
        volume=volume if volume else {"emptyDir": {}},
    )
