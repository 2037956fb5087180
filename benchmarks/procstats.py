"""CPU time and memory of a server's whole process tree, and the machine's load, read from /proc.

The load generator (loadgen.py) samples at the edges of its measured window; the difference gives
server CPU ms per request (TorchServe = launcher + java frontend + python workers, all summed) and
the machine's busy cores. Linux only; reads /proc, never signals or changes a process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _read_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, utime+stime ticks, rss pages) of one process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid = field 4, utime = 14, stime = 15, rss = 24.
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[21])


def tree_pids(root: int) -> list[int]:
    """`root` and every live descendant (one scan of /proc; children found through ppid)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return [pid for pid in found if _read_stat(pid) is not None]


def _pss_bytes(pid: int) -> int:
    """Proportional set size (shared pages split between their users); 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


@dataclass(frozen=True)
class TreeSample:
    cpu_ticks: dict[int, int]
    """utime+stime per live pid of the tree."""
    rss_bytes: int
    """Sum of RSS over the tree (shared libraries count once per process, like `ps` would show)."""
    pss_bytes: int
    """Sum of PSS over the tree (shared pages divided between processes): the fairer total."""


def sample_tree(root: int, *, memory: bool = True) -> TreeSample:
    ticks: dict[int, int] = {}
    rss = pss = 0
    for pid in tree_pids(root):
        stat = _read_stat(pid)
        if stat is None:
            continue
        ticks[pid] = stat[1]
        if memory:
            rss += stat[2] * PAGE_BYTES
            pss += _pss_bytes(pid)
    return TreeSample(ticks, rss, pss)


def tree_cpu_seconds(before: TreeSample, after: TreeSample) -> float:
    """CPU seconds the tree used between two samples (a process born in between counts in full)."""
    total = 0
    for pid, ticks in after.cpu_ticks.items():
        total += ticks - before.cpu_ticks.get(pid, 0)
    return total / CLOCK_TICKS


@dataclass(frozen=True)
class MachineSample:
    busy_ticks: int
    total_ticks: int
    cpus: int
    loadavg_1m: float


def sample_machine() -> MachineSample:
    with open("/proc/stat") as fh:
        lines = fh.read().splitlines()
    values = [int(v) for v in lines[0].split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice, already inside user/nice]
    total = sum(values[:8])
    idle = values[3] + values[4]
    cpus = sum(1 for line in lines[1:] if line.startswith("cpu"))
    return MachineSample(total - idle, total, cpus, os.getloadavg()[0])


def machine_busy_cores(before: MachineSample, after: MachineSample) -> float:
    """Average number of busy CPUs between two samples (all processes of all users)."""
    total = after.total_ticks - before.total_ticks
    if total <= 0:
        return 0.0
    return (after.busy_ticks - before.busy_ticks) / total * after.cpus
