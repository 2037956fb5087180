"""Trusted handlers that stream (TorchServe's echo_stream) and keep sequence state (its stateful example),
over a real gRPC server on loopback: StreamPredictions, StreamPredictions2 and Predictions."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc import aio

from modelfleet.protos import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc
from modelfleet.server.app import running_app
from modelfleet.server.settings import (
    AuthSettings,
    ModelSettings,
    NetworkSettings,
    Settings,
    ShutdownSettings,
    SourceSettings,
)

import mf_polling as polling

ECHO_STREAM = """
def handle(call):
    for _ in range(3):
        yield b"hello"  # TorchServe: send_intermediate_predict_response(["hello"], ...)
    yield b"hello world "  # TorchServe: return ["hello world "]
"""

STATEFUL = """
import threading

STATEFUL = True
THREADS = {}
RELEASED = []


def handle(call):
    sequence = call.sequence
    if sequence is None:
        raise ValueError("this handler needs a sequence (StreamPredictions2 with sequence_id)")
    THREADS.setdefault(sequence.sequence_id, set()).add(threading.get_ident())
    value = int(call.inputs["data"])
    total = sequence.state.get("total", 0) + value
    sequence.state["total"] = total
    if value == 0:
        sequence.end()
    if value < 0:  # a streamed answer: the running total, then its negation
        yield str(total).encode()
    yield str(-total if value < 0 else total).encode()


def end_sequence(sequence):
    RELEASED.append((sequence.sequence_id, sequence.released, sequence.state.get("total")))
