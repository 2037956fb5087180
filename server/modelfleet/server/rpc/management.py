"""ManagementAPIsService (TorchServe's management API): register, unregister, scale, describe, list, set default.

Thin: each RPC converts the request (convert.py), calls one registry method and converts the
result to TorchServe's sentence or pretty JSON (shapes from torchserve_json.py). Registered by
app.py through status.add_servicer, which maps raised ModelFleetErrors to status codes. Only
RegisterModel and UnregisterModel need the model API enabled, exactly as TorchServe's
enable_model_api. The status mode also picks the two request readings where TorchServe's differ
from gRPC's usual ones (numbers ≤ 0 on RegisterModel, SetDefault without a version); the README's
compatibility table lists them.
"""

from __future__ import annotations

from grpc import aio

from modelfleet.protos import management_pb2
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.registry import ModelRegistry
from modelfleet.server.rpc import convert, torchserve_json
from modelfleet.server.settings import StatusMode

SERVICE = management_pb2.DESCRIPTOR.services_by_name["ManagementAPIsService"]
_Reply = management_pb2.ManagementResponse


class ManagementServicer:
    def __init__(self, registry: ModelRegistry, *, enable_model_api: bool, mode: StatusMode) -> None:
        self._registry = registry
        self._model_api = enable_model_api
        self._torchserve = mode == "torchserve"

    def _check_model_api(self) -> None:
        if not self._model_api:
            raise ModelFleetError(
                ErrorKind.PERMISSION_DENIED,
                Reason.MODEL_API_DISABLED,
                "Model API disabled",
                metadata={"hint": "start the server with --enable-model-api"},
            )

    async def RegisterModel(self, request: management_pb2.RegisterModelRequest, context: aio.ServicerContext) -> _Reply:
        self._check_model_api()
        spec = convert.register_spec(request, negative_is_unset=self._torchserve)
        result = await self._registry.register(spec)
        return convert.reply(
            convert.registered_sentence(
                result.key.name, result.key.version, result.workers, synchronous=spec.synchronous
            )
        )

    async def UnregisterModel(
        self, request: management_pb2.UnregisterModelRequest, context: aio.ServicerContext
    ) -> _Reply:
        self._check_model_api()
        name = convert.required("model_name", request.model_name)
        await self._registry.unregister(name, request.model_version or None)
        return convert.reply(convert.unregistered_sentence(name))

    async def ScaleWorker(self, request: management_pb2.ScaleWorkerRequest, context: aio.ServicerContext) -> _Reply:
        name = convert.required("model_name", request.model_name)
        version = request.model_version or None
        low, high = convert.scale_bounds(request)
        await self._registry.scale(
            name,
            version,
            min_workers=low,
            max_workers=high,
            synchronous=request.synchronous,
            timeout_s=request.timeout if request.timeout > 0 else None,
        )
        return convert.reply(convert.scaled_sentence(name, version, low, synchronous=request.synchronous))

    async def DescribeModel(self, request: management_pb2.DescribeModelRequest, context: aio.ServicerContext) -> _Reply:
        name = convert.required("model_name", request.model_name)
        # `customized` (TorchServe's describe_handle) runs archive handler code, which we never
        # run; the standard description is returned instead.
        described = self._registry.describe(name, request.model_version or None)
        return convert.json_reply(torchserve_json.describe_json(described))

    async def ListModels(self, request: management_pb2.ListModelsRequest, context: aio.ServicerContext) -> _Reply:
        page = self._registry.list_models(limit=request.limit, offset=request.next_page_token)
        return convert.json_reply(torchserve_json.page_json(page))

    async def SetDefault(self, request: management_pb2.SetDefaultRequest, context: aio.ServicerContext) -> _Reply:
        name = convert.required("model_name", request.model_name)
        if self._torchserve and not request.model_version:
            self._registry.get(name)  # TorchServe looks the model up first: "Model not found: <name>"
            raise convert.no_version_to_set(name)
        version = convert.required("model_version", request.model_version)
        self._registry.set_default(name, version)
        return convert.reply(convert.default_set_sentence(name, version))
