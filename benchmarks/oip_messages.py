"""Open Inference Protocol v2 messages for the OIP benchmark: raw FP32 requests and reply checks.

loadgen.py (`--protocol oip`) and oip_systems.py build every ModelInfer request here, so every
system gets byte-identical requests: one FP32 input of shape [1, n] whose values travel in
`raw_input_contents` (little-endian), as Triton, MLServer and KServe clients send them. A reply
must carry its output in `raw_output_contents` too; a reply with typed `contents` instead is an
error, because the comparison is about the raw-tensor path. No torch, no numpy: loadgen stays light.
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any

import grpc

from modelfleet.protos import open_inference_pb2, open_inference_pb2_grpc

INPUT_NAME = "input__0"
"""The input's name: ModelFleet's default handler takes any name; the competitors' runtimes take the first input."""
ATOL = 1e-4
RTOL = 1e-3
"""As loadgen.py: batched and single-sample float sums differ in the last bits."""


def infer_request(model: str, payload: str) -> Any:
    """ModelInferRequest for one sample: the pool's JSON list as FP32 [1, n] raw little-endian bytes."""
    values = json.loads(payload)
    return open_inference_pb2.ModelInferRequest(
        model_name=model,
        inputs=[
            open_inference_pb2.ModelInferRequest.InferInputTensor(
                name=INPUT_NAME, datatype="FP32", shape=[1, len(values)]
            )
        ],
        raw_input_contents=[struct.pack(f"<{len(values)}f", *values)],
    )


def check_reply(
    reply: Any, request: Any, expected: list[float] | None, width: int, *, echo: bool = False
) -> str | None:
    """None when the reply is right; else what is wrong with it.

    `echo`: the reply must hold the request's input bytes (the echo floor); otherwise one FP32
    output of `width` values close to `expected` (None: only the shape is checked).
    """
    if len(reply.outputs) != 1 or len(reply.raw_output_contents) != 1:
        return (
            f"reply has {len(reply.outputs)} outputs and {len(reply.raw_output_contents)} raw_output_contents; "
            "want one raw FP32 output"
        )
    raw = reply.raw_output_contents[0]
    if echo:
        return None if raw == request.raw_input_contents[0] else "echo reply differs from the request's input bytes"
    output = reply.outputs[0]
    if output.datatype != "FP32" or len(raw) != 4 * width:
        shown = f"{output.datatype} {list(output.shape)} ({len(raw)} bytes)"
        return f"reply output {output.name!r} is {shown}; want FP32 [1, {width}]"
    if expected is None:
        return None
    got = struct.unpack(f"<{width}f", raw)
    for value, want in zip(got, expected):
        if not abs(value - want) <= ATOL + RTOL * abs(want):
            return f"reply {[round(v, 5) for v in got]} differs from the expected {expected}"
    return None


def wait_ready(target: str, models: list[str], *, timeout_s: float, alive: Any = None, metadata: Any = None) -> float:
    """Seconds until ServerReady and ModelReady of every model say ready; `alive()` False aborts."""
    t0 = time.perf_counter()
    last = "no answer"
    with grpc.insecure_channel(target) as channel:
        stub = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        while time.perf_counter() < t0 + timeout_s:
            if alive is not None and not alive():
                raise RuntimeError(f"server exited before it was ready (last: {last})")
            try:
                ready = stub.ServerReady(open_inference_pb2.ServerReadyRequest(), metadata=metadata, timeout=2).ready
                not_ready = [
                    m
                    for m in models
                    if not stub.ModelReady(
                        open_inference_pb2.ModelReadyRequest(name=m), metadata=metadata, timeout=2
                    ).ready
                ]
                if ready and not not_ready:
                    return time.perf_counter() - t0
                last = f"server ready {ready}, models not ready {not_ready}"
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            time.sleep(0.05)
    raise RuntimeError(f"not ready within {timeout_s:g}s (last: {last})")


def first_good_infer(
    target: str,
    model: str,
    payload: str,
    expected: list[float] | None,
    *,
    width: int,
    echo: bool,
    timeout_s: float,
    metadata: Any = None,
) -> float:
    """Seconds until one ModelInfer reply passes check_reply (retried: a model may still be warming)."""
    t0 = time.perf_counter()
    last = "no answer"
    request = infer_request(model, payload)
    with grpc.insecure_channel(target) as channel:
        stub = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        while time.perf_counter() < t0 + timeout_s:
            try:
                reply = stub.ModelInfer(request, metadata=metadata, timeout=10)
                problem = check_reply(reply, request, expected, width, echo=echo)
                if problem is None:
                    return time.perf_counter() - t0
                last = problem
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            time.sleep(0.05)
    raise RuntimeError(f"{model}: no good ModelInfer reply within {timeout_s:g}s (last: {last})")