"""


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> ModuleType:
    """A handler module on sys.path, as if installed in the image; the test keeps the module object."""
    name = f"mf_stream_handler_{uuid.uuid4().hex[:12]}"
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module(name)
    monkeypatch.setitem(sys.modules, name, module)
    return module


class Client:
    def __init__(self, channel: aio.Channel, management: aio.Channel) -> None:
        self.inference = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        self.management = management_pb2_grpc.ManagementAPIsServiceStub(management)

    async def register(self, handler: str, *, name: str = "m", workers: int = 1) -> None:
        await self.management.RegisterModel(
            management_pb2.RegisterModelRequest(
                url="tiny.pt", model_name=name, handler=handler, initial_workers=workers, synchronous=True
            )
        )

    async def sequence(self, *requests: inference_pb2.PredictionsRequest) -> list[inference_pb2.PredictionResponse]:
        async def sent() -> AsyncIterator[inference_pb2.PredictionsRequest]:
            for request in requests:
                yield request

        return [response async for response in self.inference.StreamPredictions2(sent(), timeout=30)]

    async def ask(self, call: Any, one: inference_pb2.PredictionsRequest) -> inference_pb2.PredictionResponse:
        """One request on an open StreamPredictions2 call and its one response."""
        await call.write(one)
        response: inference_pb2.PredictionResponse = await call.read()
        return response


def request(data: str, sequence_id: str = "", *, model: str = "m", **markers: str) -> inference_pb2.PredictionsRequest:
    inputs = {"data": data.encode(), **{key: value.encode() for key, value in markers.items()}}
    return inference_pb2.PredictionsRequest(model_name=model, input=inputs, sequence_id=sequence_id or None)


@pytest.fixture
def serve(tmp_path: Path, tiny_model: Path, model_store: Path) -> Callable[..., Any]:
    @contextlib.asynccontextmanager
    async def start(*handlers: str, **model_settings: Any) -> AsyncIterator[Client]:
        settings = Settings(
            network=NetworkSettings(inference_address="127.0.0.1:0", management_address="127.0.0.1:0"),
            auth=AuthSettings(enabled=False, enable_model_api=True, key_file=tmp_path / "key_file.json"),
            sources=SourceSettings(model_store=model_store),
            models=ModelSettings(default_workers=1, trusted_handlers=handlers, **model_settings),
            shutdown=ShutdownSettings(drain_delay_s=0.0, grace_s=5.0),
        )
        async with running_app(settings) as app:
            channel = aio.insecure_channel(app.inference_address)
            management = aio.insecure_channel(app.management_address)
            try:
                yield Client(channel, management)
            finally:
                await channel.close()
                await management.close()

    return start


async def test_a_streaming_handler_sends_every_intermediate_response_then_the_final_one(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    echo = install(tmp_path, monkeypatch, ECHO_STREAM).__name__
    async with serve(echo) as client:
        await client.register(echo)
        call = client.inference.StreamPredictions(
            inference_pb2.PredictionsRequest(model_name="m", input={"data": b"Bloomberg has decided"}), timeout=30
        )
        chunks = [response.prediction.decode() async for response in call]
        assert " ".join(chunks) == "hello hello hello hello world "  # TorchServe's test_inference_stream_apis
        assert await call.code() == grpc.StatusCode.OK
        reply = await client.inference.Predictions(
            inference_pb2.PredictionsRequest(model_name="m", input={"data": b"x"}), timeout=30
        )
        assert reply.prediction == b"hello world "  # Predictions answers with the final response
        responses = await client.sequence(request("x", "s"))
        assert [(r.prediction, r.sequence_id) for r in responses] == [(b"hello", "s")] * 3 + [(b"hello world ", "s")]


async def test_each_sequence_keeps_its_own_state_on_one_worker(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = install(tmp_path, monkeypatch, STATEFUL)
    async with serve(handler.__name__) as client:
        await client.register(handler.__name__, workers=2)

        async def run(sequence_id: str) -> str:
            responses = await client.sequence(*(request(str(n), sequence_id) for n in (1, 2, 3)))
            assert {r.sequence_id for r in responses} == {sequence_id}
            return " ".join(r.prediction.decode() for r in responses)

        # TorchServe's test_inference_stream2_apis: two sequences at once, each sums its own inputs.
        assert await asyncio.gather(run("seq_0"), run("seq_1")) == ["1 3 6", "1 3 6"]
        assert all(len(threads) == 1 for threads in handler.THREADS.values()), handler.THREADS
        # A streamed answer inside a sequence: several responses for one request, the last one final.
        responses = await client.sequence(request("4", "seq_2"), request("-1", "seq_2"))
        assert [r.prediction for r in responses] == [b"4", b"3", b"-3"]
        # The call that used a sequence ended: its state was released.
        await polling.eventually(
            lambda: {("seq_0", "disconnect", 6), ("seq_1", "disconnect", 6)} <= set(handler.RELEASED),
            timeout=10,
            what="release at the end of the call",
        )


async def test_the_end_marker_releases_the_state_and_the_id_starts_afresh(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = install(tmp_path, monkeypatch, STATEFUL)
    async with serve(handler.__name__) as client:
        await client.register(handler.__name__)
        responses = await client.sequence(
            request("5", "a"), request("1", "a", ts_request_sequence_end="true"), request("2", "a")
        )
        assert [r.prediction for r in responses] == [b"5", b"6", b"2"]
        await polling.eventually(lambda: ("a", "end", 6) in handler.RELEASED, timeout=10, what="end released")
        # The handler may end its sequence itself (TorchServe's stateful example ends on 0).
        responses = await client.sequence(request("3", "b"), request("0", "b"), request("7", "b"))
        assert [r.prediction for r in responses] == [b"3", b"3", b"7"]
        await polling.eventually(lambda: ("b", "end", 3) in handler.RELEASED, timeout=10, what="handler end")


async def test_a_start_marker_without_an_id_opens_a_server_named_sequence(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = install(tmp_path, monkeypatch, STATEFUL)
    async with serve(handler.__name__) as client:
        await client.register(handler.__name__)
        call = client.inference.StreamPredictions2(timeout=30)
        opened = await client.ask(call, request("3", ts_request_sequence_start="true"))
        assert opened.sequence_id.startswith("ts-seq-") and opened.prediction == b"3"
        continued = await client.ask(call, request("4", opened.sequence_id))
        assert continued.prediction == b"7"
        await call.done_writing()
        [refused, answered] = await client.sequence(request("1"), request("1", "b"))
        assert refused.status.message == "Parameter sequenceId is required." and not refused.prediction
        assert answered.prediction == b"1"  # one refused request does not end the call


async def test_an_idle_sequence_is_released_after_the_timeout(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = install(tmp_path, monkeypatch, STATEFUL)
    async with serve(handler.__name__, sequence_idle_timeout_s=0.2) as client:
        await client.register(handler.__name__)
        call = client.inference.StreamPredictions2(timeout=30)
        assert (await client.ask(call, request("9", "idle"))).prediction == b"9"
        await polling.eventually(lambda: ("idle", "idle", 9) in handler.RELEASED, timeout=10, what="idle release")
        assert (await client.ask(call, request("1", "idle"))).prediction == b"1"  # a fresh sequence
        await call.done_writing()


async def test_one_sequence_over_the_limit_is_refused_in_band_and_the_call_goes_on(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = install(tmp_path, monkeypatch, STATEFUL)
    async with serve(handler.__name__, max_sequences=2) as client:
        await client.register(handler.__name__)
        responses = await client.sequence(request("1", "x"), request("2", "y"), request("3", "z"), request("4", "x"))
        assert [r.prediction for r in responses] == [b"1", b"2", b"", b"5"]
        refused = responses[2]
        assert refused.sequence_id == "z" and refused.status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert "no capacity for sequence z: 2 sequences are open" in refused.status.message
        described = await client.management.DescribeModel(management_pb2.DescribeModelRequest(model_name="m"))
        assert '"maxNumSequence": 2' in described.msg and '"stateful": true' in described.msg


async def test_a_client_that_breaks_off_releases_its_sequences(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = install(tmp_path, monkeypatch, STATEFUL)
    async with serve(handler.__name__) as client:
        await client.register(handler.__name__)
        call = client.inference.StreamPredictions2(timeout=30)
        await call.write(request("8", "gone"))
        assert (await call.read()).prediction == b"8"
        call.cancel()
        await polling.eventually(lambda: ("gone", "disconnect", 8) in handler.RELEASED, timeout=10, what="release")


async def test_unregistering_the_model_releases_its_open_sequences(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = install(tmp_path, monkeypatch, STATEFUL)
    async with serve(handler.__name__) as client:
        await client.register(handler.__name__)
        call = client.inference.StreamPredictions2(timeout=30)
        await client.ask(call, request("2", "u1"))
        await client.ask(call, request("3", "u2"))
        assert handler.RELEASED == []
        await client.management.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="m"))
        await polling.eventually(
            lambda: sorted(handler.RELEASED) == [("u1", "unregister", 2), ("u2", "unregister", 3)],
            timeout=10,
            what="unregister release",
        )
        call.cancel()


FLOOD = """
import threading

