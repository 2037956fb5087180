"""The local kubelet and service proxy: probes set readiness, liveness and crashes restart processes,
Services reach ready pods only, and mounted ConfigMaps/Secrets update in place with the `..data` swap."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path

from modelfleet.local import podstatus


def _pods(fleet) -> list[dict]:
    return fleet.client.list(fleet.client.type("", "pods"), "default")


def _one_pod(fleet) -> dict | None:
    pods = [p for p in _pods(fleet) if not podstatus.is_terminating(p)]
    return pods[0] if len(pods) == 1 else None


def _status(pod: dict) -> dict:
    return pod["status"]["containerStatuses"][0]


async def _ask(address: str) -> str:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        return (await asyncio.wait_for(reader.read(), 5)).decode()
    finally:
        writer.close()
        await writer.wait_closed()


def _service(name: str = "web") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "whoami", "port": 80, "targetPort": "whoami"}]},
    }


async def test_readiness_probe_gates_ready_and_the_service_forwards_only_to_ready_pods(
    fleet, deployment, podserver_container, wait, tmp_path
):
    flags = tmp_path / "flags"
    flags.mkdir()
    container = podserver_container(extra_args=["--not-ready-if=/flags/$(HOSTNAME).not-ready"])
    container["volumeMounts"] = [{"name": "flags", "mountPath": "/flags"}]
    container["env"].append({"name": "HOSTNAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    body = deployment(replicas=2, container=container, volumes=[{"name": "flags", "hostPath": {"path": str(flags)}}])
    fleet.client.create(fleet.client.type("apps", "deployments"), "default", body)
    service = fleet.client.create(fleet.client.type("", "services"), "default", _service())
    address = f"{service['spec']['clusterIP']}:80"
    assert address.startswith("127.100.")
    await wait(lambda: len([p for p in _pods(fleet) if podstatus.is_ready(p)]) == 2, what="2 ready pods")
    names = sorted(p["metadata"]["name"] for p in _pods(fleet))
    await wait(lambda: fleet.proxy.addresses().get(("default", "web")), what="the service listener")
    answers = {(await _ask(address)).split()[0] for _ in range(4)}
    assert answers == set(names)  # round-robin reaches both ready pods

    (flags / f"{names[0]}.not-ready").touch()
    await wait(
        lambda: not podstatus.is_ready(next(p for p in _pods(fleet) if p["metadata"]["name"] == names[0])),
        what="the flagged pod to turn not ready",
    )
    answers = {(await _ask(address)).split()[0] for _ in range(4)}
    assert answers == {names[1]}

    def endpoint_readiness() -> dict[str, bool]:
        slices = fleet.client.list(fleet.client.type("discovery.k8s.io", "endpointslices"), "default")
        return {
            e["targetRef"]["name"]: e["conditions"]["ready"]
            for s in slices
            if s["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
            for e in s["endpoints"]
        }

    await wait(lambda: endpoint_readiness() == {names[0]: False, names[1]: True}, what="the EndpointSlice")
    endpoints = fleet.client.get(fleet.client.type("", "endpoints"), "default", "web")
    assert [a["targetRef"]["name"] for a in endpoints["subsets"][0]["notReadyAddresses"]] == [names[0]]
    assert _status(next(p for p in _pods(fleet) if p["metadata"]["name"] == names[0]))["restartCount"] == 0


async def test_a_failing_liveness_probe_restarts_the_process(fleet, deployment, podserver_container, wait, tmp_path):
    flags = tmp_path / "flags"
    flags.mkdir()
    container = podserver_container(extra_args=["--dead-if=/flags/dead"])
    container["volumeMounts"] = [{"name": "flags", "mountPath": "/flags"}]
    body = deployment(container=container, volumes=[{"name": "flags", "hostPath": {"path": str(flags)}}])
    fleet.client.create(fleet.client.type("apps", "deployments"), "default", body)
    pod = await wait(lambda: (p := _one_pod(fleet)) and podstatus.is_ready(p) and p, what="a ready pod")
    first_pid = _status(pod)["containerID"]
    (flags / "dead").touch()
    restarted = await wait(lambda: (p := _one_pod(fleet)) and _status(p)["restartCount"] >= 1 and p, what="a restart")
    (flags / "dead").unlink()
    assert _status(restarted)["lastState"]["terminated"]["reason"] == "Error"
    pod = await wait(lambda: (p := _one_pod(fleet)) and podstatus.is_ready(p) and p, what="ready again")
    assert _status(pod)["containerID"] != first_pid and pod["metadata"]["name"] == restarted["metadata"]["name"]


async def test_a_crashing_process_is_restarted_with_back_off(fleet, deployment, podserver_container, wait):
    container = podserver_container(extra_args=["--exit-after=0.3"], probes=False)
    fleet.client.create(fleet.client.type("apps", "deployments"), "default", deployment(container=container))
    backing_off = await wait(
        lambda: (p := _one_pod(fleet)) and "waiting" in _status(p)["state"] and _status(p)["restartCount"] >= 1 and p,
        what="CrashLoopBackOff",
    )
    status = _status(backing_off)
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status["lastState"]["terminated"]["exitCode"] == 3
    await wait(lambda: (p := _one_pod(fleet)) and _status(p)["restartCount"] >= 2, what="a second restart")


async def test_mounted_configmap_and_secret_files_follow_updates_with_the_data_swap(
    fleet, deployment, podserver_container, wait, tmp_path
):
    client = fleet.client
    configmaps, secrets = client.type("", "configmaps"), client.type("", "secrets")
    client.create(configmaps, "default", {"metadata": {"name": "cfg"}, "data": {"models.json": '{"v": 1}'}})
    client.create(
        secrets,
        "default",
        {"metadata": {"name": "tokens"}, "data": {"management-key": base64.b64encode(b"one").decode()}},
    )
    out = tmp_path / "out"
    out.mkdir()
    container = podserver_container(
        extra_args=["--dump=/out/dump.json", "--store=/cfg/models.json"],
        env=[
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "management-key"}}},
            {"name": "TOKEN_FILE", "value": "/tokens/management"},
        ],
    )
    container["volumeMounts"] = [
        {"name": "cfg", "mountPath": "/cfg"},
        {"name": "tokens", "mountPath": "/tokens"},
        {"name": "out", "mountPath": "/out"},
    ]
    volumes = [
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {
            "name": "tokens",
            "secret": {
                "secretName": "tokens",
                "defaultMode": 0o440,
                "items": [{"key": "management-key", "path": "management"}],
            },
        },
        {"name": "out", "hostPath": {"path": str(out)}},
    ]
    client.create(client.type("apps", "deployments"), "default", deployment(container=container, volumes=volumes))
    pod = await wait(lambda: (p := _one_pod(fleet)) and podstatus.is_ready(p) and p, what="a ready pod")
    dump = json.loads((out / "dump.json").read_text())
    store_arg = next(a for a in dump["argv"] if a.startswith("--store="))
    cfg_file = Path(store_arg.split("=", 1)[1])
    token_file = Path(dump["env"]["TOKEN_FILE"])
    assert dump["env"]["TOKEN"] == "one" and dump["env"]["POD_IP"] == pod["status"]["podIP"]
    assert f"--health={pod['status']['podIP']}:9000" in dump["argv"]
    assert cfg_file.read_text() == '{"v": 1}' and token_file.read_text() == "one"
    assert os.readlink(token_file) == "..data/management"
    assert oct(token_file.stat().st_mode & 0o777) == oct(0o440)
    first_target = os.readlink(token_file.parent / "..data")

    client.patch(configmaps, "default", "cfg", {"data": {"models.json": '{"v": 2}'}})
    client.patch(secrets, "default", "tokens", {"data": {"management-key": base64.b64encode(b"two").decode()}})
    await wait(lambda: cfg_file.read_text() == '{"v": 2}' and token_file.read_text() == "two", what="updated files")
    assert os.readlink(token_file.parent / "..data") != first_target
    assert not (token_file.parent / first_target).exists()  # the old timestamped folder is gone


async def test_kubectl_logs_reads_the_container_output(fleet, deployment, podserver_container, wait):
    container = podserver_container(probes=False)
    container["command"] = ["sh", "-c", "echo hello from $(HOSTNAME); exec sleep 30"]
    container["args"] = []
    container["env"] = [{"name": "HOSTNAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    fleet.client.create(fleet.client.type("apps", "deployments"), "default", deployment(container=container))
    pod = await wait(lambda: (p := _one_pod(fleet)) and podstatus.is_ready(p) and p, what="a running pod")
    name = pod["metadata"]["name"]
    path = f"/api/v1/namespaces/default/pods/{name}/log"

    async def text() -> str:
        response = await fleet.api.emulator.get(path)
        return await response.text() if response.status == 200 else ""

    async def greeted() -> bool:
        return f"hello from {name}" in await text()

    await wait(greeted, timeout=10, what="the container's greeting in kubectl logs")
