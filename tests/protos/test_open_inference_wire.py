"""Our Open Inference Protocol protos are wire-compatible with the published ones, field by field.

The tables are transcribed from (compiled with protoc and read back, then checked against the text):
- Triton: triton-inference-server/common protobuf/grpc_service.proto (last change 00b3a71), package `inference`;
- KServe: kserve/kserve python/kserve/kserve/protocol/grpc/grpc_predict_v2.proto (last change eb794b5);
- TorchServe: pytorch/serve frontend/server/src/main/resources/proto/open_inference_grpc.proto (last change
  9e6f1c2), package `org.pytorch.serve.grpc.openinference`.
KServe's file is Triton's subset (no ModelStreamInfer, InferParameter without double/uint64) plus the two
repository RPCs; TorchServe's is KServe's without those RPCs under its own package. A field number, type
or label that differs here would make a real client misread a message without any error.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from google.protobuf.descriptor import Descriptor
from google.protobuf.descriptor import FieldDescriptor as F

from modelfleet.protos import open_inference_pb2, torchserve_open_inference_pb2

OPT = "optional"  # proto3 singular (implicit presence)
REP = "repeated"
ONEOF = "oneof"  # member of a real oneof (InferParameter.parameter_choice)

Field = tuple[str, int, int, str, str]
"""(name, number, type, label, message type relative to the package or "")."""

# message (relative to package `inference`) -> fields, from Triton's grpc_service.proto: the messages of the
# RPCs we serve (Triton's other 49 messages belong to RPCs listed in TRITON_NOT_SERVED).
TRITON_MESSAGES: dict[str, list[Field]] = {
    "ServerLiveRequest": [],
    "ServerLiveResponse": [
        ("live", 1, F.TYPE_BOOL, OPT, ""),
    ],
    "ServerReadyRequest": [],
    "ServerReadyResponse": [
        ("ready", 1, F.TYPE_BOOL, OPT, ""),
    ],
    "ModelReadyRequest": [
        ("name", 1, F.TYPE_STRING, OPT, ""),
        ("version", 2, F.TYPE_STRING, OPT, ""),
    ],
    "ModelReadyResponse": [
        ("ready", 1, F.TYPE_BOOL, OPT, ""),
    ],
    "ServerMetadataRequest": [],
    "ServerMetadataResponse": [
        ("name", 1, F.TYPE_STRING, OPT, ""),
        ("version", 2, F.TYPE_STRING, OPT, ""),
        ("extensions", 3, F.TYPE_STRING, REP, ""),
    ],
    "ModelMetadataRequest": [
        ("name", 1, F.TYPE_STRING, OPT, ""),
        ("version", 2, F.TYPE_STRING, OPT, ""),
    ],
    "ModelMetadataResponse": [
        ("name", 1, F.TYPE_STRING, OPT, ""),
        ("versions", 2, F.TYPE_STRING, REP, ""),
        ("platform", 3, F.TYPE_STRING, OPT, ""),
        ("inputs", 4, F.TYPE_MESSAGE, REP, "ModelMetadataResponse.TensorMetadata"),
        ("outputs", 5, F.TYPE_MESSAGE, REP, "ModelMetadataResponse.TensorMetadata"),
    ],
    "ModelMetadataResponse.TensorMetadata": [
        ("name", 1, F.TYPE_STRING, OPT, ""),
        ("datatype", 2, F.TYPE_STRING, OPT, ""),
        ("shape", 3, F.TYPE_INT64, REP, ""),
    ],
    "InferParameter": [
        ("bool_param", 1, F.TYPE_BOOL, ONEOF, ""),
        ("int64_param", 2, F.TYPE_INT64, ONEOF, ""),
        ("string_param", 3, F.TYPE_STRING, ONEOF, ""),
        ("double_param", 4, F.TYPE_DOUBLE, ONEOF, ""),
        ("uint64_param", 5, F.TYPE_UINT64, ONEOF, ""),
    ],
    "InferTensorContents": [
        ("bool_contents", 1, F.TYPE_BOOL, REP, ""),
        ("int_contents", 2, F.TYPE_INT32, REP, ""),
        ("int64_contents", 3, F.TYPE_INT64, REP, ""),
        ("uint_contents", 4, F.TYPE_UINT32, REP, ""),
        ("uint64_contents", 5, F.TYPE_UINT64, REP, ""),
        ("fp32_contents", 6, F.TYPE_FLOAT, REP, ""),
        ("fp64_contents", 7, F.TYPE_DOUBLE, REP, ""),
        ("bytes_contents", 8, F.TYPE_BYTES, REP, ""),
    ],
    "ModelInferRequest": [
        ("model_name", 1, F.TYPE_STRING, OPT, ""),
        ("model_version", 2, F.TYPE_STRING, OPT, ""),
        ("id", 3, F.TYPE_STRING, OPT, ""),
        ("parameters", 4, F.TYPE_MESSAGE, REP, "ModelInferRequest.ParametersEntry"),
        ("inputs", 5, F.TYPE_MESSAGE, REP, "ModelInferRequest.InferInputTensor"),
        ("outputs", 6, F.TYPE_MESSAGE, REP, "ModelInferRequest.InferRequestedOutputTensor"),
        ("raw_input_contents", 7, F.TYPE_BYTES, REP, ""),
    ],
    "ModelInferRequest.InferInputTensor": [
        ("name", 1, F.TYPE_STRING, OPT, ""),
        ("datatype", 2, F.TYPE_STRING, OPT, ""),
        ("shape", 3, F.TYPE_INT64, REP, ""),
        ("parameters", 4, F.TYPE_MESSAGE, REP, "ModelInferRequest.InferInputTensor.ParametersEntry"),
        ("contents", 5, F.TYPE_MESSAGE, OPT, "InferTensorContents"),
    ],
    "ModelInferRequest.InferInputTensor.ParametersEntry": [
        ("key", 1, F.TYPE_STRING, OPT, ""),
        ("value", 2, F.TYPE_MESSAGE, OPT, "InferParameter"),
    ],
    "ModelInferRequest.InferRequestedOutputTensor": [
        ("name", 1, F.TYPE_STRING, OPT, ""),
        ("parameters", 2, F.TYPE_MESSAGE, REP, "ModelInferRequest.InferRequestedOutputTensor.ParametersEntry"),
    ],
    "ModelInferRequest.InferRequestedOutputTensor.ParametersEntry": [
        ("key", 1, F.TYPE_STRING, OPT, ""),
        ("value", 2, F.TYPE_MESSAGE, OPT, "InferParameter"),
    ],
    "ModelInferRequest.ParametersEntry": [
        ("key", 1, F.TYPE_STRING, OPT, ""),
        ("value", 2, F.TYPE_MESSAGE, OPT, "InferParameter"),
    ],
    "ModelInferResponse": [
        ("model_name", 1, F.TYPE_STRING, OPT, ""),
        ("model_version", 2, F.TYPE_STRING, OPT, ""),
        ("id", 3, F.TYPE_STRING, OPT, ""),
        ("parameters", 4, F.TYPE_MESSAGE, REP, "ModelInferResponse.ParametersEntry"),
        ("outputs", 5, F.TYPE_MESSAGE, REP, "ModelInferResponse.InferOutputTensor"),
        ("raw_output_contents", 6, F.TYPE_BYTES, REP, ""),
    ],
    "ModelInferResponse.InferOutputTensor": [
        ("name", 1, F.TYPE_STRING, OPT, ""),
        ("datatype", 2, F.TYPE_STRING, OPT, ""),
        ("shape", 3, F.TYPE_INT64, REP, ""),
        ("parameters", 4, F.TYPE_MESSAGE, REP, "ModelInferResponse.InferOutputTensor.ParametersEntry"),
        ("contents", 5, F.TYPE_MESSAGE, OPT, "InferTensorContents"),
    ],
    "ModelInferResponse.InferOutputTensor.ParametersEntry": [
        ("key", 1, F.TYPE_STRING, OPT, ""),
        ("value", 2, F.TYPE_MESSAGE, OPT, "InferParameter"),
    ],
    "ModelInferResponse.ParametersEntry": [
        ("key", 1, F.TYPE_STRING, OPT, ""),
        ("value", 2, F.TYPE_MESSAGE, OPT, "InferParameter"),
    ],
    "ModelStreamInferResponse": [
        ("error_message", 1, F.TYPE_STRING, OPT, ""),
        ("infer_response", 2, F.TYPE_MESSAGE, OPT, "ModelInferResponse"),
    ],
}

# (method, request, response, client streaming, server streaming), in Triton's order.
TRITON_METHODS = [
    ("ServerLive", "ServerLiveRequest", "ServerLiveResponse", False, False),
    ("ServerReady", "ServerReadyRequest", "ServerReadyResponse", False, False),
    ("ModelReady", "ModelReadyRequest", "ModelReadyResponse", False, False),
    ("ServerMetadata", "ServerMetadataRequest", "ServerMetadataResponse", False, False),
    ("ModelMetadata", "ModelMetadataRequest", "ModelMetadataResponse", False, False),
    ("ModelInfer", "ModelInferRequest", "ModelInferResponse", False, False),
    ("ModelStreamInfer", "ModelInferRequest", "ModelStreamInferResponse", True, True),
]
TRITON_NOT_SERVED = (
    "ModelConfig", "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
    "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister", "TraceSetting",
    "LogSettings",
)  # fmt: skip
"""Triton's other methods: a client calling one gets UNIMPLEMENTED from gRPC itself."""

