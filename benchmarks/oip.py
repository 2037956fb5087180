"""The OIP benchmark's one command: ModelFleet, MLServer, KServe and a grpc.aio echo over Open Inference gRPC.

    python benchmarks/oip.py --runs 3 --duration 6

Every system serves the same seeded TorchScript files (tiny, mlp) and gets byte-identical
ModelInfer requests with raw FP32 tensors (oip_messages.py). Per run, each system in turn (the
order rotates between runs) is started with the server pinned to --server-cpus (its workers
inherit it), timed until every model answers right, warmed up, measured at every (model, c) point
by loadgen.py pinned to --client-cpus, and stopped by PID. ModelFleet's points are each followed by
the same point over its TorchServe Predictions JSON API (same process): the raw-vs-JSON comparison.
Exit status 0 only when every selected system ran every point with no error.
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

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import oip_report  # noqa: E402
import oip_systems  # noqa: E402
import payloads  # noqa: E402
import report  # noqa: E402
import systems  # noqa: E402

SYSTEM_KEYS = ("modelfleet", "mlserver", "kserve", "echo")
MLSERVER_BATCH_TIME_MS = 5.0
"""MLServer's max_batch_time, chosen from a short sweep on this machine (benchmarks/RESULTS.md, OIP section)."""
MLSERVER_WORKERS = 0
"""MLServer's parallel_workers, chosen by the same sweep (0 = inference in the server process)."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_list(text: str) -> set[int]:
    return {int(part) for part in text.split(",") if part.strip()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--runs", type=int, default=3, help="runs; each point shows the median over runs")
    p.add_argument("--duration", type=float, default=6.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each point's window")
    p.add_argument("--start-warmup", type=float, default=2.0, help="seconds of c=8 load per model after a start")
    p.add_argument("--systems", default=",".join(SYSTEM_KEYS), help=f"comma list of {', '.join(SYSTEM_KEYS)}")
    p.add_argument("--models", default="tiny,mlp")
    p.add_argument("--concurrency", default="1,8,32", help="comma list of calls in flight")
    p.add_argument("--no-json", action="store_true", help="skip ModelFleet's Predictions-JSON comparison points")
    p.add_argument("--batch-size", type=int, default=32, help="ModelFleet and MLServer max batch size")
    p.add_argument("--max-batch-delay", type=int, default=5, help="ms; ModelFleet (as serving.py)")
    p.add_argument("--mf-workers", type=int, default=0, help="ModelFleet initial_workers (0 = its default)")
    p.add_argument("--mlserver-batch-time", type=float, default=MLSERVER_BATCH_TIME_MS, help="ms; max_batch_time")
    p.add_argument("--mlserver-workers", type=int, default=MLSERVER_WORKERS, help="MLServer parallel_workers")
    p.add_argument("--kserve-grpc-threads", type=int, default=4, help="KServe max_threads (its default)")
    p.add_argument(
        "--pin",
        choices=("auto", "on", "off"),
        default="auto",
        help="taskset-style CPU pinning of server and load generator (auto: on when both CPU sets are ours)",
    )
    p.add_argument("--server-cpus", default="1", help="CPUs of the server's process tree when pinned")
    p.add_argument("--client-cpus", default="0", help="CPUs of the load generator when pinned")
    p.add_argument("--call-timeout", type=float, default=30.0, help="deadline of each call")
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
    server_cpus, client_cpus = cpu_list(args.server_cpus), cpu_list(args.client_cpus)
    ours = os.sched_getaffinity(0)
    usable = server_cpus <= ours and client_cpus <= ours and not server_cpus & client_cpus
    if args.pin == "on" and not usable:
        p.error(f"cannot pin: server {sorted(server_cpus)} / client {sorted(client_cpus)} vs our CPUs {sorted(ours)}")
    args.pinned = args.pin == "on" or (args.pin == "auto" and usable)
    args.server_cpu_set = server_cpus if args.pinned else None
    args.client_cpu_set = client_cpus if args.pinned else None
    return args


def make_systems(args: argparse.Namespace, fixture: systems.Fixture) -> list[oip_systems.OipSystem]:
    cpus = args.server_cpu_set
    made: dict[str, oip_systems.OipSystem] = {
        "modelfleet": oip_systems.ModelFleet(
            fixture,
            cpus=cpus,
            batch_size=args.batch_size,
            max_batch_delay_ms=args.max_batch_delay,
            workers=args.mf_workers,
        ),
        "mlserver": oip_systems.MLServer(
            fixture,
            cpus=cpus,
            batch_size=args.batch_size,
            batch_time_ms=args.mlserver_batch_time,
            parallel_workers=args.mlserver_workers,
        ),
        "kserve": oip_systems.KServe(fixture, cpus=cpus, grpc_threads=args.kserve_grpc_threads),
        "echo": oip_systems.Echo(fixture, cpus=cpus),
    }
    return [made[key] for key in args.systems]


def run_loadgen(
    system: oip_systems.OipSystem,
    model: str,
    *,
    protocol: str,
    c: int,
    warmup: float,
    duration: float,
    offset: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One point in its own (pinned) process; the result dict, or {"failed": why}."""
    check = system.check if protocol == "oip" else "exact"
    command = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        f"--protocol={protocol}",
        f"--target={system.target}",
        f"--model={model}",
        f"--pool={system.fixture.pools[model]}",
        f"--concurrency={c}",
        f"--warmup={warmup}",
        f"--duration={duration}",
        f"--check={check}",
        f"--server-pid={system.pid}",
        f"--offset={offset}",
        f"--call-timeout={args.call_timeout}",
    ]
    if system.token_file is not None:
        command.append(f"--token-file={system.token_file}")
    bound = warmup + duration + args.call_timeout + 60  # every point ends, whatever the server does
    try:
        with oip_systems.affinity(args.client_cpu_set):
            done = subprocess.run(command, capture_output=True, text=True, timeout=bound)
    except subprocess.TimeoutExpired:
        return {"failed": f"load generator still running after {bound:.0f}s; killed"}
    if done.returncode != 0:
        return {"failed": f"load generator exit {done.returncode}: {done.stderr.strip()[-500:]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(
    system: oip_systems.OipSystem,
    key: str,
    protocol: str,
    run: int,
    args: argparse.Namespace,
    data: dict[str, Any],
    *,
    model: str,
    m_index: int,
    c: int,
) -> None:
    offset = (run * 7919 + m_index * 104729 + c * 31) % args.pool_size
    point = run_loadgen(
        system, model, protocol=protocol, c=c, warmup=args.warmup, duration=args.duration, offset=offset, args=args
    )
    point.update(run=run, system=key, model=model, c=c, protocol=protocol)
    data["points"].append(point)
    label = data["labels"][key]
    if "failed" in point:
        log(f"  {label} {model} c={c}: FAILED {point['failed']}")
    else:
        log(
            f"  {label} {model} c={c}: {point['rps']:.0f} req/s p50 {point['p50_ms']:.2f} ms "
            f"p99 {point['p99_ms']:.2f} ms errors {point['errors']} "
            f"cpu {point.get('server_cpu_ms_per_req', math.nan):.3f} ms/req busy {point['machine_busy_cores']:.2f}"
        )


