"""The benchmark's floor: a bare grpc.aio InferenceAPIsService with no model, in one process.

`python benchmarks/echo_server.py --address 127.0.0.1:PORT --reply tiny=4 --reply mlp=10` answers
Predictions for each named model with a fixed JSON list of that many zeros (the model's output
shape, so the load generator can check the reply's shape) and Ping with TorchServe's healthy reply.
It does no parsing and no compute: what is left is the cost of gRPC itself. No auth, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

import grpc

from modelfleet.protos import inference_pb2, inference_pb2_grpc

HEALTHY = json.dumps({"status": "Healthy"})


class EchoInference(inference_pb2_grpc.InferenceAPIsServiceServicer):
    def __init__(self, replies: dict[str, bytes]) -> None:
        self._replies = {name: inference_pb2.PredictionResponse(prediction=body) for name, body in replies.items()}

    async def Ping(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return inference_pb2.TorchServeHealthResponse(health=HEALTHY)

    async def Predictions(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        reply = self._replies.get(request.model_name)
        if reply is None:  # TorchServe's code for an unknown model
            await context.abort(grpc.StatusCode.INTERNAL, f"Model not found: {request.model_name}")
        return reply


async def serve(address: str, replies: dict[str, bytes]) -> None:
    server = grpc.aio.server()
    inference_pb2_grpc.add_InferenceAPIsServiceServicer_to_server(EchoInference(replies), server)
    if server.add_insecure_port(address) == 0:
        raise SystemExit(f"cannot bind {address}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:7070")
    parser.add_argument(
        "--reply", action="append", default=[], metavar="MODEL=WIDTH", help="answer MODEL with WIDTH zeros (repeatable)"
    )
    args = parser.parse_args()
    replies = {}
    for entry in args.reply:
        name, _, width = entry.partition("=")
        replies[name] = json.dumps([0.0] * int(width)).encode()
    asyncio.run(serve(args.address, replies))


if __name__ == "__main__":
    main()
