"""Server reflection, v1 and v1alpha, so grpcurl and other tools work without .proto files.

The app calls enable_reflection(server, names) on each API server unless --no-reflection.
grpcio-reflection 1.85 ships only v1alpha; grpc.reflection.v1 is wire-identical (same messages,
field numbers and method), so the same servicer answers at both paths. grpcurl 1.8.6 speaks only
v1alpha; newer clients try v1 first.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc import aio
from grpc_reflection.v1alpha import reflection, reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

from modelfleet.server.rpc.health import SERVICE_NAME as HEALTH_SERVICE

V1ALPHA_SERVICE: str = reflection.SERVICE_NAME
"""grpc.reflection.v1alpha.ServerReflection"""

V1_SERVICE = "grpc.reflection.v1.ServerReflection"
REFLECTION_SERVICES = (V1_SERVICE, V1ALPHA_SERVICE)

_V1_FILE = "grpc/reflection/v1/reflection.proto"
_V1ALPHA_PACKAGE = "grpc.reflection.v1alpha"
_V1_PACKAGE = "grpc.reflection.v1"


def enable_reflection(server: aio.Server, service_names: Iterable[str]) -> tuple[str, ...]:
    """Serve both reflection versions on `server`; returns the names it lists (sorted).

    The list always includes both reflection services and grpc.health.v1.Health, so callers pass
    only their own services (e.g. from the generated modules' DESCRIPTORs).
    """
    ensure_v1_descriptor()
    names = tuple(sorted({*service_names, *REFLECTION_SERVICES, HEALTH_SERVICE}))
    servicer = _ReflectionServicer(names)
    handlers = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    for service in REFLECTION_SERVICES:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        server.add_registered_method_handlers(service, handlers)
    return names


# grpc's classes are untyped (Any to mypy), hence the ignore on subclassing.
class _ReflectionServicer(ReflectionServicer):  # type: ignore[misc]
    """grpcio-reflection's servicer, plus symbol lookup of methods (`grpcurl describe Svc.Method`).

    protobuf's upb descriptor pool finds services, messages and fields by name but not methods,
    so grpcurl could call a method yet not describe it. A method name is answered with the file
    of its service, as the C++ and Go servers do. Overrides a private hook of grpcio-reflection;
    the grpcurl describe test catches a change there.
    """

    def _file_containing_symbol(
        self, request: reflection_pb2.ServerReflectionRequest, fully_qualified_name: str
    ) -> reflection_pb2.ServerReflectionResponse:
        reply = super()._file_containing_symbol(request, fully_qualified_name)
        if reply.HasField("error_response"):
            service_name, _, method = fully_qualified_name.rpartition(".")
            try:
                service = self._pool.FindServiceByName(service_name)
            except KeyError:
                return reply
            if method in service.methods_by_name:
                return super()._file_containing_symbol(request, service_name)
        return reply


def ensure_v1_descriptor() -> None:
    """Put grpc/reflection/v1/reflection.proto in the default pool so `describe` works on v1.

    Idempotent. A grpcio-reflection that ships v1 is imported instead, so we never register a
    second, different file under the same name. Our copy is the v1alpha file renamed: the
    messages, fields and numbers are those of the official v1 file; its language options are
    left out (they only steer code generators).
    """
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    if importlib.util.find_spec("grpc_reflection.v1") is not None:  # a future grpcio-reflection
        importlib.import_module("grpc_reflection.v1.reflection_pb2")
        return
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = _V1_FILE
    proto.package = _V1_PACKAGE
    proto.ClearField("options")
    old, new = f".{_V1ALPHA_PACKAGE}.", f".{_V1_PACKAGE}."
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old) :]
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old) :]
            method.output_type = new + method.output_type[len(old) :]
    pool.AddSerializedFile(proto.SerializeToString())
