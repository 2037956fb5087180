"""Our .proto files are wire-identical to TorchServe 0.12's: compared with a table transcribed from
pytorch/serve v0.12.0 frontend/server/src/main/resources/proto/{inference,management}.proto."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor as F

from modelfleet.protos import inference_pb2, management_pb2

OPT = "optional"  # proto3 singular (implicit presence)
PRESENCE = "proto3 optional"  # explicit `optional` keyword
REP = "repeated"

# message -> [(field name, number, type, label)], transcribed from TorchServe 0.12.0.
TORCHSERVE_MESSAGES = {
    "org.pytorch.serve.grpc.inference.PredictionsRequest": [
        ("model_name", 1, F.TYPE_STRING, OPT),
        ("model_version", 2, F.TYPE_STRING, OPT),
        ("input", 3, F.TYPE_MESSAGE, REP),  # map<string, bytes>
        ("sequence_id", 4, F.TYPE_STRING, PRESENCE),
    ],
    "org.pytorch.serve.grpc.inference.PredictionResponse": [
        ("prediction", 1, F.TYPE_BYTES, OPT),
        ("sequence_id", 2, F.TYPE_STRING, PRESENCE),
        ("status", 3, F.TYPE_MESSAGE, PRESENCE),  # google.rpc.Status
    ],
    "org.pytorch.serve.grpc.inference.TorchServeHealthResponse": [
        ("health", 1, F.TYPE_STRING, OPT),
    ],
    "org.pytorch.serve.grpc.management.ManagementResponse": [("msg", 1, F.TYPE_STRING, OPT)],
    "org.pytorch.serve.grpc.management.DescribeModelRequest": [
        ("model_name", 1, F.TYPE_STRING, OPT),
        ("model_version", 2, F.TYPE_STRING, OPT),
        ("customized", 3, F.TYPE_BOOL, OPT),
    ],
    "org.pytorch.serve.grpc.management.ListModelsRequest": [
        ("limit", 1, F.TYPE_INT32, OPT),
        ("next_page_token", 2, F.TYPE_INT32, OPT),
    ],
    "org.pytorch.serve.grpc.management.RegisterModelRequest": [
        ("batch_size", 1, F.TYPE_INT32, OPT),
        ("handler", 2, F.TYPE_STRING, OPT),
        ("initial_workers", 3, F.TYPE_INT32, OPT),
        ("max_batch_delay", 4, F.TYPE_INT32, OPT),
        ("model_name", 5, F.TYPE_STRING, OPT),
        ("response_timeout", 6, F.TYPE_INT32, OPT),
        ("runtime", 7, F.TYPE_STRING, OPT),
        ("synchronous", 8, F.TYPE_BOOL, OPT),
        ("url", 9, F.TYPE_STRING, OPT),
        ("s3_sse_kms", 10, F.TYPE_BOOL, OPT),
        ("startup_timeout", 11, F.TYPE_INT32, OPT),
    ],
    "org.pytorch.serve.grpc.management.ScaleWorkerRequest": [
        ("model_name", 1, F.TYPE_STRING, OPT),
        ("model_version", 2, F.TYPE_STRING, OPT),
        ("max_worker", 3, F.TYPE_INT32, OPT),
        ("min_worker", 4, F.TYPE_INT32, OPT),
        ("number_gpu", 5, F.TYPE_INT32, OPT),
        ("synchronous", 6, F.TYPE_BOOL, OPT),
        ("timeout", 7, F.TYPE_INT32, OPT),
    ],
    "org.pytorch.serve.grpc.management.SetDefaultRequest": [
        ("model_name", 1, F.TYPE_STRING, OPT),
        ("model_version", 2, F.TYPE_STRING, OPT),
    ],
    "org.pytorch.serve.grpc.management.UnregisterModelRequest": [
        ("model_name", 1, F.TYPE_STRING, OPT),
        ("model_version", 2, F.TYPE_STRING, OPT),
    ],
}

# service -> [(method, input, output, client streaming, server streaming)]
TORCHSERVE_SERVICES = {
    "org.pytorch.serve.grpc.inference.InferenceAPIsService": [
        ("Ping", "google.protobuf.Empty", "org.pytorch.serve.grpc.inference.TorchServeHealthResponse", False, False),
        (
            "Predictions",
            "org.pytorch.serve.grpc.inference.PredictionsRequest",
            "org.pytorch.serve.grpc.inference.PredictionResponse",
            False,
            False,
        ),
        (
            "StreamPredictions",
            "org.pytorch.serve.grpc.inference.PredictionsRequest",
            "org.pytorch.serve.grpc.inference.PredictionResponse",
            False,
            True,
        ),
        (
            "StreamPredictions2",
            "org.pytorch.serve.grpc.inference.PredictionsRequest",
            "org.pytorch.serve.grpc.inference.PredictionResponse",
            True,
            True,
        ),
    ],
    "org.pytorch.serve.grpc.management.ManagementAPIsService": [
        (
            method,
            f"org.pytorch.serve.grpc.management.{request}",
            "org.pytorch.serve.grpc.management.ManagementResponse",
            False,
            False,
        )
        for method, request in [
            ("DescribeModel", "DescribeModelRequest"),
            ("ListModels", "ListModelsRequest"),
            ("RegisterModel", "RegisterModelRequest"),
            ("ScaleWorker", "ScaleWorkerRequest"),
            ("SetDefault", "SetDefaultRequest"),
            ("UnregisterModel", "UnregisterModelRequest"),
        ]
    ],
}

FILES = (inference_pb2.DESCRIPTOR, management_pb2.DESCRIPTOR)


def _label(field: F) -> str:
    if field.is_repeated:
        return REP
    # proto3 `optional` is compiled to a synthetic one-field oneof; plain proto3 fields have none.
    return PRESENCE if field.containing_oneof is not None else OPT


def _messages() -> dict[str, list[tuple[str, int, int, str]]]:
    found = {}
    for file in FILES:
        assert file.package in ("org.pytorch.serve.grpc.inference", "org.pytorch.serve.grpc.management")
        for message in file.message_types_by_name.values():
            found[message.full_name] = [(f.name, f.number, f.type, _label(f)) for f in message.fields]
    return found


def test_every_message_has_torchserves_fields_numbers_types_and_labels() -> None:
    assert _messages() == TORCHSERVE_MESSAGES


def test_the_input_map_is_string_to_bytes() -> None:
    entry = inference_pb2.PredictionsRequest.DESCRIPTOR.fields_by_name["input"].message_type
    assert entry.GetOptions().map_entry
    assert [(f.name, f.type) for f in entry.fields] == [("key", F.TYPE_STRING), ("value", F.TYPE_BYTES)]


def test_the_status_field_is_google_rpc_status() -> None:
    field = inference_pb2.PredictionResponse.DESCRIPTOR.fields_by_name["status"]
    assert field.message_type.full_name == "google.rpc.Status"


def test_every_method_has_torchserves_types_and_streaming_flags() -> None:
    found = {}
    for file in FILES:
        for service in file.services_by_name.values():
            found[service.full_name] = [
                (m.name, m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming)
                for m in service.methods
            ]
    assert found == TORCHSERVE_SERVICES
