"""Closed-loop gRPC load generator: `c` Predictions calls in flight on ONE grpc.aio channel.

serving.py runs it as its own process per point (so its CPU is not the server's): warm-up, then a
measured window whose edges are also where the server's process tree and the machine are sampled
(procstats.py). Every reply is checked against the expected output from the pool file (payloads.py),
or only for its shape (--check shape, for the echo server). `--protocol oip` sends Open Inference
Protocol ModelInfer calls with raw FP32 tensors instead (oip_messages.py; `--check echo` for the OIP
echo floor, whose reply must hold the input's bytes). Prints one JSON object on stdout.
It never retries a failed call (a failure is an error of the point) and never runs unbounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from modelfleet.protos import inference_pb2, inference_pb2_grpc, open_inference_pb2_grpc

import oip_messages
import procstats

ATOL = 1e-4
RTOL = 1e-3
"""Tolerance of a reply against the locally computed output (batched and single-sample float sums
differ in the last bits)."""
MAX_ERROR_SAMPLES = 5


def check_reply(prediction: bytes, expected: list[float] | None, width: int) -> str | None:
    """None when the reply is right; else what is wrong with it."""
    try:
        got = json.loads(prediction)
    except ValueError:
        return f"reply is not JSON: {prediction[:60]!r}"
    if not isinstance(got, list) or len(got) != width:
        return f"reply is not a list of {width} numbers: {prediction[:60]!r}"
    if expected is None:
        return None
    try:
        for value, want in zip(got, expected):
            if not abs(value - want) <= ATOL + RTOL * abs(want):
                return f"reply {got} differs from the expected {expected}"
    except TypeError:
        return f"reply holds a non-number: {prediction[:60]!r}"
    return None


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class Load:
    """Shared state of the `c` callers: window flags, latencies, error counts."""

    def __init__(self, args: argparse.Namespace, pool: dict[str, Any]) -> None:
        self.args = args
        self.payloads = [p.encode() for p in pool["payloads"]]
        self.expected: list[list[float]] | list[None] = (
            pool["expected"] if args.check == "exact" else [None] * len(self.payloads)
        )
        # OIP requests are built once per payload (client-side work, kept out of the hot loop).
        self.oip_requests = (
            [oip_messages.infer_request(args.model, p) for p in pool["payloads"]] if args.protocol == "oip" else []
        )
        self.width = int(pool["width"])
        self.next_index = args.offset
        self.measuring = False
        self.stopping = False
        self.latencies: list[float] = []
        self.calls = 0
        self.errors = 0
        self.error_samples: list[str] = []
        token = Path(args.token_file).read_text().split()[0] if args.token_file else None
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None

    def _error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append(message)

    async def oip_caller(self, stub: Any) -> None:
        args = self.args
        echo = args.check == "echo"
        while not self.stopping:
            index = self.next_index % len(self.oip_requests)
            self.next_index += 1
            request = self.oip_requests[index]
            started = time.perf_counter()
            try:
                reply = await stub.ModelInfer(request, metadata=self.metadata, timeout=args.call_timeout)
            except grpc.aio.AioRpcError as exc:
                self.calls += 1
                self._error(f"{exc.code().name}: {(exc.details() or '')[:200]}")
                continue
            elapsed = time.perf_counter() - started
            self.calls += 1
            problem = oip_messages.check_reply(reply, request, self.expected[index], self.width, echo=echo)
            if problem is not None:
                self._error(problem)
            elif self.measuring:
                self.latencies.append(elapsed)

    async def caller(self, stub: Any) -> None:
        args = self.args
        while not self.stopping:
            index = self.next_index % len(self.payloads)
            self.next_index += 1
            request = inference_pb2.PredictionsRequest(model_name=args.model, input={"data": self.payloads[index]})
            started = time.perf_counter()
            try:
                reply = await stub.Predictions(request, metadata=self.metadata, timeout=args.call_timeout)
            except grpc.aio.AioRpcError as exc:
                self.calls += 1
                self._error(f"{exc.code().name}: {(exc.details() or '')[:200]}")
                continue
            elapsed = time.perf_counter() - started
            self.calls += 1
            problem = check_reply(reply.prediction, self.expected[index], self.width)
            if problem is not None:
                self._error(problem)
            elif self.measuring:
                self.latencies.append(elapsed)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pool = json.loads(Path(args.pool).read_text())
    load = Load(args, pool)
    async with grpc.aio.insecure_channel(args.target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=args.connect_timeout)
        if args.protocol == "oip":
            stub = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)
            callers = [asyncio.create_task(load.oip_caller(stub)) for _ in range(args.concurrency)]
        else:
            stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
            callers = [asyncio.create_task(load.caller(stub)) for _ in range(args.concurrency)]
        try:
            await asyncio.sleep(args.warmup)
            tree0 = procstats.sample_tree(args.server_pid, memory=False) if args.server_pid else None
            machine0, client0, t0 = procstats.sample_machine(), time.process_time(), time.perf_counter()
            load.measuring = True
            await asyncio.sleep(args.duration)
            load.measuring = False
            t1, client1, machine1 = time.perf_counter(), time.process_time(), procstats.sample_machine()
            tree1 = procstats.sample_tree(args.server_pid) if args.server_pid else None
            load.stopping = True
            # In-flight calls end within their deadline; the outer bound is serving.py's timeout.
            await asyncio.wait_for(asyncio.gather(*callers), timeout=args.call_timeout + 5)
        finally:
            load.stopping = True
            for task in callers:
                task.cancel()
    window = t1 - t0
    ok = len(load.latencies)
    latencies = sorted(load.latencies)
    result: dict[str, Any] = {
        "ok": ok,
        "calls": load.calls,
        "window_s": round(window, 4),
        "rps": ok / window if window > 0 else math.nan,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p90_ms": percentile(latencies, 90) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "mean_ms": (sum(latencies) / ok * 1e3) if ok else math.nan,
        "errors": load.errors,
        "error_samples": load.error_samples,
        "client_cores": (client1 - client0) / window if window > 0 else math.nan,
        "machine_busy_cores": procstats.machine_busy_cores(machine0, machine1),
        "cpus": machine1.cpus,
        "loadavg_1m": machine1.loadavg_1m,
    }
    if tree0 is not None and tree1 is not None:
        cpu = procstats.tree_cpu_seconds(tree0, tree1)
        result.update(
            server_cores=cpu / window if window > 0 else math.nan,
            server_cpu_ms_per_req=(cpu / ok * 1e3) if ok else math.nan,
            server_rss_bytes=tree1.rss_bytes,
            server_pss_bytes=tree1.pss_bytes,
            server_processes=len(tree1.cpu_ticks),
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the inference API")
    parser.add_argument("--model", required=True)
    parser.add_argument("--pool", required=True, help="payload pool file written by payloads.py")
    parser.add_argument("--concurrency", "-c", type=int, default=1, help="calls in flight on one channel")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before the window")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the measured window")
    parser.add_argument(
        "--protocol", choices=("predictions", "oip"), default="predictions", help="TorchServe JSON or OIP raw tensors"
    )
    parser.add_argument("--check", choices=("exact", "shape", "echo"), default="exact", help="echo: OIP only")
    parser.add_argument("--token-file", default=None, help="file whose first word is the inference token")
    parser.add_argument("--server-pid", type=int, default=0, help="root of the server's process tree")
    parser.add_argument("--offset", type=int, default=0, help="first payload index (varies between points)")
    parser.add_argument("--call-timeout", type=float, default=30.0)
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    args = parser.parse_args()
    if args.check == "echo" and args.protocol != "oip":
        parser.error("--check echo is for --protocol oip")
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
