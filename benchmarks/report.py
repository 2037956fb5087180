"""Turn the raw records of serving.py into the side-by-side table and the issue's target checks.

Pure functions over plain dicts (the same records serving.py writes with --json-out), so a saved
run can be re-printed with `python benchmarks/report.py results.json`. Every figure is the median
over runs; target ratios are computed inside each run (same noise for both systems), then the
median of those ratios is compared with the target.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOISY_OTHER_CORES = 0.3
"""A point is flagged `!` when other processes (not server, not load generator) kept more than this
many cores busy during its window in some run."""

TS_KEYS = ("torchserve", "torchserve-batched")


def _median(values: Iterable[float | None]) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def _fmt(value: float, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def other_cores(point: dict[str, Any]) -> float:
    """Cores used by everything but the server and the load generator during the window."""
    if "machine_busy_cores" not in point:
        return math.nan
    return max(0.0, point["machine_busy_cores"] - point.get("server_cores", 0.0) - point.get("client_cores", 0.0))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align_left: int = 1) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        parts = [str(c).ljust(w) if i < align_left else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(parts).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(row) for row in rows]


def points_table(data: dict[str, Any]) -> list[str]:
    labels = data["labels"]
    header = [
        "model",
        "c",
        "system",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "errors",
        "srv CPU ms/req",
        "srv cores",
        "srv RSS MB",
        "client cores",
        "busy cores",
        "other cores",
        "load1",
    ]
    rows = []
    for model in data["models"]:
        for c in data["concurrency"]:
            for system in data["systems"]:
                points = [p for p in data["points"] if (p["system"], p["model"], p["c"]) == (system, model, c)]
                good = [p for p in points if "failed" not in p]
                label = labels.get(system, system)
                if not good:  # why is listed under the lifecycle table
                    state = "unavailable" if system in data.get("unavailable", {}) else "failed"
                    rows.append([model, str(c), label, state, *["-"] * 11])
                    continue
                errors = sum(p["errors"] for p in points if "errors" in p) + (len(points) - len(good))
                noisy = max(other_cores(p) for p in good)
                rows.append(
                    [
                        model,
                        str(c),
                        label,
                        _fmt(_median(p["rps"] for p in good), 0),
                        _fmt(_median(p["p50_ms"] for p in good)),
                        _fmt(_median(p["p90_ms"] for p in good)),
                        _fmt(_median(p["p99_ms"] for p in good)),
                        str(errors),
                        _fmt(_median(p.get("server_cpu_ms_per_req") for p in good), 3),
                        _fmt(_median(p.get("server_cores") for p in good)),
                        _fmt(_median(p.get("server_rss_bytes", math.nan) / 2**20 for p in good), 0),
                        _fmt(_median(p["client_cores"] for p in good)),
                        _fmt(_median(p["machine_busy_cores"] for p in good)) + f"/{good[0]['cpus']}",
                        _fmt(noisy) + (" !" if noisy > NOISY_OTHER_CORES else ""),
                        _fmt(max(p["loadavg_1m"] for p in good)),
                    ]
                )
    return _table(header, rows, align_left=3)


def lifecycle_table(data: dict[str, Any]) -> list[str]:
    labels = data["labels"]
    models = data["models"]
    header = [
        "system",
        "start→healthy s",
        *[f"register→1st good {m} s" for m in models],
        f"ScaleWorker +1 {models[0]} s",
        f"ScaleWorker -1 {models[0]} s",
        "workers/model",
    ]
    rows = []
    for system in data["systems"]:
        records = [r for r in data["lifecycle"] if r["system"] == system and "start_s" in r]
        if not records:
            continue
        workers = sorted({w for r in records for w in r.get("workers", {}).values()})
        rows.append(
            [
                labels.get(system, system),
                _fmt(_median(r["start_s"] for r in records)),
                *[_fmt(_median(r.get("register_s", {}).get(m) for r in records)) for m in models],
                _fmt(_median(r.get("scale_up_s") for r in records)),
                _fmt(_median(r.get("scale_down_s") for r in records)),
                ",".join(map(str, workers)) or "-",
            ]
        )
    return _table(header, rows)


@dataclass(frozen=True)
class Target:
    text: str
    limit: float
    higher_is_better: bool
    ratio: Callable[[dict[str, Any], int], tuple[float, str] | None]
    """(ratio, detail) for one run, or None when that run lacks the data."""


def _point(data: dict[str, Any], run: int, system: str, model: str, c: int) -> dict[str, Any] | None:
    for p in data["points"]:
        if (p["run"], p["system"], p["model"], p["c"]) == (run, system, model, c) and "failed" not in p:
            return p
    return None


def _vs_torchserve_best(
    model: str, c: int, field_name: str, *, lower_is_better: bool, unit: str
) -> Callable[[dict[str, Any], int], tuple[float, str] | None]:
    def ratio(data: dict[str, Any], run: int) -> tuple[float, str] | None:
        ours = _point(data, run, "modelfleet", model, c)
        theirs = [(p[field_name], key) for key in TS_KEYS if (p := _point(data, run, key, model, c)) is not None]
        if ours is None or not theirs:
            return None
        best, key = (min if lower_is_better else max)(theirs)
        return ours[
            field_name
        ] / best, f"{_fmt(ours[field_name])} vs {_fmt(best)} {unit}, {data['labels'].get(key, key)}"

    return ratio


def _vs_system(
    model: str, c: int, field_name: str, other: str
) -> Callable[[dict[str, Any], int], tuple[float, str] | None]:
    def ratio(data: dict[str, Any], run: int) -> tuple[float, str] | None:
        ours, theirs = _point(data, run, "modelfleet", model, c), _point(data, run, other, model, c)
        if ours is None or theirs is None or field_name not in ours or field_name not in theirs:
            return None
        return ours[field_name] / theirs[
            field_name
        ], f"{_fmt(ours[field_name], 3)} vs {_fmt(theirs[field_name], 3)} ms/req, {data['labels'].get(other, other)}"

    return ratio


def _peak_rss(data: dict[str, Any], run: int, system: str) -> float | None:
    values = [
        p["server_rss_bytes"]
        for p in data["points"]
        if p["run"] == run and p["system"] == system and "server_rss_bytes" in p
    ]
    return max(values) if values else None


def _rss_ratio(data: dict[str, Any], run: int) -> tuple[float, str] | None:
    ours = _peak_rss(data, run, "modelfleet")
    theirs = [(v, key) for key in TS_KEYS if (v := _peak_rss(data, run, key)) is not None]
    if ours is None or not theirs:
        return None
    best, key = min(theirs)
    return ours / best, f"{ours / 2**20:.0f} vs {best / 2**20:.0f} MB, {data['labels'].get(key, key)}"


def _register_ratio(model: str) -> Callable[[dict[str, Any], int], tuple[float, str] | None]:
    def ratio(data: dict[str, Any], run: int) -> tuple[float, str] | None:
        def seconds(system: str) -> float | None:
            for r in data["lifecycle"]:
                if r["run"] == run and r["system"] == system:
                    value = r.get("register_s", {}).get(model)
                    return float(value) if value is not None else None
            return None

        ours = seconds("modelfleet")
        theirs = [(v, key) for key in TS_KEYS if (v := seconds(key)) is not None]
        if ours is None or not theirs:
            return None
        best, key = min(theirs)
        return ours / best, f"{ours:.2f} vs {best:.2f} s, {data['labels'].get(key, key)}"

    return ratio


def targets(data: dict[str, Any]) -> list[Target]:
    found = []
    cs = data["concurrency"]
    for model in data["models"]:
        if 1 in cs:
            found.append(
                Target(
                    f"c=1 p50 {model} ≤ 0.8× TorchServe best",
                    0.8,
                    False,
                    _vs_torchserve_best(model, 1, "p50_ms", lower_is_better=True, unit="ms"),
                )
            )
    for model in data["models"]:
        if 32 in cs:
            limit = 1.3 if model == "mlp" else 1.1
            found.append(
                Target(
                    f"c=32 req/s {model} ≥ {limit}× TorchServe best",
                    limit,
                    True,
                    _vs_torchserve_best(model, 32, "rps", lower_is_better=False, unit="req/s"),
                )
            )
            found.append(
                Target(
                    f"c=32 p99 {model} ≤ 0.7× TorchServe best",
                    0.7,
                    False,
                    _vs_torchserve_best(model, 32, "p99_ms", lower_is_better=True, unit="ms"),
                )
            )
    if 32 in cs and "tiny" in data["models"]:
        found.append(
            Target(
                "c=32 server CPU/req tiny ≤ 1.2× echo",
                1.2,
                False,
                _vs_system("tiny", 32, "server_cpu_ms_per_req", "echo"),
            )
        )
    if 32 in cs and "mlp" in data["models"]:
        found.append(
            Target(
                "c=32 server CPU/req mlp ≤ 0.8× TorchServe batched",
                0.8,
                False,
                _vs_system("mlp", 32, "server_cpu_ms_per_req", "torchserve-batched"),
            )
        )
    found.append(Target("server RSS (peak) ≤ 0.5× TorchServe's process tree", 0.5, False, _rss_ratio))
    for model in data["models"]:
        found.append(
            Target(f"register→1st good prediction {model} ≤ 0.3× TorchServe", 0.3, False, _register_ratio(model))
        )
    return found


def targets_section(data: dict[str, Any]) -> tuple[list[str], int]:
    """Lines of the targets section and the number of targets missed (n/a is not a miss)."""
    lines = [
        "Targets (issue 6): ModelFleet vs TorchServe's best setting per point; ratio inside each run, median over runs"
    ]
    missed = judged = 0
    for target in targets(data):
        per_run = [(run, r) for run in range(data["runs"]) if (r := target.ratio(data, run)) is not None]
        if not per_run:
            lines.append(f"  [n/a ] {target.text}: no data (a system was not run or failed)")
            continue
        ratio = _median(r[0] for _, r in per_run)
        ok = ratio >= target.limit if target.higher_is_better else ratio <= target.limit
        missed += not ok
        # The values of the run whose ratio is the median (the lower middle one for an even count).
        middle = sorted(per_run, key=lambda item: item[1][0])[(len(per_run) - 1) // 2]
        detail = middle[1][1]
        if len(per_run) > 1:
            detail += f" in run {middle[0] + 1}; ratios per run: " + " ".join(f"{r[0]:.2f}" for _, r in per_run)
        lines.append(f"  [{'PASS' if ok else 'MISS'}] {target.text}: {ratio:.2f}×  ({detail})")
        judged += 1
    lines.append(f"  {judged - missed} of {judged} targets met" + (f", {missed} missed" if missed else ""))
    return lines, missed


def failure_lines(data: dict[str, Any]) -> list[str]:
    """One line per system that was unavailable and per lifecycle step that failed (first line of each why)."""
    lines = [
        f"{data['labels'].get(system, system)}: unavailable ({why.splitlines()[0]})"
        for system, why in data.get("unavailable", {}).items()
    ]
    for record in data["lifecycle"]:
        if record.get("failed"):
            lines.append(
                f"run {record['run'] + 1} {data['labels'].get(record['system'], record['system'])}: "
                f"failed: {record['failed'].splitlines()[0][:200]}"
            )
    return lines


def any_failure(data: dict[str, Any]) -> bool:
    """Whether a run is a failure: a system unavailable, a lifecycle step failed, or a point failed or erred."""
    return (
        bool(data["unavailable"])
        or any(r.get("failed") for r in data["lifecycle"])
        or any("failed" in p or p.get("errors") for p in data["points"])
    )


def render(data: dict[str, Any]) -> tuple[str, int]:
    """The whole report, and the number of targets missed."""
    ts_note = (
        f" (and {data.get('ts_warmup', 0):g} s per model after TorchServe starts)"
        if any(key in data["systems"] for key in TS_KEYS)
        else ""
    )
    head = (
        f"Serving benchmark: gRPC Predictions over loopback, JSON input, c calls in flight on one channel; "
        f"{data['runs']} run(s), median shown; window {data['duration']:g} s after {data['warmup']:g} s warm-up "
        f"per point{ts_note}; "
        f"{data.get('cpus', '?')} CPUs. 'other cores' = busy − server − client (max over runs; ! = noisy)."
    )
    lines = [head, ""]
    lines += points_table(data)
    lines += ["", "Lifecycle (median over runs)"]
    lines += lifecycle_table(data)
    lines += failure_lines(data)
    target_lines, missed = targets_section(data)
    lines += [""] + target_lines
    return "\n".join(lines), missed


def main() -> int:
    data = json.loads(Path(sys.argv[1]).read_text())
    text, _ = render(data)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
