"""The operator's memory of failed registrations: recorded, paced, forgotten when irrelevant.

reconcile.py keeps one dict of Failure per ModelDeployment and calls these pure functions on it.
Transient failures wait out an exponential backoff; permanent ones block that source until the
spec changes. A permanent failure outlives its pod (re-keyed to the fleet) and an operator restart
(seeded from the status it wrote), so the version stays out of the ConfigMap new pods load.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from .actions import Action
from .plan import Failure, FailureKey
from .settings import ReconcileSettings
from .spec import DeploymentSpec

FLEET = ""
"""pod_uid of a failure that outlived its pod or came from the status: it keeps the version out of
the ConfigMap and the model FailedToLoad, but blocks no pod's own attempt."""


def record(
    spec: DeploymentSpec,
    action: Action,
    *,
    reason: str,
    message: str,
    permanent: bool,
    previous: Failure | None,
    now: float,
    settings: ReconcileSettings,
) -> Failure:
    model = spec.model(action.model)
    entry = model.version(action.version) if model else None
    attempts = (previous.attempts + 1) if previous is not None else 1
    delay = min(settings.failure_backoff_max_s, settings.failure_backoff_initial_s * 2 ** (attempts - 1))
    return Failure(
        pod_uid=action.pod.uid,
        model=action.model,
        version=action.version,
        url=entry.url if entry else "",
        reason=reason,
        message=message,
        permanent=permanent,
        generation=spec.generation,
        attempts=attempts,
        retry_at=math.inf if permanent else now + delay,
    )


def forget_stale(failures: dict[FailureKey, Failure], spec: DeploymentSpec, *, live_uids: set[str]) -> None:
    """Drop failures the spec no longer makes relevant (another source or generation) and transient
    ones of vanished pods; re-key a vanished pod's permanent failure to the fleet."""
    for key, failure in list(failures.items()):
        model = spec.model(failure.model)
        entry = model.version(failure.version) if model else None
        relevant = entry is not None and entry.url == failure.url and failure.generation == spec.generation
        if not relevant or (not failure.permanent and key[0] not in live_uids):
            del failures[key]
        elif key[0] != FLEET and key[0] not in live_uids:
            del failures[key]
            failures[(FLEET, failure.model, failure.version)] = dataclasses.replace(failure, pod_uid=FLEET)


def seed_from_status(failures: dict[FailureKey, Failure], spec: DeploymentSpec, *, current: Mapping[str, Any]) -> None:
    """After an operator restart: versions the status says failed at this very generation stay failed."""
    if current.get("observedGeneration") != spec.generation:
        return
    for model_status in current.get("models") or []:
        model = spec.model(str(model_status.get("name")))
        if model is None:
            continue
        for version_status in model_status.get("versions") or []:
            entry = model.version(str(version_status.get("version")))
            if entry is None or version_status.get("state") != "FailedToLoad":
                continue
            failures[(FLEET, model.name, entry.version)] = Failure(
                pod_uid=FLEET,
                model=model.name,
                version=entry.version,
                url=entry.url,
                reason="FailedToLoad",
                message=str(version_status.get("message") or "failed to load before the operator restarted"),
                permanent=True,
                generation=spec.generation,
            )
