"""CustomResourceDefinitions: the resource types a CRD object serves, and its Established status.

Called by the API emulator (apiserver.py) whenever a CRD is created, changed or deleted, so applying
the operator's CRD file (kubectl apply, the kubernetes client, server-side apply) makes the kind
servable with its status and scale subresources, schema and printer columns, as in a cluster.
Pure functions over the CRD object.
"""

from __future__ import annotations

from modelfleet.local.apistore import now_rfc3339
from modelfleet.local.apitypes import JSON, ResourceType, ScalePaths


def resource_types(crd: JSON) -> list[ResourceType]:
    """One ResourceType per served version (the storage version first: it wins the shared key)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = sorted(spec.get("versions") or [], key=lambda v: not v.get("storage", False))
    served = []
    for version in versions:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        scale_spec = subresources.get("scale")
        served.append(
            ResourceType(
                group=spec.get("group", ""),
                version=version["name"],
                plural=names.get("plural", ""),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                subresources=frozenset(subresources),
                builtin=False,
                scale=None
                if scale_spec is None
                else ScalePaths(
                    spec_replicas=scale_spec.get("specReplicasPath", ".spec.replicas"),
                    status_replicas=scale_spec.get("statusReplicasPath", ".status.replicas"),
                    label_selector=scale_spec.get("labelSelectorPath"),
                ),
                singular=names.get("singular") or names.get("kind", "").lower(),
                short_names=frozenset(names.get("shortNames") or []),
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            )
        )
    return served


def established_status(crd: JSON) -> JSON:
    """The status the API server gives an accepted CRD (kept stable: times only change on flips)."""
    spec = crd.get("spec") or {}
    old = {c.get("type"): c for c in (crd.get("status") or {}).get("conditions") or []}
    now = now_rfc3339()
    conditions = []
    for kind, reason, message in (
        ("NamesAccepted", "NoConflicts", "no conflicts found"),
        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
    ):
        previous = old.get(kind) or {}
        conditions.append(
            {
                "type": kind,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": previous.get("lastTransitionTime", now),
            }
        )
    return {
        "acceptedNames": spec.get("names") or {},
        "conditions": conditions,
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }
