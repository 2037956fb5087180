"""Whether the Secret named by spec.storage.credentialsSecret exists and holds credentials.

reconcile.py reads that Secret once per pass (`get`, which the operator already holds for its token
Secret) and hands it to problem_of(); status.py turns a problem into Ready/Progressing/Degraded. A
real kubelet leaves a pod whose Secret volume is missing in ContainerCreating and says why only in a
FailedMount Event, so without this the status could only guess. Pure: only key names are looked
at, values are never decoded or logged.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bodies import Secret
from .spec import DeploymentSpec

SECRET_MISSING = "StorageSecretMissing"
SECRET_INCOMPLETE = "StorageSecretIncomplete"
CREDENTIALS_FILE = "credentials"
KEY_PAIR = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""The two layouts the server's --storage-credentials-dir reads (an INI file, or one file per key)."""


@dataclass(frozen=True)
class StorageProblem:
    reason: str
    """SECRET_MISSING or SECRET_INCOMPLETE: the Ready/Progressing/Degraded reason."""
    message: str


def problem_of(spec: DeploymentSpec, secret: Secret | None) -> StorageProblem | None:
    """Pure: what is wrong with the credentials Secret as read (None: nothing, or none is named)."""
    name = spec.storage.credentials_secret
    if not name:
        return None
    if secret is None:
        return StorageProblem(
            SECRET_MISSING,
            f'Secret "{name}" (spec.storage.credentialsSecret) not found in namespace "{spec.namespace}": '
            "pods cannot mount it and wait in ContainerCreating",
        )
    keys = set(secret.get("data") or {})
    if CREDENTIALS_FILE not in keys and not set(KEY_PAIR) <= keys:
        return StorageProblem(
            SECRET_INCOMPLETE,
            f'Secret "{name}" (spec.storage.credentialsSecret) has no "{CREDENTIALS_FILE}" key and not both '
            f"{' and '.join(KEY_PAIR)}: servers have no object-store keys",
        )
    return None
