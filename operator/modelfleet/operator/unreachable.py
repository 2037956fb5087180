"""When a Ready pod's failed management call counts as an outage: not on the first pass, nor
within a grace period, since a server that just turned Ready can refuse a call or two.

reconcile.py calls settle() once per pass with the previous result (kept in its Memory) and passes
the settling pods to status.py, which neither reports them unreachable nor stops counting them as
serving. Pure: the caller supplies the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .observed import ObservedPod

Spells = Mapping[str, tuple[float, int]]
"""Pod uid → (monotonic time of the first failed pass, consecutive failed passes)."""


@dataclass(frozen=True)
class Settled:
    spells: dict[str, tuple[float, int]]
    """The spells to remember for the next pass."""
    settling: frozenset[str]
    """Names of pods whose failure does not count yet."""
    recheck_after: float | None
    """Seconds until the earliest settling pod's grace ends (look again then); None when none."""


def settle(
    previous: Spells, observed: Sequence[ObservedPod], *, now: float, grace_s: float, min_delay_s: float
) -> Settled:
    spells: dict[str, tuple[float, int]] = {}
    settling: set[str] = set()
    due: list[float] = []
    for o in observed:
        if o.reachable or o.unverified or not o.pod.ready:
            continue  # unverified has its own reason; a pod that is not Ready is starting, not lost
        first, passes = previous.get(o.pod.uid, (now, 0))
        spells[o.pod.uid] = (first, passes + 1)
        if passes + 1 < 2 or now - first < grace_s:
            settling.add(o.pod.name)
            due.append(max(first + grace_s - now, min_delay_s))
    return Settled(spells, frozenset(settling), min(due) if due else None)