# KServe's grpc_predict_v2.proto: Triton's tables with these differences.
KSERVE_LACKS = ("ModelStreamInferResponse",)
KSERVE_INFER_PARAMETER: list[Field] = [
    ("bool_param", 1, F.TYPE_BOOL, ONEOF, ""),
    ("int64_param", 2, F.TYPE_INT64, ONEOF, ""),
    ("string_param", 3, F.TYPE_STRING, ONEOF, ""),
]
KSERVE_REPOSITORY: dict[str, list[Field]] = {  # the model repository extension: not served
    "RepositoryModelLoadRequest": [("model_name", 1, F.TYPE_STRING, OPT, "")],
    "RepositoryModelLoadResponse": [("model_name", 1, F.TYPE_STRING, OPT, ""), ("isLoaded", 2, F.TYPE_BOOL, OPT, "")],
    "RepositoryModelUnloadRequest": [("model_name", 1, F.TYPE_STRING, OPT, "")],
    "RepositoryModelUnloadResponse": [
        ("model_name", 1, F.TYPE_STRING, OPT, ""),
        ("isUnloaded", 2, F.TYPE_BOOL, OPT, ""),
    ],
}
KSERVE_METHODS = [
    *TRITON_METHODS[:6],
    ("RepositoryModelLoad", "RepositoryModelLoadRequest", "RepositoryModelLoadResponse", False, False),
    ("RepositoryModelUnload", "RepositoryModelUnloadRequest", "RepositoryModelUnloadResponse", False, False),
]


