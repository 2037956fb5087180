"""Turn the raw records of oip.py into the side-by-side table, the ratios and the OIP issue's targets.

Pure functions over plain dicts (what oip.py writes with --json-out), so a saved run can be
re-printed with `python benchmarks/oip_report.py results.json`. The points table is report.py's
(same columns as serving.py); every ratio is computed inside each run (same noise for both sides)
and the median over runs is shown and judged. "Theirs" is the better of MLServer and KServe at
that point and for that figure (higher req/s, lower latency, CPU and RSS).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import report

COMPETITORS = ("mlserver", "kserve")
JSON_KEY = "modelfleet-json"
LOWER_IS_BETTER = {
    "rps": False,
    "p50_ms": True,
    "p99_ms": True,
    "server_cpu_ms_per_req": True,
    "server_rss_bytes": True,
}
UNITS = {"rps": "req/s", "p50_ms": "ms", "p99_ms": "ms", "server_cpu_ms_per_req": "ms/req", "server_rss_bytes": "B"}

RatioFn = Callable[[dict[str, Any], int], "tuple[float, str] | None"]


def _value(point: dict[str, Any], field: str) -> float | None:
    value = point.get(field)
    return float(value) if value is not None else None


def _show(field: str, value: float) -> str:
    if field == "server_rss_bytes":
        return f"{value / 2**20:.0f} MB"
    return f"{report._fmt(value, 3 if field == 'server_cpu_ms_per_req' else 2)} {UNITS[field]}"


def vs_best(
    model: str, c: int, field: str, *, ours: str = "modelfleet", theirs: tuple[str, ...] = COMPETITORS
) -> RatioFn:
    """ours/best-of-theirs for one run, with the values it came from; None when a side lacks data."""

    def ratio(data: dict[str, Any], run: int) -> tuple[float, str] | None:
        mine = report._point(data, run, ours, model, c)
        found = [
            (v, key)
            for key in theirs
            if (p := report._point(data, run, key, model, c)) is not None and (v := _value(p, field)) is not None
        ]
        if mine is None or _value(mine, field) is None or not found:
            return None
        best, key = (min if LOWER_IS_BETTER[field] else max)(found)
        value = _value(mine, field)
        assert value is not None
        if best == 0:
            return None
        return value / best, f"{_show(field, value)} vs {_show(field, best)}, {data['labels'].get(key, key)}"

    return ratio


def _median_ratio(data: dict[str, Any], fn: RatioFn) -> tuple[float, list[tuple[int, tuple[float, str]]]]:
    per_run = [(run, r) for run in range(data["runs"]) if (r := fn(data, run)) is not None]
    return report._median(r[0] for _, r in per_run), per_run


def ratios_table(data: dict[str, Any]) -> list[str]:
    """ModelFleet OIP / best of MLServer and KServe per point, and ModelFleet OIP / its own JSON path."""
    fields = ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_req", "server_rss_bytes")
    header = ["model", "c", "vs", "req/s ×", "p50 ×", "p99 ×", "srv CPU/req ×", "srv RSS ×"]
    rows = []
    for model in data["models"]:
        for c in data["concurrency"]:
            for label, theirs in (
                ("best of MLServer, KServe", COMPETITORS),
                ("ModelFleet JSON (same process)", (JSON_KEY,)),
            ):
                cells = [report._fmt(_median_ratio(data, vs_best(model, c, f, theirs=theirs))[0]) for f in fields]
                if any(cell != "-" for cell in cells):
                    rows.append([model, str(c), label, *cells])
    return report._table(header, rows, align_left=3)


def lifecycle_table(data: dict[str, Any]) -> list[str]:
    header = ["system", "spawn→every model answers s", "processes", "CPUs allowed", "register→1st good (ModelFleet) s"]
    rows = []
    for system in data["systems"]:
        records = [r for r in data["lifecycle"] if r["system"] == system and "start_s" in r]
        if not records:
            continue
        registers = [
            f"{m} {report._fmt(report._median(r.get('register_s', {}).get(m) for r in records))}"
            for m in data["models"]
        ]
        rows.append(
            [
                data["labels"].get(system, system),
                report._fmt(report._median(r["start_s"] for r in records)),
                ",".join(sorted({str(r.get("server_processes", "-")) for r in records})),
                " ".join(sorted({cpus for r in records for cpus in r.get("affinity", [])})) or "-",
                ", ".join(registers) if system == "modelfleet" else "-",
            ]
        )
    return report._table(header, rows)


@dataclass(frozen=True)
class Target:
    text: str
    limit: float
    higher_is_better: bool
    ratio: RatioFn


def targets(data: dict[str, Any]) -> list[Target]:
    found = []
    cs, models = data["concurrency"], data["models"]
    for model in models:
        if 32 in cs:
            found.append(
                Target(f"c=32 req/s {model} ≥ 1.5× best of MLServer, KServe", 1.5, True, vs_best(model, 32, "rps"))
            )
    for model in models:
        if 1 in cs:
            found.append(
                Target(f"c=1 p50 {model} ≤ 0.7× best of MLServer, KServe", 0.7, False, vs_best(model, 1, "p50_ms"))
            )
    for model in models:
        for c in cs:
            found.append(
                Target(
                    f"c={c} server CPU/req {model} ≤ 0.7× best of MLServer, KServe",
                    0.7,
                    False,
                    vs_best(model, c, "server_cpu_ms_per_req"),
                )
            )
    if "mlp" in models:
        if 32 in cs:
            found.append(
                Target(
                    "c=32 req/s mlp: OIP raw ≥ 1.0× ModelFleet's JSON path",
                    1.0,
                    True,
                    vs_best("mlp", 32, "rps", theirs=(JSON_KEY,)),
                )
            )
        if 1 in cs:
            found.append(
                Target(
                    "c=1 p50 mlp: OIP raw ≤ 1.0× ModelFleet's JSON path",
                    1.0,
                    False,
                    vs_best("mlp", 1, "p50_ms", theirs=(JSON_KEY,)),
                )
            )
    return found


def targets_section(data: dict[str, Any]) -> tuple[list[str], int]:
    """Lines of the targets section and the number of targets missed (n/a is not a miss)."""
    lines = ["Targets (OIP issue): ratio inside each run, median over runs"]
    missed = judged = 0
    for target in targets(data):
        ratio, per_run = _median_ratio(data, target.ratio)
        if not per_run:
            lines.append(f"  [n/a ] {target.text}: no data (a system was not run or failed)")
            continue
        ok = ratio >= target.limit if target.higher_is_better else ratio <= target.limit
        missed += not ok
        judged += 1
        middle = sorted(per_run, key=lambda item: item[1][0])[(len(per_run) - 1) // 2]
        detail = middle[1][1]
        if len(per_run) > 1:
            detail += f" in run {middle[0] + 1}; ratios per run: " + " ".join(f"{r[0]:.2f}" for _, r in per_run)
        lines.append(f"  [{'PASS' if ok else 'MISS'}] {target.text}: {ratio:.2f}×  ({detail})")
    lines.append(f"  {judged - missed} of {judged} targets met" + (f", {missed} missed" if missed else ""))
    return lines, missed


def render(data: dict[str, Any]) -> tuple[str, int]:
    """The whole report, and the number of targets missed."""
    pinning = data.get("pinning")
    pin_text = (
        f"server pinned to CPU {','.join(map(str, pinning['server']))}, load generator to CPU "
        f"{','.join(map(str, pinning['client']))}"
        if pinning
        else "no CPU pinning"
    )
    head = (
        f"OIP benchmark: inference.GRPCInferenceService/ModelInfer over loopback, raw FP32 tensors [1, n], c calls in "
        f"flight on one channel; {data['runs']} run(s), median shown; window {data['duration']:g} s after "
        f"{data['warmup']:g} s warm-up per point; {data.get('cpus', '?')} CPUs, {pin_text}. "
        f"'other cores' = busy − server − client (max over runs; ! = noisy). ModelFleet JSON = the same process over "
        f"TorchServe Predictions with JSON input."
    )
    lines = [head, ""]
    lines += report.points_table(data)
    lines += [
        "",
        "Ratios (ModelFleet OIP / the other side; inside each run, median over runs; < 1 is better except req/s)",
    ]
    lines += ratios_table(data)
    lines += ["", "Start (median over runs)"]
    lines += lifecycle_table(data)
    lines += report.failure_lines(data)
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
