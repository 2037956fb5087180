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
