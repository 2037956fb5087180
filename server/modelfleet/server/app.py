"""Composition root: builds the registry, servicers, health, auth and reflection, runs the servers.

`serve(settings)` is what `python -m modelfleet.server` runs; `running_app(settings)` gives tests
the same server in-process. Order at start: bind and start every server (liveness answers at
once, `""` NOT_SERVING), then load the desired state (file, then --models). On SIGTERM/SIGINT:
health NOT_SERVING, drain delay, GOAWAY and grace for in-flight calls, close the registry, exit 0.
This module wires things together; it holds no request logic and maps no status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from grpc import StatusCode, aio

from modelfleet.protos import (
    inference_pb2_grpc,
    management_pb2_grpc,
    open_inference_pb2,
    open_inference_pb2_grpc,
    torchserve_open_inference_pb2,
    torchserve_open_inference_pb2_grpc,
)
from modelfleet.server.errors import ModelFleetError
from modelfleet.server.metrics import MetricsServer
from modelfleet.server.models.archive import ZipLimits
from modelfleet.server.models.desired_state import (
    DesiredState,
    apply_desired_state,
    missing_models,
    parse_startup_models,
    read_desired_state,
)
from modelfleet.server.models.devices import visible_devices
from modelfleet.server.models.loading import ModelLoader
from modelfleet.server.models.registry import ModelRegistry
from modelfleet.server.models.sources import SourceResolver
from modelfleet.server.rpc import inference, management, open_inference, status
from modelfleet.server.rpc.auth import INFERENCE, MANAGEMENT, TokenAuthInterceptor, TokenFileError, TokenStore
from modelfleet.server.rpc.decoding import DecodingInterceptor
from modelfleet.server.rpc.health import OVERALL_SERVICE, HealthServicer
from modelfleet.server.rpc.health import SERVICE_NAME as HEALTH_SERVICE
from modelfleet.server.rpc.health import SERVING as HEALTH_SERVING
from modelfleet.server.rpc.reflection import REFLECTION_SERVICES, enable_reflection
from modelfleet.server.rpc.transport import TransportError, bind, server_credentials, server_options
from modelfleet.server.settings import Settings

log = logging.getLogger("modelfleet.server")

STARTUP_ERRORS = (TransportError, TokenFileError, ModelFleetError, OSError)
"""Configuration problems that stop the server from starting (reported without a traceback)."""


def _with_port(address: str, port: int) -> str:
    host, _, _ = address.rpartition(":")
    return f"{host}:{port}"


class App:
    """One server process's worth of objects. start() → (serving) → stop(); not restartable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.health = HealthServicer(pod_uid=settings.network.pod_uid)
        self.registry: ModelRegistry | None = None
        self.tokens: TokenStore | None = None
        self.inference_port = 0
        self.management_port = 0
        self.health_port: int | None = None
        self.metrics_port: int | None = None
        self.desired_failures: list[str] = []
        """One message per desired-state model that failed to load (then `""` stays NOT_SERVING)."""
        self._servers: list[aio.Server] = []
        self._metrics: MetricsServer | None = None
        self._loading: asyncio.Task[None] | None = None
        self._desired_loaded = False
        self._desired = DesiredState()
        self._desired_met = False
        """Everything in the desired state was registered once; from then on the management API
        (the operator's cut-overs and removals) decides what runs and `""` follows the registry."""
        self._retrying: asyncio.Task[None] | None = None
        self._health_names: set[str] = set()
        self._stopped = False

    # ---- addresses --------------------------------------------------------------------------
    @property
    def inference_address(self) -> str:
        return _with_port(self.settings.network.inference_address, self.inference_port)

    @property
    def management_address(self) -> str:
        return _with_port(self.settings.network.management_address, self.management_port)

    # ---- start ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind and start every server, then begin loading the desired state in the background."""
        # Read the desired state before binding: a broken file is a startup error, not a pod
        # that listens but can never become ready.
        desired = self._desired_state()
        try:
            await self._start_servers()
        except BaseException:
            await self._close_resources(grace_s=0)
            raise
        self._loading = asyncio.get_running_loop().create_task(self._load(desired), name="desired-state")

    def _desired_state(self) -> DesiredState:
        models = self.settings.models
        parts: list[DesiredState] = []
        if models.desired_state_file is not None:
            parts.append(read_desired_state(models.desired_state_file))
        if models.startup_models:
            parts.append(parse_startup_models(models.startup_models))
        return DesiredState(tuple(model for part in parts for model in part.models))

    async def _start_servers(self) -> None:
        settings = self.settings
        network = settings.network
        mode = settings.status_mode
        registry = self.registry = ModelRegistry(
            settings.models,
            resolver=SourceResolver(settings.sources),
            loader=ModelLoader(
                settings.models,
                zip_limits=ZipLimits.of(settings.sources),
                max_request_bytes=settings.network.max_receive_message_bytes,
                max_response_bytes=settings.network.max_send_message_bytes,
            ),
            devices=visible_devices(settings.models.devices),
        )
        registry.subscribe(self._sync_health)
        interceptors: list[aio.ServerInterceptor] = []
        oip_services = (open_inference.SERVICE.full_name, open_inference.TORCHSERVE_SERVICE.full_name)
        if settings.auth.enabled:
            self.tokens = TokenStore(settings.auth)
            self.tokens.start()
            interceptors.append(
                TokenAuthInterceptor(
                    self.tokens,
                    {
                        inference.SERVICE.full_name: INFERENCE,
                        management.SERVICE.full_name: MANAGEMENT,
                        **{name: INFERENCE for name in oip_services},
                    },
                    (HEALTH_SERVICE, *REFLECTION_SERVICES),
                    code=status.token_denied_code(mode),
                    # Open Inference clients get gRPC's usual code whatever --status-mode says.
                    codes={name: StatusCode.UNAUTHENTICATED for name in oip_services},
                )
            )
        # After auth on purpose: a refused call is never parsed, so garbage without a token gets
        # the token error; every parsed body that is undecodable gets INVALID_ARGUMENT (decoding.py).
        decoding = DecodingInterceptor(mode)
        interceptors.append(decoding)
        credentials = server_credentials(settings.tls)
        options = server_options(network)

        inference_server = aio.server(interceptors=interceptors, options=options)
        status.add_servicer(
            inference_server,
            inference.InferenceServicer(registry, mode=mode),
            inference_pb2_grpc.add_InferenceAPIsServiceServicer_to_server,
            service=inference.SERVICE,
            mode=mode,
        )
        # The Open Inference Protocol under both package names, over the same registry and queues.
        for pb, add, service in (
            (
                open_inference_pb2,
                open_inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
                open_inference.SERVICE,
            ),
            (
                torchserve_open_inference_pb2,
                torchserve_open_inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
                open_inference.TORCHSERVE_SERVICE,
            ),
        ):
            servicer = open_inference.OpenInferenceServicer(
                registry,
                pb,
                ready=lambda: self.health.status(OVERALL_SERVICE) == HEALTH_SERVING,
                max_request_bytes=network.max_receive_message_bytes,
                max_response_bytes=network.max_send_message_bytes,
            )
            status.add_servicer(inference_server, servicer, add, service=service, mode=open_inference.STATUS_MODE)
        management_server = aio.server(interceptors=interceptors, options=options)
        status.add_servicer(
            management_server,
            management.ManagementServicer(registry, enable_model_api=settings.auth.enable_model_api, mode=mode),
            management_pb2_grpc.add_ManagementAPIsServiceServicer_to_server,
            service=management.SERVICE,
            mode=mode,
        )
        for server, names in (
            (inference_server, (inference.SERVICE.full_name, *oip_services)),
            (management_server, (management.SERVICE.full_name,)),
        ):
            self.health.add_to_server(server)
            if network.reflection:
                enable_reflection(server, names)
            self._servers.append(server)
        self.inference_port = bind(inference_server, network.inference_address, credentials)
        self.management_port = bind(management_server, network.management_address, credentials)
        if network.health_address is not None:
            # Plaintext and token-free on purpose: kubelet gRPC probes send neither TLS nor metadata.
            health_server = aio.server(interceptors=[decoding], options=options)
            self.health.add_to_server(health_server)
            self._servers.append(health_server)
            self.health_port = bind(health_server, network.health_address, None)
        if network.metrics_address is not None:
            self._metrics = MetricsServer(registry, network.metrics_address)
            self.metrics_port = self._metrics.port
        for server in self._servers:
            await server.start()
        scheme = "TLS" if credentials is not None else "plaintext"
        log.info("ModelFleet inference on %s (%s)", self.inference_address, scheme)
        log.info("ModelFleet management on %s (%s)", self.management_address, scheme)
        if self.health_port is not None and network.health_address is not None:
            log.info("ModelFleet health on %s (plaintext)", _with_port(network.health_address, self.health_port))
        if self.metrics_port is not None and network.metrics_address is not None:
            log.info("ModelFleet metrics on %s", _with_port(network.metrics_address, self.metrics_port))
        if self.tokens is not None and self.tokens.key_file is not None:
            log.info("Token auth on; generated tokens are in %s", self.tokens.key_file)

    async def _load(self, desired: DesiredState) -> None:
        assert self.registry is not None
        self._desired = desired
        if desired.models:
            log.info("Loading %d model(s) of the desired state", len(desired.models))
        # A model that fails is logged and `""` stays NOT_SERVING: a pod missing one of its
        # models must take no traffic. Liveness stays SERVING, so the kubelet does not restart a
        # pod whose failure a restart would not fix (a bad URL); the log and health say why.
        # What failed is retried with backoff (a model server or volume may come up later), and
        # `""` turns SERVING as soon as the registry holds everything, whoever registered it.
        try:
            self.desired_failures = await apply_desired_state(self.registry, desired)
        except Exception:  # a bug, not a bad model: keep serving what loaded, stay not ready
            log.exception("Loading the desired state failed unexpectedly")
            self.desired_failures = ["unexpected error while loading the desired state (see the log)"]
        self._desired_loaded = True
        if self.desired_failures:
            log.error(
                "Desired state incomplete; %s stays NOT_SERVING until it loads: %s",
                repr(OVERALL_SERVICE),
                "; ".join(self.desired_failures),
            )
            self._retrying = asyncio.get_running_loop().create_task(self._retry_missing(), name="desired-retry")
        elif desired.models:
            log.info("Desired state loaded")
        self._sync_health()

    async def _retry_missing(self) -> None:
        """Retry what is still missing, backing off from 1 s to 5 min; stops once all is there."""
        assert self.registry is not None
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            missing = missing_models(self.registry, self._desired)
            if self._desired_met or not missing.models:  # met meanwhile (the operator registered it)
                self.desired_failures = []
                self._sync_health()
                return
            self.desired_failures = await apply_desired_state(self.registry, missing)
            self._sync_health()
            if not self.desired_failures:
                log.info("Desired state loaded after retry")
                return
            delay = min(delay * 2, 300.0)

    async def wait_loaded(self) -> list[str]:
        """Wait until the desired state has been applied; returns the failure messages."""
        if self._loading is not None:
            await asyncio.shield(self._loading)
        return self.desired_failures

    # ---- health -----------------------------------------------------------------------------
    def _sync_health(self) -> None:
        """Registry changed: mirror every model/version name and the overall status into health."""
        registry = self.registry
        if registry is None:
            return
        view = registry.health_view()
        for gone in self._health_names - view.keys():
            self.health.remove(gone)
        for name, serving in view.items():
            self.health.set(name, serving)
        self._health_names = set(view)
        if not self._desired_met:
            self._desired_met = self._desired_loaded and not missing_models(registry, self._desired).models
        self.health.set(OVERALL_SERVICE, self._desired_met and registry.healthy())

    # ---- stop -------------------------------------------------------------------------------
    async def stop(self) -> None:
        """Drain: health NOT_SERVING, drain delay, GOAWAY + grace for in-flight calls, then close."""
        if self._stopped:
            return
        self._stopped = True
        shutdown = self.settings.shutdown
        log.info("Draining: health NOT_SERVING for %gs, then %gs grace", shutdown.drain_delay_s, shutdown.grace_s)
        self.health.set_all_not_serving()
        if shutdown.drain_delay_s > 0:
            # Time for load balancers and kubelet probes to see NOT_SERVING before listeners close.
            await asyncio.sleep(shutdown.drain_delay_s)
        await self._close_resources(grace_s=shutdown.grace_s)
        log.info("Stopped")

    async def _close_resources(self, *, grace_s: float) -> None:
        for task in (self._loading, self._retrying):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.health.close()  # open Watch streams end now instead of holding the grace period
        await asyncio.gather(*(server.stop(grace_s) for server in self._servers))
        if self._metrics is not None:
            self._metrics.stop()
        if self.tokens is not None:
            await self.tokens.stop()
        if self.registry is not None:
            await self.registry.close()


@contextlib.asynccontextmanager
async def running_app(settings: Settings, *, wait_loaded: bool = True) -> AsyncIterator[App]:
    """An App started in this process (tests); stopped with its drain on exit."""
    app = App(settings)
    await app.start()
    try:
        if wait_loaded:
            await app.wait_loaded()
        yield app
    finally:
        await app.stop()


async def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean drain, 1 when the server cannot start."""
    app = App(settings)
    try:
        await app.start()
    except STARTUP_ERRORS as exc:
        log.error("Cannot start: %s", exc)
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("Signal received")
        # A second signal during the drain changes nothing: the grace period bounds the wait.
        await app.stop()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0
