"""One planned action → one management call on its pod's PodClient.

reconcile.py calls send() for each action of a pass and decides what a failure means. The `match`
ends in `assert_never`: an Action kind added to actions.py and not handled here fails mypy
(tests/operator/dispatch/test_dispatch_is_exhaustive.py proves the check works).
"""

from __future__ import annotations

import logging
from typing import assert_never

from .actions import Action, Register, Scale, SetDefault, Unregister
from .podclient import PodClient

log = logging.getLogger(__name__)


async def send(client: PodClient, action: Action, *, load_timeout_s: int) -> None:
    """Make the call; raises PodCallError as the client does."""
    match action:
        case Register():
            log.info("Registering %s/%s on %s", action.model, action.version, action.pod.name)
            await client.register(action.spec, action.entry, load_timeout_s=load_timeout_s)
        case Scale():
            await client.scale(
                action.model,
                action.version,
                min_workers=action.min_workers,
                max_workers=action.max_workers,
                timeout_s=load_timeout_s,
            )
        case SetDefault():
            log.info("Setting default %s/%s on %s", action.model, action.version, action.pod.name)
            await client.set_default(action.model, action.version)
        case Unregister():
            log.info("Unregistering %s/%s on %s", action.model, action.version, action.pod.name)
            await client.unregister(action.model, action.version)
        case _:
            assert_never(action)
