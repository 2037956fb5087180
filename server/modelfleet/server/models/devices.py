"""Which CPUs and devices this process may use, and how torch threads are sized from them.

Called by the registry (worker placement) and the app (defaults). Counts come from the cgroup
quota and CPU affinity, not the host's core count: a pod limited to 2 CPUs on a 64-core node
must not start 64 workers or 64 intra-op threads. torch is imported lazily, never at import time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_quota_cpus(root: Path) -> float | None:
    """CPUs allowed by the cgroup CPU quota (v2 cpu.max, else v1 cfs), or None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def usable_cpus(*, cgroup_root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process may use: min(affinity, ceil(cgroup quota)), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota_cpus(cgroup_root)
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cuda_device_count() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def visible_devices(
    configured: Sequence[str] | None, *, cuda_count: Callable[[], int] = _cuda_device_count
) -> list[str]:
    """Devices workers are placed on round-robin: the configured list, else every CUDA device, else cpu.

    `cuda_count` is the seam tests inject device lists through (no GPU here).
    """
    if configured:
        return list(configured)
    count = cuda_count()
    return [f"cuda:{index}" for index in range(count)] if count > 0 else ["cpu"]


def default_worker_count(devices: Sequence[str], cpus: int) -> int:
    """TorchServe's default_workers_per_model: the number of GPUs, else of usable CPUs."""
    gpus = sum(1 for device in devices if device.startswith("cuda"))
    return gpus if gpus else cpus


def intra_op_threads(cpus: int, busy_workers: int) -> int:
    """Torch intra-op threads so that all workers together use about the CPUs we have, never fewer than 1."""
    return max(1, cpus // max(1, busy_workers))


def device_index(device: str) -> int | None:
    """CUDA index of "cuda:N", None for cpu."""
    if device.startswith("cuda"):
        _, _, index = device.partition(":")
        return int(index or 0)
    return None
