"""Calls ModelFleet with KServe's InferenceGRPCClient (grpc.aio), as a KServe user would; prints JSON.

Run by tests/clients/test_kserve_client_against_modelfleet.py in .venv-clients:
`python kserve_calls.py --url HOST:PORT --token T`. KServe 0.21's gRPC client has no metadata calls
(is_server_live/ready, is_model_ready and infer only). It runs in a process of its own: kserve and
tritonclient both define `inference.*` in protobuf's one descriptor pool and cannot be imported together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import grpc
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest


async def status_of(call: Any) -> str:
    try:
        await call
    except grpc.RpcError as error:
        return str(error.code().name)
    return "OK"


def request(model: str, array: np.ndarray[Any, Any], datatype: str, *, binary: bool, request_id: str) -> InferRequest:
    tensor = InferInput(name="x", shape=list(array.shape), datatype=datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)  # binary: raw_input_contents; else typed contents
    return InferRequest(model_name=model, infer_inputs=[tensor], request_id=request_id)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    headers = (("authorization", f"Bearer {args.token}"),)
    client = InferenceGRPCClient(args.url, timeout=60)
    out: dict[str, Any] = {
        "live": await client.is_server_live(headers=headers),
        "ready": await client.is_server_ready(headers=headers),
        "model_ready": await client.is_model_ready("twice", headers=headers),
    }
    answers = {}
    for binary in (True, False):
        for datatype, array in (
            ("FP32", np.array([[1.5, -2.0, 0.25]], dtype=np.float32)),
            ("INT64", np.array([[2**40, -3]], dtype=np.int64)),
        ):
            name = f"{datatype}-{'binary' if binary else 'typed'}"
            response = await client.infer(
                request("twice", array, datatype, binary=binary, request_id=name), headers=headers
            )
            output = response.outputs[0]
            answers[name] = {
                "sent_raw": len(
                    request("twice", array, datatype, binary=binary, request_id=name).to_grpc().raw_input_contents
                ),
                "id": response.id,
                "model_version": response.model_version,
                "name": output.name,
                "datatype": output.datatype,
                "shape": list(output.shape),
                "values": output.as_numpy().tolist(),
            }
    out["infer"] = answers
    zeros = np.zeros((1, 3), dtype=np.float32)
    out["bad"] = {
        "ready_unknown_model": await status_of(client.is_model_ready("no-such-model", headers=headers)),
        "infer_unknown_model": await status_of(
            client.infer(request("no-such-model", zeros, "FP32", binary=True, request_id="u"), headers=headers)
        ),
        "infer_wrong_feature_count": await status_of(
            client.infer(request("tiny", zeros, "FP32", binary=True, request_id="w"), headers=headers)
        ),
        "live_without_token": await status_of(client.is_server_live()),
    }
    out["after"] = await client.is_model_ready("twice", headers=headers)
    await client.close()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
