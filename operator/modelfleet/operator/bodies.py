"""The parts of Kubernetes objects the operator reads, as TypedDicts (all keys optional: the API
server leaves out what is unset).

kube.py hands back plain JSON; the modules that read an object (observed.py and podcauses.py for
pods, events.py for Events, tokens.py for the token Secret, reconcile.py for the ModelDeployment,
ConfigMaps and owner references) name its shape here, and still tolerate a missing or null value.
Types only: no I/O, no behaviour.
"""

from __future__ import annotations

from typing import Any, TypedDict


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    deletionTimestamp: str | None
    ownerReferences: list[OwnerReference]


class PodCondition(TypedDict, total=False):
    type: str
    status: str
    reason: str | None
    message: str | None


class ContainerStateWaiting(TypedDict, total=False):
    reason: str | None
    message: str | None


class ContainerStateTerminated(TypedDict, total=False):
    exitCode: int | None
    reason: str | None
    message: str | None


class ContainerState(TypedDict, total=False):
    """At most one of these keys is set."""

    waiting: ContainerStateWaiting | None
    running: dict[str, Any] | None
    terminated: ContainerStateTerminated | None


class ContainerStatus(TypedDict, total=False):
    name: str
    image: str
    ready: bool | None
    restartCount: int | None
    started: bool | None
    state: ContainerState | None
    lastState: ContainerState | None


class PodStatus(TypedDict, total=False):
    phase: str
    podIP: str | None
    conditions: list[PodCondition] | None
    containerStatuses: list[ContainerStatus] | None
    initContainerStatuses: list[ContainerStatus] | None


class ResourceRequirements(TypedDict, total=False):
    limits: dict[str, str] | None


class Container(TypedDict, total=False):
    name: str
    resources: ResourceRequirements | None


class PodSpec(TypedDict, total=False):
    containers: list[Container] | None
    initContainers: list[Container] | None


class Pod(TypedDict, total=False):
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus


class ObjectReference(TypedDict, total=False):
    kind: str
    name: str
    uid: str


class Event(TypedDict, total=False):
    involvedObject: ObjectReference | None
    type: str
    reason: str | None
    message: str | None
    lastTimestamp: str | None
    eventTime: str | None


class Secret(TypedDict, total=False):
    metadata: ObjectMeta
    data: dict[str, str] | None
    """Base64 values."""


class ConfigMap(TypedDict, total=False):
    metadata: ObjectMeta
    data: dict[str, str] | None


class ModelDeployment(TypedDict, total=False):
    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any]
    """Parsed only by spec.parse_spec."""
    status: dict[str, Any] | None
    """What the operator last wrote (status.py's shape)."""
