"""The desired state loads after the ports are up; `""` is NOT_SERVING until it has, and stays so on failure."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2

from modelfleet.server.settings import ModelSettings, SourceSettings

R = health_pb2.HealthCheckResponse


class HeldModelServer:
    """A loopback HTTP server that answers GET /tiny.pt only once the test releases it."""

    def __init__(self, payload: bytes) -> None:
        self.requested = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer.requested.set()
                outer.release.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def held(tmp_path: Path, make_model: Callable[..., Path]) -> Iterator[HeldModelServer]:
    source = make_model("served-over-http.pt")
    server = HeldModelServer(source.read_bytes())
    yield server
    server.close()


async def test_overall_health_waits_for_the_desired_state_while_the_server_answers(
    start_api: Callable[..., Any], make_model: Callable[..., Any], held: HeldModelServer, tmp_path: Path,
    model_store: Path, mode: str,
) -> None:  # fmt: skip
    make_model("local.pt", seed=3)
    state = tmp_path / "models.json"
    state.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "local", "versions": [{"url": "local.pt#version=1.0", "version": "1.0"}], "minWorkers": 1},
                    {
                        "name": "remote",
                        "defaultVersion": "2.0",
                        "versions": [
                            {"version": "1.0", "url": "local.pt#version=1.0"},
                            {"version": "2.0", "url": f"http://127.0.0.1:{held.port}/tiny.pt#version=2.0"},
                        ],
                        "minWorkers": 1,
                        "maxWorkers": 2,
                    },
                ]
            }
        )
    )
    models = ModelSettings(default_workers=1, desired_state_file=state)
    sources = SourceSettings(model_store=model_store, allowed_source_patterns=(r"http://127\.0\.0\.1:\d+/.*",))
    async with start_api(status_mode=mode, models=models, sources=sources, wait_loaded=False) as api:

        async def download_started() -> bool:
            return held.requested.is_set()

        await api.wait_for(download_started, what="the desired state's download to start")
        assert await api.check("") == R.NOT_SERVING
        assert await api.check("modelfleet.liveness") == R.SERVING
        assert await api.check("local") == R.SERVING  # loaded already; the pod as a whole is not ready
        assert json.loads((await api.inference.Ping(empty_pb2.Empty())).health)["status"] == "Healthy"
        held.release.set()

        async def overall_serving() -> bool:
            return await api.check("") == R.SERVING

        await api.wait_for(overall_serving, what='"" to become SERVING')
        assert await api.app.wait_loaded() == []
        (remote,) = await api.describe("remote")
        assert (remote["modelVersion"], remote["loadedAtStartup"], remote["maxWorkers"]) == ("2.0", True, 2)
        assert await api.check("remote/1.0") == R.SERVING
        assert len(await api.predict("remote")) == 4


async def test_a_model_that_fails_to_load_keeps_overall_health_not_serving(
    start_api: Callable[..., Any], make_model: Callable[..., Any], mode: str
) -> None:
    make_model("good.pt")
    models = ModelSettings(default_workers=1, startup_models=("good=good.pt", "bad=missing.pt"))
    async with start_api(status_mode=mode, models=models) as api:
        (failure,) = await api.app.wait_loaded()
        assert "bad" in failure and "missing.pt" in failure
        assert await api.check("") == R.NOT_SERVING
        assert await api.check("modelfleet.liveness") == R.SERVING
        assert await api.check("good") == R.SERVING
        assert len(await api.predict("good")) == 4
        # Changes to the registry later do not make a pod with a missing model ready.
        await api.register("good.pt", model_name="other")
        assert await api.check("") == R.NOT_SERVING

        # The missing file appears (a volume mounted late, a copy finished): the retry loads it
        # and the pod becomes ready by itself.
        make_model("missing.pt", seed=5)

        async def overall_serving() -> bool:
            return await api.check("") == R.SERVING

        await api.wait_for(overall_serving, what="the retry to load the late model")
        assert len(await api.predict("bad")) == 4


async def test_registering_the_missing_model_by_hand_makes_the_pod_ready(
    start_api: Callable[..., Any], make_model: Callable[..., Any], model_store: Path
) -> None:
    models = ModelSettings(default_workers=1, startup_models=("late=late.pt",))
    async with start_api(models=models) as api:
        assert len(await api.app.wait_loaded()) == 1
        assert await api.check("") == R.NOT_SERVING
        make_model("elsewhere.pt", seed=2)
        await api.register("elsewhere.pt", model_name="late")  # e.g. the operator converging the pod

        async def overall_serving() -> bool:
            return await api.check("") == R.SERVING

        await api.wait_for(overall_serving, what='"" to follow the registry')


async def test_after_the_desired_state_loaded_overall_health_follows_the_management_api(
    start_api: Callable[..., Any], make_model: Callable[..., Any], tmp_path: Path, model_store: Path
) -> None:
    """A version cut-over by the operator (register 2.0, SetDefault, unregister 1.0) leaves the pod
    ready although its start-time file still lists 1.0: the file is what a pod loads at start, not
    a condition it must keep meeting."""
    from modelfleet.protos import management_pb2

    make_model("tiny.pt", seed=1)
    make_model("tiny2.pt", seed=2)
    state = tmp_path / "models.json"
    state.write_text(json.dumps({"models": [
        {"name": "tiny", "defaultVersion": "1.0", "versions": [{"version": "1.0", "url": "tiny.pt#version=1.0"}]},
    ]}))  # fmt: skip
    models = ModelSettings(default_workers=1, desired_state_file=state)
    async with start_api(models=models, sources=SourceSettings(model_store=model_store)) as api:
        assert await api.app.wait_loaded() == []
        assert await api.check("") == R.SERVING
        await api.register("tiny2.pt#version=2.0", model_name="tiny")
        await api.management.SetDefault(management_pb2.SetDefaultRequest(model_name="tiny", model_version="2.0"))
        await api.management.UnregisterModel(
            management_pb2.UnregisterModelRequest(model_name="tiny", model_version="1.0")
        )
        assert [d["modelVersion"] for d in await api.describe("tiny", "all")] == ["2.0"]
        assert await api.check("") == R.SERVING
        await api.management.UnregisterModel(
            management_pb2.UnregisterModelRequest(model_name="tiny", model_version="2.0")
        )
        assert await api.check("") == R.SERVING  # nothing registered, nothing unhealthy: TorchServe's Ping too
