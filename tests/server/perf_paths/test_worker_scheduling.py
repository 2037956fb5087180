"""Worker threads give way to the event loop: on Linux they run under SCHED_BATCH (no wake-up
preemption of the loop thread), the loop thread and the rest of the process keep their policy,
and such workers still answer at once when nothing else is running (no waiting for a batch)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from modelfleet.server.models.contracts import RegisterSpec

import mf_domain_harness as h


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_BATCH is Linux's")
async def test_workers_run_under_sched_batch_and_the_event_loop_keeps_its_policy(
    registries: Any, tiny_model: Path
) -> None:
    registry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=2))
    workers = registry.get("tiny").pool.workers
    policies = {os.sched_getscheduler(worker.thread_id) for worker in workers if worker.thread_id is not None}
    assert policies == {os.SCHED_BATCH}
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER

    rows = h.seeded_rows(1, seed=8)
    answer = await h.predict(registry, "tiny", h.rows_json(rows[0]))
    assert torch.allclose(h.as_tensor(answer), h.eager()(rows)[0], atol=1e-5)