def kserve_messages() -> dict[str, list[Field]]:
    messages = {name: fields for name, fields in TRITON_MESSAGES.items() if name not in KSERVE_LACKS}
    return {**messages, "InferParameter": KSERVE_INFER_PARAMETER, **KSERVE_REPOSITORY}


def torchserve_messages() -> dict[str, list[Field]]:
    """pytorch/serve's open_inference_grpc.proto: KServe's messages without the repository ones."""
    return {name: fields for name, fields in kserve_messages().items() if name not in KSERVE_REPOSITORY}


TORCHSERVE_METHODS = TRITON_METHODS[:6]


def _label(field: F) -> str:
    if field.is_repeated:
        return REP
    return ONEOF if field.containing_oneof is not None else OPT


def _fields(message: Descriptor, package: str) -> list[Field]:
    rows = [
        (
            f.name,
            f.number,
            f.type,
            _label(f),
            f.message_type.full_name.removeprefix(package + ".") if f.message_type else "",
        )
        for f in message.fields
    ]
    return sorted(rows, key=lambda row: row[1])


def _messages(pb: ModuleType) -> dict[str, list[Field]]:
    package = pb.DESCRIPTOR.package
    found: dict[str, list[Field]] = {}

    def walk(message: Descriptor) -> None:
        found[message.full_name.removeprefix(package + ".")] = _fields(message, package)
        for nested in message.nested_types:
            walk(nested)

    for message in pb.DESCRIPTOR.message_types_by_name.values():
        walk(message)
    return found


