"""Reading a pod's state the way controllers do: active, ready, available, owner.

Shared by the ReplicaSet and Deployment controllers and the service proxy. Pure functions.
"""

from __future__ import annotations

import datetime
from typing import Any

from modelfleet.local.apitypes import JSON


def controller_of(obj: JSON, kind: str) -> str | None:
    """The uid of the object's controlling owner of `kind`, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            return str(ref.get("uid"))
    return None


def condition(obj: JSON, kind: str) -> dict[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


def is_terminating(pod: JSON) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_active(pod: JSON) -> bool:
    """Counted by its ReplicaSet: not being deleted and not finished."""
    return not is_terminating(pod) and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def is_ready(pod: JSON) -> bool:
    ready = condition(pod, "Ready")
    return bool(ready and ready.get("status") == "True")


def is_available(pod: JSON, *, min_ready_seconds: int = 0, now: datetime.datetime | None = None) -> bool:
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = (condition(pod, "Ready") or {}).get("lastTransitionTime")
    if not since:
        return False
    changed = datetime.datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    return ((now or datetime.datetime.now(datetime.UTC)) - changed).total_seconds() >= min_ready_seconds


def restarts(pod: JSON) -> int:
    return sum(int(s.get("restartCount", 0)) for s in (pod.get("status") or {}).get("containerStatuses") or [])


def deletion_rank(pod: JSON) -> tuple[int, int, int, int, str]:
    """Sort key, lowest deleted first (the ReplicaSet controller's order): unscheduled, pending, not
    ready, most restarts, newest."""
    phase = (pod.get("status") or {}).get("phase", "Pending")
    created = str(pod["metadata"].get("creationTimestamp", ""))
    inverted = "".join(chr(0x10FFFF - ord(c)) for c in created)  # newest first
    return (
        1 if (pod.get("spec") or {}).get("nodeName") else 0,
        {"Pending": 0, "Unknown": 1}.get(phase, 2),
        1 if is_ready(pod) else 0,
        -restarts(pod),
        inverted,
    )
