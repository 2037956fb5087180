"""The serving benchmark's one command: every system side by side, one table, the issue's targets.

    python benchmarks/serving.py --runs 3 --duration 10

Per run, each system in turn (the order rotates between runs, so drift hits all alike) is started
(start → healthy timed), gets both models registered (RegisterModel(synchronous) → first good
prediction timed), is warmed up, then measured at every (model, c) point by loadgen.py in its own
process, has one model scaled up and down by a worker (timed), and is stopped by PID. Points are
bounded in time; a failed system is reported, never retried. Loopback only; all files under a
temp dir. Exit status 0 only when every system ran every point with no error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import payloads  # noqa: E402
import report  # noqa: E402
import systems  # noqa: E402

SYSTEM_KEYS = ("modelfleet", "torchserve", "torchserve-batched", "echo")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--runs", type=int, default=3, help="runs; each point shows the median over runs")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each point's window")
    p.add_argument(
        "--ts-warmup",
        type=float,
        default=10.0,
        help="seconds of load per model after TorchServe starts (its JVM needs ~10 s to warm up)",
    )
    p.add_argument(
        "--start-warmup", type=float, default=1.0, help="seconds of load per model after the other systems start"
    )
    p.add_argument("--systems", default=",".join(SYSTEM_KEYS), help=f"comma list of {', '.join(SYSTEM_KEYS)}")
    p.add_argument("--models", default="tiny,mlp")
    p.add_argument("--concurrency", default="1,8,32", help="comma list of calls in flight")
    p.add_argument("--batch-size", type=int, default=32, help="ModelFleet and batched TorchServe")
    p.add_argument("--max-batch-delay", type=int, default=5, help="ms; ModelFleet and batched TorchServe")
    p.add_argument("--mf-workers", type=int, default=0, help="ModelFleet initial_workers (0 = its default)")
    p.add_argument("--ts-workers", type=int, default=2, help="unbatched TorchServe workers per model")
    p.add_argument("--ts-batched-workers", type=int, default=2, help="batched TorchServe workers per model")
    p.add_argument("--call-timeout", type=float, default=30.0, help="deadline of each Predictions call")
    p.add_argument("--pool-size", type=int, default=payloads.DEFAULT_POOL_SIZE)
    p.add_argument("--seed", type=int, default=0, help="model weights seed (payloads use seed+1)")
    p.add_argument("--json-out", type=Path, default=None, help="also write every raw record here")
    p.add_argument("--workdir", type=Path, default=None, help="default: a new temp dir, removed afterwards")
    p.add_argument("--keep-workdir", action="store_true", help="keep server logs and files")
    args = p.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEM_KEYS)
    if unknown:
        p.error(f"unknown systems {sorted(unknown)}; choose from {SYSTEM_KEYS}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    return args


def make_systems(args: argparse.Namespace, fixture: systems.Fixture) -> list[systems.System]:
    made: dict[str, systems.System] = {
        "modelfleet": systems.ModelFleet(
            fixture,
            warmup_s=args.start_warmup,
            workers=args.mf_workers,
            batch_size=args.batch_size,
            max_batch_delay_ms=args.max_batch_delay,
        ),
        "torchserve": systems.TorchServe(
            fixture, warmup_s=args.ts_warmup, workers=args.ts_workers, batch_size=1, max_batch_delay_ms=100
        ),
        "torchserve-batched": systems.TorchServe(
            fixture,
            warmup_s=args.ts_warmup,
            workers=args.ts_batched_workers,
            batch_size=args.batch_size,
            max_batch_delay_ms=args.max_batch_delay,
        ),
        "echo": systems.Echo(fixture, warmup_s=args.start_warmup),
    }
    return [made[key] for key in args.systems]


def run_loadgen(
    system: systems.System, model: str, *, c: int, warmup: float, duration: float, offset: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One point in its own process; the result dict, or {"failed": why}."""
    assert system.endpoint is not None
    command = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--target",
        system.endpoint.inference,
        "--model",
        model,
        "--pool",
        str(system.fixture.pools[model]),
        "--concurrency",
        str(c),
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
        "--check",
        system.check,
        "--server-pid",
        str(system.pid),
        "--offset",
        str(offset),
        "--call-timeout",
        str(args.call_timeout),
    ]
    if system.token_file is not None:
        command += ["--token-file", str(system.token_file)]
    bound = warmup + duration + args.call_timeout + 60  # every point ends, whatever the server does
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=bound)
    except subprocess.TimeoutExpired:
        return {"failed": f"load generator still running after {bound:.0f}s; killed"}
    if done.returncode != 0:
        return {"failed": f"load generator exit {done.returncode}: {done.stderr.strip()[-500:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_system(system: systems.System, run: int, args: argparse.Namespace, data: dict[str, Any]) -> None:
    record: dict[str, Any] = {"run": run, "system": system.key}
    data["lifecycle"].append(record)
    workdir = system.fixture.workdir / f"run{run + 1}-{system.key}"
    try:
        record["start_s"] = system.start(workdir)
        log(f"  {system.label}: healthy after {record['start_s']:.2f}s (pid {system.pid})")
        if system.manages_models:
            record["register_s"] = {}
            for model in args.models:
                record["register_s"][model] = system.register(model)
                log(
                    f"  {system.label}: {model} registered → first good prediction in "
                    f"{record['register_s'][model]:.2f}s ({system.workers[model]} workers)"
                )
            record["workers"] = dict(system.workers)
        for model in args.models:
            warm = run_loadgen(system, model, c=8, warmup=0, duration=system.warmup_s, offset=0, args=args)
            if "failed" in warm or warm["errors"]:
                raise RuntimeError(f"warm-up on {model} failed: {warm.get('failed') or warm['error_samples']}")
        for m_index, model in enumerate(args.models):
            for c in args.concurrency:
                offset = (run * 7919 + m_index * 104729 + c * 31) % args.pool_size
                point = run_loadgen(
                    system, model, c=c, warmup=args.warmup, duration=args.duration, offset=offset, args=args
                )
                point.update(run=run, system=system.key, model=model, c=c)
                data["points"].append(point)
                if "failed" in point:
                    log(f"  {system.label} {model} c={c}: FAILED {point['failed']}")
                else:
                    log(
                        f"  {system.label} {model} c={c}: {point['rps']:.0f} req/s p50 {point['p50_ms']:.2f} ms "
                        f"p99 {point['p99_ms']:.2f} ms errors {point['errors']} "
                        f"cpu {point.get('server_cpu_ms_per_req', math.nan):.3f} ms/req "
                        f"busy {point['machine_busy_cores']:.2f}"
                    )
        if system.manages_models:
            record["scale_up_s"], record["scale_down_s"] = system.scale_probe(args.models[0])
            log(f"  {system.label}: ScaleWorker +1 {record['scale_up_s']:.2f}s, -1 {record['scale_down_s']:.2f}s")
    except Exception as exc:  # report and go on with the next system; never retry
        if isinstance(exc, grpc.RpcError):
            record["failed"] = f"{exc.code().name}: {exc.details()}"
        else:
            record["failed"] = f"{type(exc).__name__}: {exc}"
        log(f"  {system.label}: FAILED {record['failed']}")
        for model in args.models:
            for c in args.concurrency:
                if not any(
                    (p["run"], p["system"], p["model"], p["c"]) == (run, system.key, model, c) for p in data["points"]
                ):
                    data["points"].append(
                        {"run": run, "system": system.key, "model": model, "c": c, "failed": record["failed"]}
                    )
    finally:
        system.stop()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modelfleet-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "runs": args.runs,
        "duration": args.duration,
        "warmup": args.warmup,
        "ts_warmup": args.ts_warmup,
        "models": args.models,
        "concurrency": args.concurrency,
        "systems": args.systems,
        "cpus": os.cpu_count(),
        "points": [],
        "lifecycle": [],
        "unavailable": {},
        "labels": {},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "argv": sys.argv,
    }
    try:
        log(f"workdir {workdir}")
        models = payloads.write_models(workdir / "models", seed=args.seed)
        models = {name: path for name, path in models.items() if name in args.models}
        pools = {
            name: payloads.write_pool(
                models[name], name, workdir / f"pool-{name}.json", seed=args.seed + 1, size=args.pool_size
            )
            for name in args.models
        }
        fixture = systems.Fixture(workdir, models, pools)
        chosen = make_systems(args, fixture)
        for system in chosen:
            data["labels"][system.key] = system.label
        available = []
        for system in chosen:
            why = system.unavailable()
            if why:
                data["unavailable"][system.key] = why
                log(f"{system.label}: unavailable ({why})")
            else:
                available.append(system)
        if any(isinstance(s, systems.TorchServe) for s in available):
            fixture.mar_store = workdir / "ts_store"
            systems.ts_ctl.build_mars(models, fixture.mar_store)
        for run in range(args.runs):
            shift = run % max(1, len(available))
            for system in available[shift:] + available[:shift]:
                log(f"[run {run + 1}/{args.runs}] {system.label}")
                run_system(system, run, args, data)
    finally:
        if args.json_out:
            args.json_out.write_text(json.dumps(data, indent=1))
        if not args.keep_workdir and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    text, missed = report.render(data)
    print(text, flush=True)
    return 1 if report.any_failure(data) else 0


if __name__ == "__main__":
    sys.exit(main())
