"""What the operator observed on one server pod: plain frozen values, and the pod object read.

podclient.py builds the model values from ListModels/DescribeModel/Health answers; the pod
functions at the end read the Kubernetes Pod object (bodies.Pod) for reconcile.py; plan.py and
status.py read the values. Kept apart so the pure planning code never imports grpc; no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .bodies import Pod


@dataclass(frozen=True)
class ObservedVersion:
    version: str
    url: str = ""
    min_workers: int = 0
    max_workers: int = 0
    workers: int = 0
    ready_workers: int = 0
    serving: bool = False
    """The server's health name "<model>/<version>" answered SERVING."""


@dataclass(frozen=True)
class ObservedModel:
    name: str
    default_version: str
    versions: Mapping[str, ObservedVersion] = field(default_factory=dict)


@dataclass(frozen=True)
class PodRef:
    """A pod as the Kubernetes API shows it."""

    name: str
    uid: str
    ip: str
    ready: bool
    """The pod's Ready condition (its readiness probe on health name "")."""
    restarts: int = 0


@dataclass(frozen=True)
class ObservedPod:
    pod: PodRef
    models: Mapping[str, ObservedModel] | None
    """None when the pod's management API could not be read (see error)."""
    error: str | None = None
    unverified: bool = False
    """The server at the pod's address did not prove it is this pod (its UID): nothing was sent to it."""

    @property
    def reachable(self) -> bool:
        return self.models is not None


# The Kubernetes Pod object -------------------------------------------------------------------

SERVER_CONTAINER = "server"


def pod_ref(pod: Pod) -> PodRef:
    meta, st = pod.get("metadata", {}), pod.get("status", {})
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
    restarts = sum(int(c.get("restartCount") or 0) for c in st.get("containerStatuses") or [])
    return PodRef(
        name=str(meta.get("name")),
        uid=str(meta.get("uid")),
        ip=str(st.get("podIP") or ""),
        ready=ready,
        restarts=restarts,
    )


def is_live(pod: Pod) -> bool:
    """Neither being deleted nor finished."""
    return not pod.get("metadata", {}).get("deletionTimestamp") and pod.get("status", {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def is_running(pod: Pod) -> bool:
    """Running with an IP: its management API can be asked."""
    return pod.get("status", {}).get("phase") == "Running" and bool(pod.get("status", {}).get("podIP"))


def has_started(pod: Pod) -> bool:
    """The server container passed its startupProbe (its desired-state file is loaded)."""
    for c in pod.get("status", {}).get("containerStatuses") or []:
        if c.get("name") == SERVER_CONTAINER:
            return bool(c.get("started")) and "running" in (c.get("state") or {})
    return pod_ref(pod).ready
