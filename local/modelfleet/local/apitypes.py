"""Values shared by the in-memory API's store and HTTP layer: resource types, API errors, the audit log.

The audit log keeps every API request (HTTP or in-process) as (verb, group, resource, subresource,
namespace, name, code, user agent), bounded but large, for tests that count writes (idle resync makes
none) or check what an operator touches (RBAC). It is separate from kmock's request log, which the
server trims for speed. Must not import aiohttp or kmock: the store and controllers use it too.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class ScalePaths:
    """Where a kind keeps its replica counts, as a CRD's `subresources.scale` says (dotted paths)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None


@dataclass(frozen=True)
class ResourceType:
    """One served resource: what discovery lists and what the store needs to treat it right."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: frozenset[str] = frozenset()
    scale: ScalePaths | None = None
    # Built-in kinds merge lists by key on strategic merge / apply; custom resources do not.
    builtin: bool = True
    singular: str = ""
    short_names: frozenset[str] = frozenset()
    printer_columns: tuple[JSON, ...] = ()
    # The CRD's openAPIV3Schema for this version (None for built-ins): used to prune and validate.
    schema: JSON | None = None

    @property
    def key(self) -> tuple[str, str]:
        """Storage identity: one object set per group and plural, whatever the version asked."""
        return (self.group, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def describe(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


class ApiError(Exception):
    """An API failure with its HTTP code and Kubernetes Status reason (NotFound, Conflict, ...)."""

    def __init__(self, code: int, reason: str, message: str, *, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> JSON:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{rtype.describe()} "{name}" not found',
        details={"name": name, "group": rtype.group, "kind": rtype.plural},
    )


def conflict(rtype: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rtype.describe()} "{name}": {why}',
        details={"name": name, "group": rtype.group, "kind": rtype.plural},
    )


def already_exists(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{rtype.describe()} "{name}" already exists',
        details={"name": name, "group": rtype.group, "kind": rtype.plural},
    )


def invalid(rtype: ResourceType, name: str, causes: list[str]) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{rtype.kind} "{name}" is invalid: ' + "; ".join(causes),
        details={
            "name": name,
            "group": rtype.group,
            "kind": rtype.kind,
            "causes": [{"message": cause} for cause in causes],
        },
    )


@dataclass(frozen=True)
class ApiRequest:
    """One API request as an audit record; `verb` uses RBAC's names (get, list, watch, patch, ...)."""

    verb: str
    group: str
    resource: str
    namespace: str | None
    name: str | None
    subresource: str | None = None
    code: int = 200
    user_agent: str = ""
    at: float = field(default_factory=time.time)


class AuditLog:
    """Every API request, newest last; bounded (default 200,000 records) so a long run stays small."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._records: collections.deque[ApiRequest] = collections.deque(maxlen=capacity)
        self.total = 0

    def add(self, record: ApiRequest) -> None:
        self._records.append(record)
        self.total += 1

    def reset(self) -> None:
        self._records.clear()

    def __iter__(self) -> Iterator[ApiRequest]:
        return iter(list(self._records))

    def __len__(self) -> int:
        return len(self._records)

    def select(
        self,
        *,
        verbs: frozenset[str] | set[str] | None = None,
        resource: str | None = None,
        user_agent: str | None = None,
        namespace: str | None = None,
    ) -> list[ApiRequest]:
        """Records matching every given filter; `user_agent` matches a substring (e.g. "kopf")."""
        return [
            r
            for r in self._records
            if (verbs is None or r.verb in verbs)
            and (resource is None or r.resource == resource)
            and (namespace is None or r.namespace == namespace)
            and (user_agent is None or user_agent in r.user_agent)
        ]

    def writes(self, *, user_agent: str | None = None, resource: str | None = None) -> list[ApiRequest]:
        """Create/update/patch/delete requests (successful or not), optionally filtered."""
        return self.select(verbs=WRITE_VERBS, resource=resource, user_agent=user_agent)
