"""Every server pod knows its own UID (downward API) and hands it to the server as --pod-uid, so the
operator can check who answers at a pod address before it sends the management token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelfleet.operator import children
from modelfleet.operator.spec import parse_spec
from modelfleet.server.cli import parse_settings


def test_the_server_container_gets_its_pod_uid_from_the_downward_api_as_the_servers_setting(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    (container,) = children.deployment(parse_spec(make_md()))["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env[children.POD_UID_ENV]["valueFrom"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.uid"}}
    # The variable is the server's own: what the kubelet puts there becomes its pod_uid.
    uid = "3f1c2a9e-5b7d-4c1e-9a0b-1234567890ab"
    assert parse_settings([], {children.POD_UID_ENV: uid}).network.pod_uid == uid
