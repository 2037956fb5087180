"""Calls ModelFleet with NVIDIA's tritonclient (gRPC), as a Triton user would; prints one JSON document.

Run by tests/clients/test_tritonclient_against_modelfleet.py in .venv-clients:
`python triton_calls.py --url HOST:PORT --token T`. Typed (non-raw) requests and requests that
tritonclient's own checks would refuse are built with tritonclient's generated stubs
(tritonclient.grpc.service_pb2, package `inference`), as its documentation suggests; modelfleet-protos
cannot be imported here, since both define `inference.*` in protobuf's one descriptor pool.
"""

from __future__ import annotations

import argparse
import json
import queue
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

SAMPLES: dict[str, Any] = {
    "FP32": np.array([[1.5, -2.0, 0.25]], dtype=np.float32),
    "FP64": np.array([[1e300, -0.5]], dtype=np.float64),
    "INT64": np.array([[2**40, -3], [7, 0]], dtype=np.int64),
    "INT32": np.array([[2**20, -3, 5]], dtype=np.int32),
    "UINT8": np.array([[1, 2, 127]], dtype=np.uint8),
    "BOOL": np.array([[True, False, True]], dtype=np.bool_),
    "FP16": np.array([[0.5, -1.25, 3.0]], dtype=np.float16),
}
TYPED_FIELD = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT64": "int64_contents",
    "INT32": "int_contents",
    "UINT8": "uint_contents",
    "BOOL": "bool_contents",
}
"""InferTensorContents field per datatype (FP16 has none: it travels raw only)."""
STREAM_TIMEOUT_S = 60.0


def status_of(call: Callable[[], Any]) -> str:
    """'OK', or the gRPC status name of the InferenceServerException the call raised."""
    try:
        call()
    except InferenceServerException as error:
        return str(error.status()).removeprefix("StatusCode.")
    return "OK"


def raw_round_trips(client: triton.InferenceServerClient, headers: dict[str, str]) -> dict[str, Any]:
    found = {}
    for datatype, array in SAMPLES.items():
        tensor = triton.InferInput("x", list(array.shape), datatype)
        tensor.set_data_from_numpy(array)  # tritonclient's gRPC client sends raw_input_contents
        result = client.infer("twice", [tensor], headers=headers, request_id=datatype)
        output = result.get_output("output__0")
        values = result.as_numpy("output__0")
        found[datatype] = {
            "datatype": output.datatype,
            "shape": list(output.shape),
            "values": values.tolist(),
            "numpy": str(values.dtype),
            "id": result.get_response().id,
            "raw": len(result.get_response().raw_output_contents),
        }
    return found


def typed_round_trips(stub: Any, metadata: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    found = {}
    for datatype, field in TYPED_FIELD.items():
        array = SAMPLES[datatype]
        request = service_pb2.ModelInferRequest(model_name="twice")
        tensor = request.inputs.add(name="x", datatype=datatype, shape=list(array.shape))
        getattr(tensor.contents, field).extend(array.ravel().tolist())
        answer = stub.ModelInfer(request, metadata=metadata, timeout=60)
        output = answer.outputs[0]
        found[datatype] = {
            "datatype": output.datatype,
            "shape": list(output.shape),
            "values": list(getattr(output.contents, field)),
            "raw": len(answer.raw_output_contents),
        }
    return found


def stream(client: triton.InferenceServerClient, headers: dict[str, str]) -> list[Any]:
    """Five requests on one ModelStreamInfer call, the third for an unknown model: every one answered."""
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=headers)
    try:
        for index in range(5):
            array = np.full((1, 2), index, dtype=np.float32)
            tensor = triton.InferInput("x", [1, 2], "FP32")
            tensor.set_data_from_numpy(array)
            model = "no-such-model" if index == 2 else "twice"
            client.async_stream_infer(model, [tensor], request_id=f"s{index}")
        got = [answers.get(timeout=STREAM_TIMEOUT_S) for _ in range(5)]
    finally:
        client.stop_stream()
    found = []
    for result, error in got:
        if error is not None:
            found.append(["error", error.message()])
        else:
            found.append([result.get_response().id, result.as_numpy("output__0").tolist()])
    return sorted(found, key=str)


def infer_status(stub: Any, metadata: tuple[tuple[str, str], ...], build: Callable[[Any], None]) -> str:
    """The status of a ModelInfer built by hand (shapes and datatypes tritonclient would refuse)."""
    request = service_pb2.ModelInferRequest(model_name="twice")
    build(request)
    try:
        stub.ModelInfer(request, metadata=metadata, timeout=60)
    except grpc.RpcError as error:
        return str(error.code().name)
    return "OK"


