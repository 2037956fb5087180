"""The OIP benchmark's floor: a bare grpc.aio GRPCInferenceService that echoes the input, in one process.

`python benchmarks/oip_echo_server.py --address 127.0.0.1:PORT` answers ModelInfer for any model
with the request's first input copied to the output (`raw_input_contents[0]` → `raw_output_contents[0]`,
same datatype and shape), and ServerReady/ModelReady with ready. No model, no decoding, no batching,
no auth: what is left is the cost of gRPC and protobuf. Loopback only; stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import grpc

from modelfleet.protos import open_inference_pb2, open_inference_pb2_grpc

Tensor = open_inference_pb2.ModelInferResponse.InferOutputTensor


class EchoInference(open_inference_pb2_grpc.GRPCInferenceServiceServicer):
    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return open_inference_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return open_inference_pb2.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return open_inference_pb2.ModelReadyResponse(ready=True)

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not request.inputs or not request.raw_input_contents:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the echo needs one input in raw_input_contents")
        given = request.inputs[0]
        return open_inference_pb2.ModelInferResponse(
            model_name=request.model_name,
            id=request.id,
            outputs=[Tensor(name="output__0", datatype=given.datatype, shape=given.shape)],
            raw_output_contents=[request.raw_input_contents[0]],
        )


async def serve(address: str) -> None:
    server = grpc.aio.server()
    open_inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(EchoInference(), server)
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
    parser.add_argument("--address", default="127.0.0.1:8001")
    asyncio.run(serve(parser.parse_args().address))


if __name__ == "__main__":
    main()
