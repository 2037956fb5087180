"""Least privilege, both ways: the chart's RBAC rules (charts/modelfleet/files/rbac-rules.yaml, which
templates/rbac.yaml renders into the (Cluster)Roles) grant every request the operator sent during this
session's fleet tests, and every (verb, resource) they grant was sent by one of them.

Collected last in this folder (the name), it reads what conftest.py's `operator_requests` gathered
from each fleet test's API audit (the operator's own client and kopf's, never the tests' client).
How requests and rules are compared:
- by (verb, API group, resource or resource/subresource). `list` and `watch` are separate verbs, as
  in RBAC: kopf lists and then watches, the reconciler only lists pods, so each must be both granted
  and used on its own. A `get` of one object never counts as a `list` or the other way round.
- scope: a request without a namespace (kopf watching all namespaces) is granted by `clusterWide`
  rules and by `namespaced` ones (a ClusterRole when the operator watches every namespace), never by
  `leaderElection` (a Role in the operator's namespace); a namespaced request by any section. The
  fleet tests put everything in `default`; which namespaces each Role covers is checked against the
  rendered manifests by tests/deploy/test_manifests_run_a_fleet_locally.py.
- no wildcards: a `*` in a rule could never be matched against requests, so it fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "charts" / "modelfleet" / "files" / "rbac-rules.yaml"
SCOPES = {"clusterWide": {True, False}, "namespaced": {True, False}, "leaderElection": {False}}
"""Rules section → the request scopes (cluster-wide: True) it grants."""

Grant = tuple[str, str, str]  # (verb, group, resource[/subresource])


def chart_grants() -> dict[Grant, set[bool]]:
    """Every (verb, group, resource) the rules grant → the scopes it is granted in."""
    rules = yaml.safe_load(RULES.read_text())
    assert set(rules) == set(SCOPES), f"rbac-rules.yaml sections {sorted(rules)}; this test knows {sorted(SCOPES)}"
    grants: dict[Grant, set[bool]] = {}
    for section, entries in rules.items():
        for rule in entries or []:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{section}: wildcard in {field}: {rule}"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants.setdefault((verb, group, resource), set()).update(SCOPES[section])
    return grants


def test_the_chart_grants_exactly_what_the_operator_sent(operator_requests: Any) -> None:
    if not operator_requests.tests:
        pytest.skip(
            "no fleet test ran in this session: run this file together with the rest of "
            "tests/operator/e2e (python -m pytest tests/operator/e2e), as CI does"
        )
    grants = chart_grants()
    sent: dict[tuple[str, str, str, bool], str] = operator_requests.sent

    ungranted = sorted(
        f"{verb} {group or 'core'}/{resource} ({'all namespaces' if cluster else 'one namespace'}; "
        f"first sent by {test})"
        for (verb, group, resource, cluster), test in sent.items()
        if cluster not in grants.get((verb, group, resource), set())
    )
    used = {(verb, group, resource) for verb, group, resource, _ in sent}
    unused = sorted(
        f"{verb} {group or 'core'}/{resource}"
        for verb, group, resource in grants
        if (verb, group, resource) not in used
    )
    problems = []
    if ungranted:
        problems.append("sent by the operator but not granted by rbac-rules.yaml:\n  " + "\n  ".join(ungranted))
    if unused:
        problems.append(
            "granted by rbac-rules.yaml but never sent by the operator in these "
            f"{len(operator_requests.tests)} fleet tests (remove the grant, or add a fleet test "
            "that exercises the code path that needs it):\n  " + "\n  ".join(unused)
        )
        if operator_requests.truncated:
            problems.append(f"(the audit log overflowed in {operator_requests.truncated}: early requests are missing)")
    assert not problems, "\n".join(problems)
