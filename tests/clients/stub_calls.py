"""Calls ModelFleet's Open Inference services with modelfleet-protos' own stubs; prints JSON.

Run in a venv of its own by tests/clients/test_our_stubs_across_the_protobuf_range.py:
`<venv>/bin/python stub_calls.py --url HOST:PORT --token T --package inference|torchserve`.
Only the stubs, grpcio and the standard library (the floor venv has no numpy).
"""

from __future__ import annotations

import argparse
import json
import struct
from typing import Any

import google.protobuf
import grpc

from modelfleet.protos import (
    open_inference_pb2,
    open_inference_pb2_grpc,
    torchserve_open_inference_pb2,
    torchserve_open_inference_pb2_grpc,
)

PACKAGES = {
    "inference": (open_inference_pb2, open_inference_pb2_grpc),
    "torchserve": (torchserve_open_inference_pb2, torchserve_open_inference_pb2_grpc),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--package", choices=sorted(PACKAGES), required=True)
    args = parser.parse_args()
    pb, pb_grpc = PACKAGES[args.package]
    auth = (("authorization", f"Bearer {args.token}"),)
    out: dict[str, Any] = {"protobuf": google.protobuf.__version__, "grpcio": grpc.__version__}
    with grpc.insecure_channel(args.url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        out["live"] = stub.ServerLive(pb.ServerLiveRequest(), metadata=auth, timeout=30).live
        out["ready"] = stub.ServerReady(pb.ServerReadyRequest(), metadata=auth, timeout=30).ready
        out["model_ready"] = stub.ModelReady(pb.ModelReadyRequest(name="twice"), metadata=auth, timeout=30).ready
        server = stub.ServerMetadata(pb.ServerMetadataRequest(), metadata=auth, timeout=30)
        out["server_name"] = server.name
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="tiny"), metadata=auth, timeout=30)
        out["metadata"] = {
            "name": meta.name,
            "versions": list(meta.versions),
            "platform": meta.platform,
            "inputs": [[t.name, t.datatype, list(t.shape)] for t in meta.inputs],
            "outputs": [[t.name, t.datatype, list(t.shape)] for t in meta.outputs],
        }

        raw = pb.ModelInferRequest(model_name="twice", id="raw")
        raw.inputs.add(name="x", datatype="FP32", shape=[1, 3])
        raw.raw_input_contents.append(struct.pack("<3f", 1.5, -2.0, 0.25))
        answer = stub.ModelInfer(raw, metadata=auth, timeout=60)
        output = answer.outputs[0]
        out["raw"] = {
            "id": answer.id,
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.shape),
            "values": list(struct.unpack("<3f", answer.raw_output_contents[0])),
        }

        typed = pb.ModelInferRequest(model_name="twice", id="typed")
        tensor = typed.inputs.add(name="x", datatype="INT64", shape=[2, 2])
        tensor.contents.int64_contents.extend([1, -2, 3, 2**40])
        answer = stub.ModelInfer(typed, metadata=auth, timeout=60)
        output = answer.outputs[0]
        out["typed"] = {
            "datatype": output.datatype,
            "shape": list(output.shape),
            "values": list(output.contents.int64_contents),
            "raw_contents": len(answer.raw_output_contents),
        }

        try:
            stub.ModelInfer(pb.ModelInferRequest(model_name="no-such-model"), metadata=auth, timeout=30)
            out["unknown_model"] = "answered"
        except grpc.RpcError as error:
            out["unknown_model"] = error.code().name

        if hasattr(stub, "ModelStreamInfer"):

            def requests() -> Any:
                for index in range(3):
                    request = pb.ModelInferRequest(model_name="twice", id=f"s{index}")
                    request.inputs.add(name="x", datatype="FP64", shape=[1, 1])
                    request.raw_input_contents.append(struct.pack("<d", float(index)))
                    yield request

            stream = stub.ModelStreamInfer(requests(), metadata=auth, timeout=60)
            out["stream"] = sorted(
                [r.error_message, r.infer_response.id, struct.unpack("<d", r.infer_response.raw_output_contents[0])[0]]
                for r in stream
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
