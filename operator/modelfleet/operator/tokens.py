"""The management token a pass sends to its pods, read from the token Secret (created first when
the operator owns it).

reconcile.py calls management_token() once per pass. A missing or unreadable token is an error
text for the status, never an exception: without a token the pass still writes children and status
but calls no pod. The tokens are generated here and never logged.
"""

from __future__ import annotations

import base64
import logging
import secrets
from dataclasses import dataclass
from typing import cast

from . import children
from .bodies import Secret
from .kube import Kube, KubeError
from .patches import child_patch
from .spec import DeploymentSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenRead:
    token: str | None
    error: str | None
    """Why there is no token (shown in the status), when there is none."""
    writes: int = 0
    """Kubernetes writes made (creating the Secret, patching its labels)."""


async def management_token(kube: Kube, spec: DeploymentSpec) -> TokenRead:
    ref = spec.token
    secret, writes, error = await _ensure_secret(kube, spec)
    if secret is None:
        return TokenRead(None, error or f"token Secret {ref.secret_name} not found", writes)
    if ref.generated:
        writes += await _patch_metadata(kube, spec, secret)
    raw = (secret.get("data") or {}).get(ref.management_key)
    if not raw:
        return TokenRead(None, f"token Secret {ref.secret_name} has no key {ref.management_key!r}", writes)
    token = first_token(raw)
    if token is None:
        return TokenRead(None, f"token Secret {ref.secret_name} key {ref.management_key!r} holds no token", writes)
    return TokenRead(token, None, writes)


def first_token(raw: str) -> str | None:
    """The first non-empty line of a base64 Secret value (the server accepts one token a line)."""
    try:
        lines = [line.strip() for line in base64.b64decode(raw).decode().splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError):
        return None
    return lines[0] if lines else None


async def _ensure_secret(kube: Kube, spec: DeploymentSpec) -> tuple[Secret | None, int, str | None]:
    """(the Secret or None, writes, why it could not be created)."""
    ref = spec.token
    secret = cast(Secret | None, await kube.get("Secret", spec.namespace, ref.secret_name))
    if secret is not None or not ref.generated:
        return secret, 0, None
    desired = children.token_secret(
        spec, management_token=secrets.token_urlsafe(32), inference_token=secrets.token_urlsafe(32)
    )
    try:
        return cast(Secret, await kube.create(desired)), 1, None
    except KubeError as exc:
        if exc.status != 409:
            return None, 0, f"cannot create Secret {ref.secret_name}: {exc.message}"
    # Created by another writer between our read and create: use theirs.
    return cast(Secret | None, await kube.get("Secret", spec.namespace, ref.secret_name)), 0, None


async def _patch_metadata(kube: Kube, spec: DeploymentSpec, secret: Secret) -> int:
    """Labels and owner only; the tokens in it stay usable if this write fails (retried next pass)."""
    metadata = children.token_secret(spec, management_token="", inference_token="")["metadata"]
    ops = child_patch({"kind": "Secret", "metadata": metadata}, secret)
    if not ops:
        return 0
    try:
        await kube.patch_json("Secret", spec.namespace, spec.token.secret_name, ops)
    except KubeError as exc:
        log.warning("Patching the metadata of Secret %s/%s failed: %s", spec.namespace, spec.token.secret_name, exc)
        return 0
    return 1
