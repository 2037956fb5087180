"""Why a server pod does not serve, read the way `kubectl describe pod` shows it: pod conditions,
container statuses and the pod's Warning events.

reconcile.py calls cause_of() for every live pod that is not Ready and hands the results to
status.py, which names the first in `Degraded`. Pure: it reads recorded pod and Event objects
(no API calls, no clocks), so every cause can be tested from a pod a real cluster reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .bodies import ContainerStatus, Event, Pod

MESSAGE_CAP = 200
"""Longest condition or Event message, in characters: the full story stays in the pod and its log."""

# Degraded reasons, most telling first (status.py shows the first pod with the best-ranked one).
UNSCHEDULABLE = "PodUnschedulable"
VOLUME = "VolumeMountFailed"
IMAGE = "ImagePullFailed"
CONFIG = "ContainerConfigError"
CANNOT_START = "ContainerCannotStart"
OOM = "ContainerOOMKilled"
CRASH = "ContainerCrashLooping"
RANK = (UNSCHEDULABLE, VOLUME, IMAGE, CONFIG, CANNOT_START, OOM, CRASH)

_IMAGE_WAITING = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
    "SignatureValidationFailed",
}
_CONFIG_WAITING = {
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreCreateHookError",
    "PreStartHookError",
    "PostStartHookError",
}
_VOLUME_EVENTS = {"FailedMount", "FailedAttachVolume", "FailedMapVolume"}


@dataclass(frozen=True)
class PodCause:
    pod: str
    reason: str
    """CamelCase, one of RANK: the Degraded reason."""
    detail: str
    """What went wrong, without the pod's name (status.py prefixes it)."""


def short(text: str, limit: int = MESSAGE_CAP) -> str:
    """One line of at most `limit` characters (whitespace folded, an ellipsis where it was cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def cause_of(pod: Pod, events: Sequence[Event] = ()) -> PodCause | None:
    """The reason this pod does not run, or None (still starting, or nothing recorded says why).
    `events`: Warning events about this pod, in any order."""
    name = str(pod.get("metadata", {}).get("name", ""))
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and (condition.get("reason") == "Unschedulable")
        ):
            return PodCause(name, UNSCHEDULABLE, short(str(condition.get("message") or "no node fits the pod")))
    limits = _memory_limits(pod)
    for container in list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or []):
        found = _container_cause(container, memory_limit=limits.get(str(container.get("name"))))
        if found is not None:
            return PodCause(name, found[0], found[1])
    return _event_cause(name, events)


def _container_cause(container: ContainerStatus, *, memory_limit: str | None) -> tuple[str, str] | None:
    name = container.get("name")
    waiting = (container.get("state") or {}).get("waiting") or {}
    reason, message = str(waiting.get("reason") or ""), str(waiting.get("message") or "")
    if reason in _IMAGE_WAITING:
        return IMAGE, short(f"container {name}: {reason}: {message or container.get('image', '')}")
    if reason in _CONFIG_WAITING:
        return CONFIG, short(f"container {name}: {reason}: {message}")
    if reason == "FailedMount":  # no kubelet we know says it here (they post an Event); kept in case one does
        return VOLUME, short(message or "a volume cannot be mounted")
    last = (container.get("lastState") or {}).get("terminated") or (container.get("state") or {}).get("terminated")
    restarting = reason == "CrashLoopBackOff" or (
        int(container.get("restartCount") or 0) > 0 and not container.get("ready")
    )
    if not last or not restarting:
        return None
    code, ended, said = last.get("exitCode"), str(last.get("reason") or ""), str(last.get("message") or "")
    if ended == "OOMKilled":
        limit = f" (limit {memory_limit})" if memory_limit else ""
        return OOM, short(f"container {name} was killed for running out of memory{limit}; restarting")
    if ended in ("StartError", "ContainerCannotRun") or code in (126, 127):
        return CANNOT_START, short(f"container {name} cannot start: {said or f'exit code {code}'}")
    tail = f": {said}" if said else " (see its log)"
    return CRASH, short(f"container {name} keeps exiting, last with code {code} ({ended or 'Error'}){tail}")


def _event_cause(name: str, events: Sequence[Event]) -> PodCause | None:
    """The newest telling Warning event (FailedMount, FailedScheduling, image pull failures)."""
    newest = sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)
    for event in newest:
        reason, message = str(event.get("reason") or ""), str(event.get("message") or "")
        if reason in _VOLUME_EVENTS:
            return PodCause(name, VOLUME, short(message or reason))
        if reason == "FailedScheduling":
            return PodCause(name, UNSCHEDULABLE, short(message or reason))
        if reason in ("Failed", "ErrImagePull") and "pull" in message.lower():
            return PodCause(name, IMAGE, short(message))
    return None


def _memory_limits(pod: Pod) -> dict[str, str]:
    spec = pod.get("spec") or {}
    result = {}
    for container in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            result[str(container.get("name"))] = str(limit)
    return result


def summarize(causes: Sequence[PodCause]) -> tuple[str, str] | None:
    """(Degraded reason, message) for the best-ranked cause, naming its pod and counting the others."""
    if not causes:
        return None
    ordered = sorted(causes, key=lambda c: (RANK.index(c.reason) if c.reason in RANK else len(RANK), c.pod))
    first = ordered[0]
    same = [c for c in ordered if c.reason == first.reason]
    others = f" (and {len(same) - 1} more pods)" if len(same) > 1 else ""
    return first.reason, short(f"{first.pod}{others}: {first.detail}")