def bad_inputs(
    url: str,
    client: triton.InferenceServerClient,
    stub: Any,
    headers: dict[str, str],
    metadata: tuple[tuple[str, str], ...],
) -> dict[str, str]:
    def fp32(name: str = "x", shape: tuple[int, ...] = (1, 3)) -> triton.InferInput:
        tensor = triton.InferInput(name, list(shape), "FP32")
        return tensor.set_data_from_numpy(np.zeros(shape, dtype=np.float32))

    def raw(shape: list[int], data: bytes, datatype: str = "FP32") -> Callable[[Any], None]:
        def build(request: Any) -> None:
            request.inputs.add(name="x", datatype=datatype, shape=shape)
            request.raw_input_contents.append(data)

        return build

    def two_inputs(request: Any) -> None:
        for name in ("a", "b"):
            raw([1], b"\0\0\0\0")(request)
            request.inputs[-1].name = name

    def typed_count(request: Any) -> None:
        tensor = request.inputs.add(name="x", datatype="INT64", shape=[2, 2])
        tensor.contents.int64_contents.extend([1, 2, 3])

    anonymous = triton.InferenceServerClient(url)  # no token
    return {
        "live_without_token": status_of(lambda: anonymous.is_server_live()),
        "live_with_wrong_token": status_of(lambda: client.is_server_live(headers={"authorization": "Bearer wrong"})),
        "infer_without_token": status_of(lambda: anonymous.infer("twice", [fp32()])),
        "server_metadata_without_token": status_of(lambda: anonymous.get_server_metadata()),
        "ready_without_token": status_of(lambda: anonymous.is_server_ready()),
        "ready_unknown_model": status_of(lambda: client.is_model_ready("no-such-model", headers=headers)),
        "ready_unknown_version": status_of(lambda: client.is_model_ready("tiny", "9", headers=headers)),
        "ready_no_name": status_of(lambda: client.is_model_ready("", headers=headers)),
        "metadata_unknown_model": status_of(lambda: client.get_model_metadata("no-such-model", headers=headers)),
        "metadata_unknown_version": status_of(lambda: client.get_model_metadata("tiny", "9", headers=headers)),
        "infer_unknown_model": status_of(lambda: client.infer("no-such-model", [fp32()], headers=headers)),
        "infer_unknown_version": status_of(lambda: client.infer("tiny", [fp32()], model_version="9", headers=headers)),
        "infer_unknown_output": status_of(
            lambda: client.infer("twice", [fp32()], outputs=[triton.InferRequestedOutput("nope")], headers=headers)
        ),
        "infer_two_inputs_one_input_model": status_of(
            lambda: client.infer("twice", [fp32("a"), fp32("b")], headers=headers)
        ),
        "infer_wrong_feature_count": status_of(lambda: client.infer("tiny", [fp32(shape=(1, 15))], headers=headers)),
        "infer_bytes_to_tensor_model": status_of(
            lambda: client.infer(
                "twice",
                [triton.InferInput("x", [1], "BYTES").set_data_from_numpy(np.array([b"hi"], dtype=np.object_))],
                headers=headers,
            )
        ),
        "infer_shape_bigger_than_data": infer_status(stub, metadata, raw([2, 3], b"\0" * 12)),
        "infer_shape_smaller_than_data": infer_status(stub, metadata, raw([1, 3], b"\0" * 16)),
        "infer_negative_dimension": infer_status(stub, metadata, raw([-1, 3], b"\0" * 12)),
        "infer_unknown_datatype": infer_status(stub, metadata, raw([1, 3], b"\0" * 12, "FP128")),
        "infer_typed_count_not_shape": infer_status(stub, metadata, typed_count),
        "infer_no_inputs": infer_status(stub, metadata, lambda request: None),
        "infer_two_inputs_built_by_hand": infer_status(stub, metadata, two_inputs),
        "infer_no_model_name": status_of(lambda: client.infer("", [fp32()], headers=headers)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    headers = {"authorization": f"Bearer {args.token}"}
    metadata = tuple(headers.items())
    client = triton.InferenceServerClient(args.url)
    channel = grpc.insecure_channel(args.url)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    out: dict[str, Any] = {
        "live": client.is_server_live(headers=headers),
        "ready": client.is_server_ready(headers=headers),
        "model_ready": client.is_model_ready("twice", headers=headers),
        "model_version_ready": client.is_model_ready("tiny", "1", headers=headers),
        "server_metadata": client.get_server_metadata(headers=headers, as_json=True),
        "model_metadata": client.get_model_metadata("tiny", headers=headers, as_json=True),
        "model_metadata_v1": client.get_model_metadata("tiny", "1", headers=headers, as_json=True),
        "raw": raw_round_trips(client, headers),
        "typed": typed_round_trips(stub, metadata),
    }
    features = triton.InferInput("features", [2, 16], "FP32")
    features.set_data_from_numpy(np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16))
    scores = [triton.InferRequestedOutput("scores")]
    by_version = {}
    for version in ("", "1", "2"):
        result = client.infer("tiny", [features], model_version=version, outputs=scores, headers=headers)
        by_version[version or "default"] = {
            "model_version": result.get_response().model_version,
            "outputs": [o.name for o in result.get_response().outputs],
            "scores": result.as_numpy("scores").tolist(),
        }
    out["versions"] = by_version
    out["stream"] = stream(client, headers)
    out["not_served"] = {
        "model_config": status_of(lambda: client.get_model_config("tiny", headers=headers)),
        "statistics": status_of(lambda: client.get_inference_statistics("tiny", headers=headers)),
        "repository_index": status_of(lambda: client.get_model_repository_index(headers=headers)),
        "shared_memory": status_of(lambda: client.get_system_shared_memory_status(headers=headers)),
    }
    out["bad"] = bad_inputs(args.url, client, stub, headers, metadata)
    again = triton.InferInput("x", [1, 1], "FP32").set_data_from_numpy(np.array([[21.0]], dtype=np.float32))
    out["after"] = {
        "live": client.is_server_live(headers=headers),
        "answer": client.infer("twice", [again], headers=headers).as_numpy("output__0").tolist(),
    }
    client.close()
    channel.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
