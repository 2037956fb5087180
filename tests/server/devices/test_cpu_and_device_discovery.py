"""Worker and thread defaults follow the CPUs the pod may use and the devices it can see."""

from __future__ import annotations

import os
from pathlib import Path

from modelfleet.server.models import devices


def test_cgroup_v2_quota_limits_usable_cpus(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    affinity = len(os.sched_getaffinity(0))
    assert devices.usable_cpus(cgroup_root=tmp_path) == min(affinity, 2)


def test_unlimited_cgroup_falls_back_to_cpu_affinity(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert devices.usable_cpus(cgroup_root=tmp_path) == len(os.sched_getaffinity(0))


def test_cgroup_v1_quota_is_read_too(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert devices.usable_cpus(cgroup_root=tmp_path) == 1


def test_visible_cuda_devices_become_worker_placements() -> None:
    assert devices.visible_devices(None, cuda_count=lambda: 3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert devices.visible_devices(None, cuda_count=lambda: 0) == ["cpu"]
    assert devices.visible_devices(("cuda:1",), cuda_count=lambda: 3) == ["cuda:1"]


def test_default_workers_are_gpus_else_cpus() -> None:
    assert devices.default_worker_count(["cuda:0", "cuda:1"], cpus=16) == 2
    assert devices.default_worker_count(["cpu"], cpus=4) == 4


def test_intra_op_threads_share_the_cpus_between_workers() -> None:
    assert devices.intra_op_threads(cpus=8, busy_workers=2) == 4
    assert devices.intra_op_threads(cpus=2, busy_workers=4) == 1
    assert devices.intra_op_threads(cpus=2, busy_workers=0) == 2
    assert devices.device_index("cuda:3") == 3 and devices.device_index("cpu") is None