def _sorted(table: dict[str, list[Field]]) -> dict[str, list[Field]]:
    return {name: sorted(fields, key=lambda row: row[1]) for name, fields in table.items()}


def _methods(pb: ModuleType) -> list[tuple[str, str, str, bool, bool]]:
    (service,) = pb.DESCRIPTOR.services_by_name.values()
    return [
        (m.name, m.input_type.name, m.output_type.name, m.client_streaming, m.server_streaming) for m in service.methods
    ]


def test_the_services_have_the_published_full_names() -> None:
    assert [s.full_name for s in open_inference_pb2.DESCRIPTOR.services_by_name.values()] == [
        "inference.GRPCInferenceService"
    ]
    assert [s.full_name for s in torchserve_open_inference_pb2.DESCRIPTOR.services_by_name.values()] == [
        "org.pytorch.serve.grpc.openinference.GRPCInferenceService"
    ]


def test_every_inference_message_has_tritons_fields_numbers_types_and_labels() -> None:
    assert _messages(open_inference_pb2) == _sorted(TRITON_MESSAGES)


def test_the_inference_service_is_tritons_minus_the_extensions_we_do_not_serve() -> None:
    assert _methods(open_inference_pb2) == TRITON_METHODS
    assert not {m[0] for m in _methods(open_inference_pb2)} & set(TRITON_NOT_SERVED)


def test_a_kserve_client_reads_every_field_it_knows_where_it_expects_it() -> None:
    ours = _messages(open_inference_pb2)
    for name, fields in _sorted(kserve_messages()).items():
        if name in KSERVE_REPOSITORY:
            assert name not in ours
            continue
        assert [f for f in ours[name] if f[1] in {k[1] for k in fields}] == fields, name
        extra = [f[0] for f in ours[name] if f not in fields]
        assert extra == ([] if name != "InferParameter" else ["double_param", "uint64_param"]), name
    served = [m for m in KSERVE_METHODS if m[0] not in ("RepositoryModelLoad", "RepositoryModelUnload")]
    assert [m for m in _methods(open_inference_pb2) if m[0] != "ModelStreamInfer"] == served


def test_the_torchserve_package_is_pytorch_serves_message_for_message() -> None:
    assert _messages(torchserve_open_inference_pb2) == _sorted(torchserve_messages())
    assert _methods(torchserve_open_inference_pb2) == TORCHSERVE_METHODS


@pytest.mark.parametrize("pb", [open_inference_pb2, torchserve_open_inference_pb2], ids=["inference", "torchserve"])
def test_every_parameters_field_is_a_map_from_string_to_infer_parameter(pb: ModuleType) -> None:
    package = pb.DESCRIPTOR.package
    entries = [name for name in _messages(pb) if name.endswith("ParametersEntry")]
    assert len(entries) == 5
    for name in entries:
        outer, _, entry = name.rpartition(".")
        descriptor = pb.DESCRIPTOR.message_types_by_name[outer.split(".")[0]]
        for part in outer.split(".")[1:]:
            descriptor = descriptor.nested_types_by_name[part]
        message = descriptor.nested_types_by_name[entry]
        assert message.GetOptions().map_entry, name
        assert _fields(message, package) == [
            ("key", 1, F.TYPE_STRING, OPT, ""),
            ("value", 2, F.TYPE_MESSAGE, OPT, "InferParameter"),
        ]
