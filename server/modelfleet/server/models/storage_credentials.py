"""Object-store credentials from a mounted Kubernetes Secret (--storage-credentials-dir), re-read on change.

object_store.py asks for them before every download. Two layouts are read, as KServe's S3 Secrets
have them: a `credentials` file (AWS shared credentials INI, profile `default`), or one file per
value (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN). kubelet updates a
mounted Secret by swapping a symlink, so the files are simply read again and compared by content.
Key material never reaches a message or the log: errors name files and fields only.
"""

from __future__ import annotations

import configparser
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ErrorKind, ModelFleetError, Reason

SHARED_FILE = "credentials"
PROFILE = "default"
KEY_FILES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
MAX_FILE_BYTES = 64 * 1024
"""A Secret value is at most 1 MiB; real keys are tiny, so anything this big is a mistake."""


@dataclass(frozen=True)
class StaticCredentials:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)

    @property
    def fingerprint(self) -> str:
        """Identifies this set without revealing it (the client is rebuilt when it changes)."""
        joined = "\0".join((self.access_key, self.secret_key, self.token or ""))
        return hashlib.sha256(joined.encode()).hexdigest()


def unusable(folder: Path, why: str) -> ModelFleetError:
    """The server's own configuration is wrong: a client can do nothing but wait for a fix."""
    return ModelFleetError(
        ErrorKind.FAILED_PRECONDITION,
        Reason.SOURCE_FETCH_FAILED,
        f"object-store credentials in --storage-credentials-dir {str(folder)!r} are unusable: {why}",
        metadata={"credentials_dir": str(folder)},
    )


def read_credentials(folder: Path) -> StaticCredentials:
    """The folder's current credentials; raises ModelFleetError (never with a value in it)."""
    shared = folder / SHARED_FILE
    if shared.is_file():
        return _from_shared_file(folder, _read(folder, shared))
    values = {name: _read(folder, folder / name) for name in KEY_FILES if (folder / name).is_file()}
    access, secret = values.get("AWS_ACCESS_KEY_ID", ""), values.get("AWS_SECRET_ACCESS_KEY", "")
    if not access or not secret:
        raise unusable(
            folder,
            f"expected a {SHARED_FILE!r} file or non-empty AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY files",
        )
    return StaticCredentials(access, secret, values.get("AWS_SESSION_TOKEN") or None)


def _read(folder: Path, path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise unusable(folder, f"cannot read {path.name}: {error.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise unusable(folder, f"{path.name} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode().strip()
    except UnicodeDecodeError:
        raise unusable(folder, f"{path.name} is not UTF-8 text") from None


def _from_shared_file(folder: Path, text: str) -> StaticCredentials:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=SHARED_FILE)
    except configparser.Error:
        # configparser's messages quote the offending line, which may hold a key: say only where.
        raise unusable(folder, f"{SHARED_FILE!r} is not an INI file with a [{PROFILE}] profile") from None
    if not parser.has_section(PROFILE):
        raise unusable(folder, f"{SHARED_FILE!r} has no [{PROFILE}] profile")
    section = parser[PROFILE]
    access = section.get("aws_access_key_id", "").strip()
    secret = section.get("aws_secret_access_key", "").strip()
    if not access or not secret:
        raise unusable(folder, f"the [{PROFILE}] profile needs aws_access_key_id and aws_secret_access_key")
    token = section.get("aws_session_token", "").strip() or None
    return StaticCredentials(access, secret, token)
