"""A Secret volume on the local kubelet behaves as on a real node: while the Secret is missing the pod
stays Pending in ContainerCreating and a Warning event FailedMount says why (nothing runs); once it
exists every key is a file in the mounted folder, and a changed Secret replaces those files in place
(the `..data` swap) under the running process, which is how object-store keys rotate without a restart."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from modelfleet.local import podstatus

SECRET = "model-store-credentials"


def _data(**values: str) -> dict[str, str]:
    return {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}


def _pod(fleet) -> dict | None:
    pods = [p for p in fleet.client.list(fleet.client.type("", "pods"), "default") if not podstatus.is_terminating(p)]
    return pods[0] if len(pods) == 1 else None


def _failed_mounts(fleet, pod: dict) -> list[dict]:
    events = fleet.client.list(fleet.client.type("", "events"), "default")
    return [e for e in events if e["reason"] == "FailedMount" and e["involvedObject"]["uid"] == pod["metadata"]["uid"]]


async def test_a_missing_secret_holds_the_pod_in_container_creating_until_it_exists_then_keys_rotate_in_place(
    fleet, deployment, podserver_container, wait, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    container = podserver_container(extra_args=["--dump=/out/dump.json", "--credentials=/etc/creds"])
    container["volumeMounts"] = [
        {"name": "storage-credentials", "mountPath": "/etc/creds", "readOnly": True},
        {"name": "out", "mountPath": "/out"},
    ]
    volumes = [
        {"name": "storage-credentials", "secret": {"secretName": SECRET, "defaultMode": 0o440}},
        {"name": "out", "hostPath": {"path": str(out)}},
    ]
    client = fleet.client
    client.create(client.type("apps", "deployments"), "default", deployment(container=container, volumes=volumes))

    pod = await wait(lambda: (p := _pod(fleet)) and _failed_mounts(fleet, p) and p, what="a FailedMount event")
    (event,) = _failed_mounts(fleet, pod)
    assert event["type"] == "Warning" and event["source"]["component"] == "kubelet"
    assert (
        event["message"] == f'MountVolume.SetUp failed for volume "storage-credentials" : secret "{SECRET}" not found'
    )
    pod = _pod(fleet)
    assert pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["PodReadyToStartContainers"] == "False" and conditions["Ready"] == "False"
    assert not (out / "dump.json").exists()  # no container started

    client.create(
        client.type("", "secrets"),
        "default",
        {"metadata": {"name": SECRET}, "data": _data(AWS_ACCESS_KEY_ID="id-1", AWS_SECRET_ACCESS_KEY="key-1")},
    )
    pod = await wait(lambda: (p := _pod(fleet)) and podstatus.is_ready(p) and p, what="the pod running")
    dump = json.loads((out / "dump.json").read_text())
    folder = Path(next(a for a in dump["argv"] if a.startswith("--credentials=")).split("=", 1)[1])
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("..")) == [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    assert (folder / "AWS_SECRET_ACCESS_KEY").read_text() == "key-1"
    assert oct((folder / "AWS_SECRET_ACCESS_KEY").stat().st_mode & 0o777) == oct(0o440)
    assert os.readlink(folder / "AWS_SECRET_ACCESS_KEY") == "..data/AWS_SECRET_ACCESS_KEY"
    assert len(_failed_mounts(fleet, pod)) == 1  # one event per cause, not one per retry

    # Rotation: the Secret is rewritten to the other layout; the running process sees new files.
    rotated = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}
    rotated.update(_data(credentials="[default]\naws_access_key_id = id-2\n"))
    client.patch(client.type("", "secrets"), "default", SECRET, {"data": rotated})
    await wait(lambda: (folder / "credentials").is_file(), what="the rotated files")
    assert "id-2" in (folder / "credentials").read_text()
    assert not (folder / "AWS_ACCESS_KEY_ID").exists()  # keys that went away are gone
    assert _pod(fleet)["status"]["containerStatuses"][0]["restartCount"] == 0
