"""kopf (the operator's framework) runs against the local API: CRD posted at run time, handlers,
status through the subresource, finalizers and adoption with owner uids."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import kopf
import pytest

from modelfleet.local.apiserver import RunningApi, run_apiserver

from mf_polling import eventually

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/example.io/v1/namespaces/default/widgets"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
async def running(widget_crd: dict) -> AsyncIterator[tuple[RunningApi, kopf.Memo]]:
    async with run_apiserver() as api:
        widget_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"][
            "x-kubernetes-preserve-unknown-fields"
        ] = True  # kopf keeps its progress in status
        response = await api.emulator.post(CRDS, json=widget_crd)
        assert response.status == 201
        registry = kopf.OperatorRegistry()

        @kopf.on.login(registry=registry)
        def login(**_: object) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=api.url, default_namespace="default")

        @kopf.on.create("example.io", "v1", "widgets", registry=registry)
        async def create(body: kopf.Body, name: str, patch: kopf.Patch, **_: object) -> None:
            child = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"{name}-cfg"},
                "data": {"size": body["spec"]["size"]},
            }
            kopf.adopt(child, owner=body)
            created = await api.emulator.post(CONFIGMAPS, json=child)
            assert created.status == 201
            patch.status["phase"] = "Created"

        @kopf.on.delete("example.io", "v1", "widgets", registry=registry)
        async def delete(name: str, memo: kopf.Memo, **_: object) -> None:
            memo.deleted.append(name)

        settings = kopf.OperatorSettings()
        memo = kopf.Memo(deleted=[])
        stop, ready = asyncio.Event(), asyncio.Event()
        tasks = await kopf.spawn_tasks(
            registry=registry,
            settings=settings,
            clusterwide=True,
            standalone=True,
            stop_flag=stop,
            ready_flag=ready,
            memo=memo,
        )
        async with asyncio.timeout(10):
            await ready.wait()
        yield api, memo
        stop.set()
        async with asyncio.timeout(10):
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _eventually(predicate, timeout: float = 10.0) -> None:
    await eventually(predicate, timeout=timeout)


async def test_kopf_handles_create_and_delete_with_finalizer_and_adoption(running):
    api, memo = running
    store = api.store
    widgets = store.type_of("example.io", "widgets")
    configmaps = store.type_of("", "configmaps")
    response = await api.emulator.post(
        WIDGETS,
        json={"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "small"}},
    )
    assert response.status == 201
    await _eventually(lambda: (store.find(widgets, "default", "w") or {}).get("status", {}).get("phase") == "Created")
    widget = store.get(widgets, "default", "w")
    assert widget["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
    assert widget["metadata"]["generation"] == 1
    child = store.get(configmaps, "default", "w-cfg")
    assert child["metadata"]["ownerReferences"][0]["uid"] == widget["metadata"]["uid"]

    await api.emulator.delete(f"{WIDGETS}/w")
    await _eventually(lambda: store.find(widgets, "default", "w") is None)
    assert memo.deleted == ["w"]
    assert store.find(configmaps, "default", "w-cfg") is None  # garbage-collected with its owner
    kopf_writes = api.emulator.audit.writes(user_agent="kopf")
    assert kopf_writes and all(w.code < 300 for w in kopf_writes)
