"""Kubernetes Events about ModelDeployments, counted as a series instead of repeated.

reconcile.py posts every Event through one EventRecorder, and reads pods' Warning Events with
pod_warnings(). Like client-go's event correlator, an
Event with the same object, type, reason and message as one this process already posted is not
created again: that Event's `count`, `lastTimestamp` and `series` are patched instead, so
`kubectl get events` shows "(x3 over 2m)" rather than three rows. The memory is a bounded LRU and
is lost on restart (then the next repeat starts a new Event). Failures are logged, never raised:
Events are advisory and must not fail a reconcile pass.
"""

from __future__ import annotations

import datetime
import logging
import socket
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelfleet.protos.contract import DesiredStateDocument

from .bodies import Event
from .kube import Kube, KubeError
from .podcauses import short

log = logging.getLogger(__name__)

COMPONENT = "modelfleet-operator"
SeriesKey = tuple[str, str, str, str, str]  # (namespace, involved uid, type, reason, message)


@dataclass
class _Series:
    name: str
    count: int


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class EventRecorder:
    def __init__(self, kube: Kube, *, capacity: int = 4096, clock: Callable[[], datetime.datetime] = _utc_now) -> None:
        self._kube = kube
        self._capacity = capacity
        self._clock = clock
        self._series: OrderedDict[SeriesKey, _Series] = OrderedDict()

    async def post(self, involved: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        """Create the Event, or count one more of the same (see the module docstring)."""
        meta = involved.get("metadata", {})
        namespace = str(meta.get("namespace") or "")
        text = short(message)
        key = (namespace, str(meta.get("uid")), type, reason, text)
        now = self._clock()
        series = self._series.get(key)
        if series is not None:
            self._series.move_to_end(key)
            count = series.count + 1
            patch = {
                "count": count,
                "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "series": {"count": count, "lastObservedTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
            }
            try:
                await self._kube.patch_merge("Event", namespace, series.name, patch)
                series.count = count
                return
            except KubeError as exc:
                if exc.status != 404:  # expired (events live about an hour) or deleted: start anew
                    log.warning("Could not count event %s for %s: %s", reason, meta.get("name"), exc)
                    return
        name = f"{meta.get('name')}.{uuid.uuid4().hex[:16]}"
        try:
            await self._kube.create(_event(involved, name=name, type=type, reason=reason, message=text, now=now))
        except KubeError as exc:
            log.warning("Could not post event %s for %s: %s", reason, meta.get("name"), exc)
            return
        self._series[key] = _Series(name, 1)
        self._series.move_to_end(key)
        while len(self._series) > self._capacity:
            self._series.popitem(last=False)


def _event(
    involved: Mapping[str, Any], *, name: str, type: str, reason: str, message: str, now: datetime.datetime
) -> dict[str, Any]:
    meta = involved.get("metadata", {})
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": type,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def post_cutovers(
    recorder: EventRecorder, involved: Mapping[str, Any], before: Mapping[str, Any] | None, after: DesiredStateDocument
) -> None:
    """A changed default in the desired-state document means a cut-over just finished."""
    old = {m["name"]: m.get("defaultVersion") for m in (before or {}).get("models", []) if isinstance(m, dict)}
    for model in after["models"]:
        was = old.get(model["name"])
        if was is not None and was != model["defaultVersion"]:
            await recorder.post(
                involved,
                type="Normal",
                reason="DefaultVersionChanged",
                message=f"{model['name']}: every pod now serves {model['defaultVersion']} by default (was {was})",
            )


async def pod_warnings(kube: Kube, namespace: str, uids: set[str]) -> dict[str, list[Event]]:
    """The Warning Events of these pods (by uid); {} when they cannot be listed."""
    query = {"fieldSelector": "involvedObject.kind=Pod,type=Warning"}
    try:
        listed = await kube.request("GET", Kube.path("Event", namespace), query=query)
    except KubeError as exc:  # e.g. RBAC without `list events`: the pod statuses still tell most
        log.warning("Listing the pod events of namespace %s failed: %s", namespace, exc)
        return {}
    result: dict[str, list[Event]] = {}
    for event in (listed or {}).get("items") or []:
        uid = str((event.get("involvedObject") or {}).get("uid"))
        if uid in uids:
            result.setdefault(uid, []).append(event)
    return result
