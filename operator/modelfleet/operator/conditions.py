"""Ready / Progressing / Degraded conditions: lastTransitionTime moves only when a status flips.

status.py decides each condition's status, reason and message; merge() folds them into the
previous list from the object so an unchanged condition (same status) keeps its timestamp and a
pass that decides the same thing produces byte-identical status (no write). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
TYPES = (READY, PROGRESSING, DEGRADED)


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None
    """True, False, or None for Unknown."""
    reason: str
    message: str = ""

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else str(self.status)


@dataclass(frozen=True)
class Flip:
    """A condition whose status changed in this pass (reported as a Kubernetes Event)."""

    type: str
    old: str | None
    new: str
    reason: str
    message: str


def merge(
    previous: Iterable[Mapping[str, Any]] | None,
    decided: Sequence[Condition],
    *,
    generation: int,
    now: str,
) -> tuple[list[dict[str, Any]], list[Flip]]:
    """The new condition list (in TYPES order, then any foreign types kept as they were) and the flips."""
    before = {str(c.get("type")): dict(c) for c in previous or () if isinstance(c, Mapping)}
    result: list[dict[str, Any]] = []
    flips: list[Flip] = []
    for condition in decided:
        old = before.pop(condition.type, None)
        old_status = str(old["status"]) if old and "status" in old else None
        changed = old_status != condition.status_text
        since = now if changed or not old or not old.get("lastTransitionTime") else str(old["lastTransitionTime"])
        result.append(
            {
                "type": condition.type,
                "status": condition.status_text,
                "reason": condition.reason,
                "message": condition.message,
                "lastTransitionTime": since,
                "observedGeneration": generation,
            }
        )
        if changed:
            flips.append(Flip(condition.type, old_status, condition.status_text, condition.reason, condition.message))
    order = {t: i for i, t in enumerate(TYPES)}
    result.sort(key=lambda c: order.get(c["type"], len(order)))
    result.extend(before.values())  # conditions someone else owns are kept untouched
    return result, flips


@dataclass(frozen=True)
class Notice:
    """An Event one pass's conditions call for."""

    type: str
    """"Normal" or "Warning"."""
    reason: str
    message: str


_PRIORITY = (DEGRADED, READY, PROGRESSING)


def notices(previous: Iterable[Mapping[str, Any]] | None, decided: Sequence[Condition]) -> list[Notice]:
    """One Event per transition: a status flip (a fresh object's False is not news), or `Degraded`
    staying True for another cause (reason or message). Several flips of one pass that share a
    reason (an invalid spec turns Ready False and Degraded True at once) make one Event."""
    before = {str(c.get("type")): c for c in previous or () if isinstance(c, Mapping)}
    found: dict[str, Notice] = {}
    for condition in sorted(decided, key=lambda c: _PRIORITY.index(c.type) if c.type in _PRIORITY else len(_PRIORITY)):
        old = before.get(condition.type) or {}
        old_status = str(old["status"]) if "status" in old else None
        new = condition.status_text
        if old_status == new:
            moved = (
                condition.type == DEGRADED
                and new == "True"
                and ((old.get("reason"), old.get("message")) != (condition.reason, condition.message))
            )
            if not moved:
                continue
        elif old_status is None and new == "False":
            continue
        warning = (
            (condition.type == DEGRADED and new == "True")
            or (condition.type == READY and old_status == "True")
            or condition.reason == "InvalidSpec"
        )
        notice = Notice(
            "Warning" if warning else "Normal", condition.reason, condition.message or f"{condition.type} is now {new}"
        )
        same = found.get(condition.reason)
        if same is None:
            found[condition.reason] = notice
        elif warning and same.type != "Warning":
            found[condition.reason] = Notice("Warning", same.reason, same.message)
    return list(found.values())
