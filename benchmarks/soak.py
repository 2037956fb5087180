"""Soak: minutes of saturating load with zero errors and flat RSS, then register/unregister cycles.

Not in CI (tests/benchmarks/test_soak_smoke.py runs it for seconds). Run by hand:
`.venv/bin/python benchmarks/soak.py` (10 minutes at c=32 on the demo mlp model, 1,000 cycles).
Load: loadgen.py in its own process (checked replies, closed loop) against a token-auth
`python -m modelfleet.server` (server_process.py); this process samples the server's VmRSS every
few seconds. Cycles: RegisterModel(tiny, synchronous) → one checked prediction → UnregisterModel,
RSS compared after warm-up cycles and at the end. Exit 1 on any error or a bound missed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from modelfleet.protos import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc

import loadgen
import payloads
from server_process import ServerProcess

BENCH = Path(__file__).resolve().parent
CYCLE_GROWTH = 0.10
"""RSS after the cycles may exceed RSS after the warm-up cycles by this fraction."""
LOAD_GROWTH = 0.10
"""End-of-load RSS may exceed the RSS at the later of 1 minute and a quarter of the load by this fraction
(the first minute fills caches and batch buffers; growth after it is what a leak looks like)."""
WARMUP_CYCLES = 10


@dataclass
class Samples:
    times: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)

    def slope_mib_per_min(self) -> float:
        """Least-squares slope of RSS over time."""
        n = len(self.times)
        if n < 2:
            return 0.0
        mean_t, mean_r = sum(self.times) / n, sum(self.rss_kib) / n
        var = sum((t - mean_t) ** 2 for t in self.times)
        cov = sum((t - mean_t) * (r - mean_r) for t, r in zip(self.times, self.rss_kib))
        return (cov / var) / 1024 * 60 if var else 0.0


def sample_while(server: ServerProcess, done: threading.Event, every_s: float, out: Samples) -> None:
    started = time.monotonic()
    while True:
        out.times.append(time.monotonic() - started)
        out.rss_kib.append(server.rss_kib())
        if done.wait(every_s):
            return


def saturate(
    server: ServerProcess, pool: Path, token_file: Path, *, minutes: float, concurrency: int, every_s: float
) -> tuple[dict[str, object], Samples]:
    """loadgen.py for `minutes` in its own process while RSS is sampled here."""
    samples = Samples()
    done = threading.Event()
    sampler = threading.Thread(target=sample_while, args=(server, done, every_s, samples), daemon=True)
    command = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--target",
        server.inference,
        "--model",
        "mlp",
        "--pool",
        str(pool),
        "--concurrency",
        str(concurrency),
        "--warmup",
        "1",
        "--duration",
        str(minutes * 60),
        "--token-file",
        str(token_file),
        "--server-pid",
        str(server.pid),
    ]
    sampler.start()
    try:
        done_run = subprocess.run(command, capture_output=True, text=True, timeout=minutes * 60 + 120, check=False)
    finally:
        done.set()
        sampler.join()
    if done_run.returncode != 0:
        raise RuntimeError(f"loadgen failed: {done_run.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done_run.stdout)
    return result, samples


def cycles(server: ServerProcess, count: int, *, payload: str, expected: list[float]) -> tuple[int, int, int, float]:
    """(errors, RSS after warm-up cycles, RSS at the end, seconds per cycle) for `count` cycles."""
    errors = 0
    rss_after_warmup = 0
    register = management_pb2.RegisterModelRequest(
        url="tiny.pt", model_name="soak-cycle", initial_workers=1, synchronous=True
    )
    unregister = management_pb2.UnregisterModelRequest(model_name="soak-cycle")
    predict = inference_pb2.PredictionsRequest(model_name="soak-cycle", input={"data": payload.encode()})
    started = time.monotonic()
    with grpc.insecure_channel(server.management) as mchannel, grpc.insecure_channel(server.inference) as ichannel:
        management = management_pb2_grpc.ManagementAPIsServiceStub(mchannel)
        inference = inference_pb2_grpc.InferenceAPIsServiceStub(ichannel)
        mmeta, imeta = server.tokens.metadata("management"), server.tokens.metadata("inference")
        for number in range(WARMUP_CYCLES + count):
            if number == WARMUP_CYCLES:
                rss_after_warmup = server.rss_kib()
                started = time.monotonic()
            try:
                management.RegisterModel(register, metadata=mmeta, timeout=60)
                reply = inference.Predictions(predict, metadata=imeta, timeout=30)
                if loadgen.check_reply(reply.prediction, expected, len(expected)) is not None:
                    errors += 1
                management.UnregisterModel(unregister, metadata=mmeta, timeout=60)
            except grpc.RpcError as error:
                errors += 1
                print(f"cycle {number}: {error.code().name} {error.details()}", file=sys.stderr)
    seconds = (time.monotonic() - started) / max(count, 1)
    return errors, rss_after_warmup, server.rss_kib(), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of saturating load")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight (saturates 2 cores)")
    parser.add_argument("--cycles", type=int, default=1000, help="register/unregister cycles")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mf-soak-"))
    models = payloads.write_models(workdir / "store")
    pool = payloads.write_pool(models["mlp"], "mlp", workdir / "mlp-pool.json")
    tiny_pool = json.loads(payloads.write_pool(models["tiny"], "tiny", workdir / "tiny-pool.json", size=1).read_text())
    server = ServerProcess(workdir / "server", workdir / "store")
    failures: list[str] = []
    try:
        server.wait_started()
        with grpc.insecure_channel(server.management) as channel:
            management_pb2_grpc.ManagementAPIsServiceStub(channel).RegisterModel(
                management_pb2.RegisterModelRequest(
                    url="mlp.pt", model_name="mlp", batch_size=32, max_batch_delay=5, synchronous=True
                ),
                metadata=server.tokens.metadata("management"),
                timeout=120,
            )
        load, samples = saturate(
            server,
            pool,
            server.workdir / "inference.token",
            minutes=args.minutes,
            concurrency=args.concurrency,
            every_s=args.sample_s,
        )
        errors, rss_before, rss_after, per_cycle = cycles(
            server, args.cycles, payload=tiny_pool["payloads"][0], expected=tiny_pool["expected"][0]
        )
    finally:
        server.stop()
    rss = samples.rss_kib
    first = min(len(rss) - 1, max(1, int(60 / args.sample_s), len(rss) // 4))
    settled = rss[first]
    after_settle = Samples(samples.times[first:], rss[first:])  # the ramp-up is not a trend
    mib = lambda kib: kib / 1024  # noqa: E731
    print(f"{'part':<28}{'figure':>14}")
    rows = [
        ("load: minutes, c", f"{args.minutes:g}, {args.concurrency}"),
        ("load: calls / errors", f"{load['calls']:,} / {load['errors']}"),
        ("load: req/s, p99 ms", f"{load['rps']:,.0f}, {load['p99_ms']:.1f}"),
        ("load: RSS start MiB", f"{mib(rss[0]):,.0f}"),
        ("load: RSS settled MiB", f"{mib(settled):,.0f}"),
        ("load: RSS peak MiB", f"{mib(max(rss)):,.0f}"),
        ("load: RSS end MiB", f"{mib(rss[-1]):,.0f}"),
        ("load: RSS slope MiB/min", f"{after_settle.slope_mib_per_min():+.2f}"),
        ("cycles: count / errors", f"{args.cycles:,} / {errors}"),
        ("cycles: ms per cycle", f"{per_cycle * 1000:.0f}"),
        ("cycles: RSS before MiB", f"{mib(rss_before):,.0f}"),
        ("cycles: RSS after MiB", f"{mib(rss_after):,.0f}"),
    ]
    for part, figure in rows:
        print(f"{part:<28}{figure:>14}")
    if load["errors"]:
        failures.append(f"{load['errors']} errors under load: {load['error_samples']}")
    if rss[-1] > settled * (1 + LOAD_GROWTH):
        failures.append(f"RSS under load grew from {mib(settled):.0f} to {mib(rss[-1]):.0f} MiB")
    if errors:
        failures.append(f"{errors} errors in register/unregister cycles")
    if rss_after > rss_before * (1 + CYCLE_GROWTH):
        failures.append(f"RSS after the cycles {mib(rss_after):.0f} MiB > {mib(rss_before):.0f} MiB + 10 %")
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
