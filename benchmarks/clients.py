"""Timed TorchServe-API management probes shared by every system: healthy, register, scale, stop.

Called by systems.py (and torchserve/ts_ctl.py) with plain blocking grpc stubs, outside the load
points. Every probe polls a condition with a deadline and checks replies: a registration counts
as done only at the first prediction that matches the locally computed output.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import empty_pb2

from modelfleet.protos import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc

import loadgen

POLL_S = 0.02
"""Pause between polls of a condition (short against the times measured)."""


@dataclass(frozen=True)
class Endpoint:
    inference: str
    management: str | None
    inference_token: str | None = None
    management_token: str | None = None

    def metadata(self, which: str) -> tuple[tuple[str, str], ...] | None:
        token = self.inference_token if which == "inference" else self.management_token
        return (("authorization", f"Bearer {token}"),) if token else None


def wait_healthy(endpoint: Endpoint, *, timeout_s: float, alive: Any = None) -> float:
    """Seconds until Ping answers {"status": "Healthy"}; `alive()` False aborts (process died)."""
    t0 = time.perf_counter()
    deadline = t0 + timeout_s
    last = "no answer"
    with grpc.insecure_channel(endpoint.inference) as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        while time.perf_counter() < deadline:
            if alive is not None and not alive():
                raise RuntimeError(f"server exited before it was healthy (last: {last})")
            try:
                reply = stub.Ping(empty_pb2.Empty(), metadata=endpoint.metadata("inference"), timeout=2)
                if json.loads(reply.health).get("status") == "Healthy":
                    return time.perf_counter() - t0
                last = reply.health
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            except ValueError:
                last = f"Ping reply is not JSON: {reply.health!r}"
            time.sleep(POLL_S)
    raise RuntimeError(f"not healthy within {timeout_s:g}s (last: {last})")


def first_good_prediction(
    endpoint: Endpoint, model: str, payload: str, expected: list[float] | None, *, width: int, deadline: float
) -> None:
    """Retry Predictions until a reply passes the load generator's check (the model may be warming)."""
    last = "no answer"
    request = inference_pb2.PredictionsRequest(model_name=model, input={"data": payload.encode()})
    with grpc.insecure_channel(endpoint.inference) as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        while time.perf_counter() < deadline:
            try:
                reply = stub.Predictions(request, metadata=endpoint.metadata("inference"), timeout=10)
                problem = loadgen.check_reply(reply.prediction, expected, width)
                if problem is None:
                    return
                last = problem
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            time.sleep(POLL_S)
    raise RuntimeError(f"{model}: no good prediction before the deadline (last: {last})")


def describe_workers(stub: Any, endpoint: Endpoint, model: str) -> list[dict[str, Any]]:
    reply = stub.DescribeModel(
        management_pb2.DescribeModelRequest(model_name=model), metadata=endpoint.metadata("management"), timeout=10
    )
    described = json.loads(reply.msg)
    entry = described[0] if isinstance(described, list) else described
    return list(entry.get("workers", []))


def wait_ready_workers(stub: Any, endpoint: Endpoint, model: str, want: int, *, deadline: float) -> None:
    workers: list[dict[str, Any]] = []
    while time.perf_counter() < deadline:
        try:
            workers = describe_workers(stub, endpoint, model)
        except grpc.RpcError:
            workers = []
        if len(workers) == want and all(w.get("status") == "READY" for w in workers):
            return
        time.sleep(POLL_S)
    raise RuntimeError(f"{model}: {want} READY workers not reached: {workers}")


@dataclass(frozen=True)
class Registration:
    model: str
    url: str
    workers: int
    batch_size: int
    max_batch_delay_ms: int


def register(
    endpoint: Endpoint, reg: Registration, *, payload: str, expected: list[float] | None, width: int, timeout_s: float
) -> float:
    """Seconds from RegisterModel(synchronous) to the first good prediction."""
    assert endpoint.management is not None
    t0 = time.perf_counter()
    with grpc.insecure_channel(endpoint.management) as channel:
        stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
        stub.RegisterModel(
            management_pb2.RegisterModelRequest(
                model_name=reg.model,
                url=reg.url,
                initial_workers=reg.workers,
                batch_size=reg.batch_size,
                max_batch_delay=reg.max_batch_delay_ms,
                synchronous=True,
                startup_timeout=int(timeout_s),
            ),
            metadata=endpoint.metadata("management"),
            timeout=timeout_s,
        )
    first_good_prediction(endpoint, reg.model, payload, expected, width=width, deadline=t0 + timeout_s)
    return time.perf_counter() - t0


def scale(endpoint: Endpoint, model: str, workers: int, *, timeout_s: float) -> float:
    """Seconds from ScaleWorker(synchronous, min=max=workers) until DescribeModel shows them READY."""
    assert endpoint.management is not None
    t0 = time.perf_counter()
    with grpc.insecure_channel(endpoint.management) as channel:
        stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
        stub.ScaleWorker(
            management_pb2.ScaleWorkerRequest(
                model_name=model, min_worker=workers, max_worker=workers, synchronous=True
            ),
            metadata=endpoint.metadata("management"),
            timeout=timeout_s,
        )
        wait_ready_workers(stub, endpoint, model, workers, deadline=t0 + timeout_s)
    return time.perf_counter() - t0


def ready_workers(endpoint: Endpoint, model: str) -> int:
    assert endpoint.management is not None
    with grpc.insecure_channel(endpoint.management) as channel:
        stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
        return sum(1 for w in describe_workers(stub, endpoint, model) if w.get("status") == "READY")
