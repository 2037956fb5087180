"""On the local fleet, Ready and readyReplicas follow what the pods serve: a healthy cut-over and a
blocked one (a version that cannot load) never take them away while the old default serves
everywhere, and the blocked one posts one Warning, not one per pod and condition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.slow

V1 = {"version": "1.0", "url": "tiny.pt#version=1.0"}
V2 = {"version": "2.0", "url": "tiny2.pt#version=2.0"}
MISSING = {"version": "3.0", "url": "missing.pt#version=3.0"}


async def test_cutovers_healthy_and_blocked_keep_the_fleet_ready(product: Any, poll: Callable[..., Any]) -> None:
    await product.start_operator()
    await product.create(replicas=2, models=[{"name": "tiny", "versions": [V1]}])
    await poll(lambda: product.ready(replicas=2, summary="tiny:1.0"), timeout=90)
    samples: list[tuple[str, int, str, str]] = []
    stop = asyncio.Event()

    async def watch() -> None:
        for _ in range(100_000):  # bounded; stopped by the event long before
            if stop.is_set():
                return
            st = (await product.md()).get("status") or {}
            by = {c["type"]: c for c in st.get("conditions") or []}
            samples.append(
                (
                    by["Ready"]["status"],
                    st.get("readyReplicas", 0),
                    st.get("modelsSummary", ""),
                    by["Degraded"]["reason"],
                )
            )
            await asyncio.sleep(0)  # yield only: the GET above paces the loop

    watching = asyncio.create_task(watch())
    await product.patch_spec({"models": [{"name": "tiny", "versions": [V1, V2], "defaultVersion": "2.0"}]})
    await poll(lambda: product.ready(replicas=2, summary="tiny:2.0"), timeout=90)
    warnings_before = [e for e in await product.kube.list_objects("Event", "default") if e["type"] == "Warning"]

    await product.patch_spec({"models": [{"name": "tiny", "versions": [V2, MISSING], "defaultVersion": "3.0"}]})

    async def blocked() -> bool:
        return (await product.condition("Progressing")).get("reason") == "BlockedByFailedLoad" and (
            await product.condition("Degraded")
        ).get("reason") == "ModelLoadFailed"

    await poll(blocked, timeout=60)
    start = product.runtime.resyncs
    await poll(lambda: product.runtime.resyncs >= start + 2, timeout=10)  # settled: later passes add nothing
    stop.set()
    await watching

    assert warnings_before == []
    assert any(summary == "tiny:1.0->2.0" for _, _, summary, _ in samples), "no sample caught the cut-over"
    assert any(reason == "ModelLoadFailed" for *_, reason in samples)
    assert [s for s in samples if s[:2] != ("True", 2)] == []  # Ready and 2 ready replicas throughout
    assert (await product.md())["status"]["modelsSummary"] == "tiny:2.0->3.0"
    warnings = [e for e in await product.kube.list_objects("Event", "default") if e["type"] == "Warning"]
    assert [(e["reason"], e["count"]) for e in warnings] == [("ModelLoadFailed", 1)]
    assert len(warnings[0]["message"]) <= 200
