"""InferenceAPIsService (TorchServe's inference API): Ping, Predictions, StreamPredictions, StreamPredictions2.

Thin: each RPC converts the request (convert.py), calls one registry method and converts the
result. Registered by app.py through status.add_servicer, which maps raised ModelFleetErrors to
status codes; only StreamPredictions2 reports errors itself, in-band, as TorchServe does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import empty_pb2
from grpc import aio

from modelfleet.protos import inference_pb2
from modelfleet.server.errors import ModelFleetError
from modelfleet.server.models.registry import ModelRegistry
from modelfleet.server.models.sequences import SequenceSession
from modelfleet.server.rpc import convert, status
from modelfleet.server.settings import StatusMode

SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceAPIsService"]
_Response = inference_pb2.PredictionResponse


class InferenceServicer:
    def __init__(self, registry: ModelRegistry, *, mode: StatusMode) -> None:
        self._registry = registry
        # StreamPredictions2 sends errors inside its responses, coded like the others.
        self._in_band_codes = status.codes_for("StreamPredictions2", mode)

    async def Ping(
        self, request: empty_pb2.Empty, context: aio.ServicerContext
    ) -> inference_pb2.TorchServeHealthResponse:
        return convert.ping_reply(self._registry.healthy())

    async def Predictions(
        self, request: inference_pb2.PredictionsRequest, context: aio.ServicerContext
    ) -> inference_pb2.PredictionResponse:
        name, version = convert.prediction_target(request)
        prediction = await self._registry.predict(name, version, request.input, deadline=convert.deadline(context))
        return _Response(prediction=prediction)

    async def StreamPredictions(
        self, request: inference_pb2.PredictionsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[inference_pb2.PredictionResponse]:
        name, version = convert.prediction_target(request)
        async for chunk in self._registry.stream(name, version, request.input, deadline=convert.deadline(context)):
            yield _Response(prediction=chunk)

    async def StreamPredictions2(
        self, requests: AsyncIterator[inference_pb2.PredictionsRequest], context: aio.ServicerContext
    ) -> AsyncIterator[inference_pb2.PredictionResponse]:
        """One request at a time, in order; a failed request gets one response with `status` set.

        The call itself ends OK (TorchServe's behaviour), so one bad request does not end the
        sequence. Responses carry the request's sequence_id (the server's `ts-seq-<uuid>` when the
        request only asked to start one). When the call ends, however it ends, the sequences it used
        are released: grpc.aio ends the request stream of a cancelled call as if the client had
        half-closed, so "client gone" cannot be told from "client done".
        """
        session = SequenceSession()
        try:
            async for request in requests:
                sequence = request.sequence_id or None  # echoed; None leaves the field unset
                try:
                    wanted, inputs = convert.sequence_request(request)
                    sequence = wanted.sequence_id
                    name, version = convert.prediction_target(request)
                    async for chunk in self._registry.stream(
                        name, version, inputs, deadline=convert.deadline(context), sequence=wanted, session=session
                    ):
                        yield _Response(prediction=chunk, sequence_id=sequence)
                except ModelFleetError as error:
                    yield _Response(sequence_id=sequence, status=status.in_band_status(error, self._in_band_codes))
        finally:
            session.disconnect()
