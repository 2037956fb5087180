"""kopf wiring only: login, startup/cleanup, the key index and two watch handlers that enqueue.

build_registry() is called by __main__.py (and by tests) with a Runtime; nothing registers at
import time. Every handler is async and thin: the work happens in reconcile.py via the runtime's
queue. Only event handlers are used (no create/update/resume, no timers), so kopf itself never
writes to the objects: no finalizers, no last-handled-configuration annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kopf

from .children import FLEET_LABEL
from .kube import Connection
from .runtime import Runtime
from .spec import GROUP, PLURAL, VERSION


def build_registry(runtime: Runtime, connection: Callable[[], Connection]) -> kopf.OperatorRegistry:
    """`connection` is asked again at every (re-)login: kopf re-logs in on a 401, and an in-cluster
    service account token rotates."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        info = connection()
        return kopf.ConnectionInfo(
            server=info.server,
            ca_path=info.ca_path,
            insecure=info.insecure,
            token=info.token,
            certificate_path=info.certificate_path,
            private_key_path=info.private_key_path,
        )

    @kopf.on.startup(registry=registry)
    async def startup(*, settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        settings.peering.standalone = True  # leader.py decides who runs
        settings.posting.enabled = False  # our own Events (kube.py) say what happened
        settings.watching.connect_timeout = 10
        settings.watching.server_timeout = 300
        # The index is live: the resync loop sees every ModelDeployment kopf currently knows.
        index: kopf.Index[tuple[str, str], None] = kwargs["modeldeployment_keys"]
        runtime.start(keys=lambda: list(index))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await runtime.stop()

    @kopf.index(GROUP, VERSION, PLURAL, id="modeldeployment_keys", registry=registry)
    async def modeldeployment_keys(*, namespace: str | None, name: str, **_: Any) -> dict[tuple[str, str], None]:
        return {(namespace or "", name): None}

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def modeldeployment_event(*, namespace: str | None, name: str, **_: Any) -> None:
        runtime.enqueue((namespace or "", name))

    @kopf.on.event("", "v1", "pods", labels={FLEET_LABEL: kopf.PRESENT}, registry=registry)
    async def pod_event(*, namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
        # A new, restarted, replaced or now-ready pod: converge its fleet without waiting for a resync.
        runtime.enqueue((namespace or "", labels[FLEET_LABEL]))

    return registry
