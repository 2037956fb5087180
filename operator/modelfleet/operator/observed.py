"""What the operator observed on one server pod: plain frozen values, no behaviour.

podclient.py builds them from ListModels/DescribeModel/Health answers; plan.py and status.py read
them. Kept apart so the pure planning code never imports grpc.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