PRODUCED = []
STOPPED = threading.Event()


def handle(call):
    try:
        for i in range(1_000_000):
            PRODUCED.append(i)
            yield b"x" * 1024
    finally:
        STOPPED.set()
"""


async def test_a_client_that_stops_reading_cannot_make_the_server_buffer_a_whole_stream(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelfleet.server.models import workers

    flood = install(tmp_path, monkeypatch, FLOOD)
    async with serve(flood.__name__) as client:
        await client.register(flood.__name__)
        call = client.inference.StreamPredictions(
            inference_pb2.PredictionsRequest(model_name="m", input={"data": b"go"}), timeout=60
        )
        first = await call.read()
        assert first.prediction == b"x" * 1024
        # The client reads nothing more: the handler stalls once the server's window and gRPC's own
        # flow-control buffers are full, far short of the million responses it would produce.
        await polling.eventually(
            lambda: len(flood.PRODUCED) > workers.STREAM_WINDOW, timeout=10, what="the handler to fill its window"
        )
        samples: list[int] = []

        def stalled() -> bool:
            samples.append(len(flood.PRODUCED))
            return len(samples) >= 2 and samples[-1] == samples[-2]

        await polling.eventually(stalled, timeout=10, what="the handler to stall")
        assert len(flood.PRODUCED) < 20_000
        call.cancel()
        await polling.eventually(flood.STOPPED.is_set, timeout=10, what="the handler to stop after the client left")