def run_system(system: oip_systems.OipSystem, run: int, args: argparse.Namespace, data: dict[str, Any]) -> None:
    record: dict[str, Any] = {"run": run, "system": system.key}
    data["lifecycle"].append(record)
    keys = [(system.key, "oip")]
    if system.json_key and not args.no_json:
        keys.append((system.json_key, "predictions"))
    try:
        assert system.fixture.workdir is not None
        record["start_s"] = system.start(system.fixture.workdir / f"run{run + 1}-{system.key}")
        record["affinity"] = oip_systems.tree_affinity(system.pid)
        if isinstance(system, oip_systems.ModelFleet):
            record["register_s"], record["workers"] = dict(system.registered), dict(system.workers)
        log(
            f"  {system.label}: every model answers after {record['start_s']:.2f}s (pid {system.pid}, "
            f"CPUs {','.join(record['affinity'])})"
        )
        for model in args.models:
            for _, protocol in keys:
                warm = run_loadgen(
                    system, model, protocol=protocol, c=8, warmup=0, duration=args.start_warmup, offset=0, args=args
                )
                if "failed" in warm or warm["errors"]:
                    raise RuntimeError(f"warm-up on {model} failed: {warm.get('failed') or warm['error_samples']}")
        for m_index, model in enumerate(args.models):
            for c in args.concurrency:
                for key, protocol in keys:  # OIP then JSON, back to back: same drift for both
                    measure(system, key, protocol, run, args, data, model=model, m_index=m_index, c=c)
        record["server_processes"] = max(
            (p.get("server_processes", 0) for p in data["points"] if p["run"] == run and p["system"] == system.key),
            default=0,
        )
    except Exception as exc:  # report and go on with the next system; never retry
        record["failed"] = f"{type(exc).__name__}: {exc}"
        log(f"  {system.label}: FAILED {record['failed']}")
        for key, _ in keys:
            for model in args.models:
                for c in args.concurrency:
                    if not any(
                        (p["run"], p["system"], p["model"], p["c"]) == (run, key, model, c) for p in data["points"]
                    ):
                        data["points"].append(
                            {"run": run, "system": key, "model": model, "c": c, "failed": record["failed"]}
                        )
    finally:
        system.stop()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modelfleet-oip-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "benchmark": "oip",
        "runs": args.runs,
        "duration": args.duration,
        "warmup": args.warmup,
        "start_warmup": args.start_warmup,
        "models": args.models,
        "concurrency": args.concurrency,
        "systems": [],
        "cpus": os.cpu_count(),
        "pinning": {"server": sorted(args.server_cpu_set), "client": sorted(args.client_cpu_set)}
        if args.pinned
        else None,
        "points": [],
        "lifecycle": [],
        "unavailable": {},
        "labels": {},
        "settings": {
            "mlserver_batch_time_ms": args.mlserver_batch_time,
            "mlserver_workers": args.mlserver_workers,
            "batch_size": args.batch_size,
            "max_batch_delay_ms": args.max_batch_delay,
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "argv": sys.argv,
    }
    try:
        log(f"workdir {workdir}; pinning: {data['pinning'] or 'off'}")
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
            data["systems"].append(system.key)
            data["labels"][system.key] = system.label
            if isinstance(system, oip_systems.ModelFleet) and not args.no_json:
                data["systems"].append(system.json_key)
                data["labels"][system.json_key] = system.json_label
        available = []
        for system in chosen:
            why = system.unavailable()
            if why:
                data["unavailable"][system.key] = why
                if system.json_key in data["labels"]:
                    data["unavailable"][system.json_key] = why
                log(f"{system.label}: unavailable ({why})")
            else:
                available.append(system)
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
    text, _ = oip_report.render(data)
    print(text, flush=True)
    return 1 if report.any_failure(data) else 0


if __name__ == "__main__":
    sys.exit(main())
