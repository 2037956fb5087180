"""Model registry: name → versions → default; the single source of truth for every RPC.

The servicers call one method each (register, unregister, scale, set_default, describe,
list_models, predict, stream). Everything runs on the event loop except model loading (a thread)
and model execution (worker threads, see workers.py). Observers (health) subscribe to changes.
Limits (limits.py) are checked before any change, counting registrations still loading, so a
refused request changes nothing and concurrent ones cannot overshoot.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ErrorKind, ModelFleetError, Reason, model_not_found, version_not_found
from ..names import check_lookup, check_model_name, check_version
from ..settings import ModelSettings
from . import devices as devices_mod
from .batching import BatchPolicy, JobQueue
from .contracts import LoadedModel, RegisterSpec, ResolvedSource, StreamRequest
from .describe import ListedModel, ModelPage, VersionDescription, describe_workers
from .fastpath import LoneCall
from .inflight import InFlight
from .limits import Limits
from .sequences import SequenceRequest, SequenceSession, SequenceTable
from .workers import WorkerPool

if TYPE_CHECKING:
    from .loading import ModelLoader
    from .sources import SourceResolver

log = logging.getLogger(__name__)

LIST_DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class VersionKey:
    name: str
    version: str


@dataclass(frozen=True)
class RegisterResult:
    key: VersionKey
    workers: int


@dataclass
class ModelVersion:
    """One loaded version with its settings and worker pool."""

    key: VersionKey
    spec: RegisterSpec
    source: ResolvedSource
    loaded: LoadedModel
    pool: WorkerPool
    min_workers: int
    max_workers: int
    batch_size: int
    max_batch_delay_ms: int
    response_timeout_s: int
    startup_timeout_s: int
    loaded_at_startup: bool = False
    sequences: SequenceTable | None = None
    """Open StreamPredictions2 sequences; set when the handler is stateful."""

    @property
    def serving(self) -> bool:
        return self.pool.ready_count >= max(1, self.min_workers)


@dataclass
class Model:
    name: str
    default: str
    versions: dict[str, ModelVersion] = field(default_factory=dict)


def _positive_or(value: int, default: int) -> int:
    return value if value > 0 else default


class ModelRegistry:
    def __init__(
        self,
        settings: ModelSettings,
        *,
        resolver: SourceResolver,
        loader: ModelLoader,
        devices: Sequence[str],
        cpus: int | None = None,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.loader = loader
        self.devices = list(devices) or ["cpu"]
        self.cpus = cpus or devices_mod.usable_cpus()
        self.default_workers = settings.default_workers or devices_mod.default_worker_count(self.devices, self.cpus)
        self.limits = Limits.from_settings(settings, devices=self.devices, cpus=self.cpus)
        self._device_cycle = itertools.cycle(self.devices)
        self._models: dict[str, Model] = {}
        self._loading: dict[VersionKey, int] = {}
        """Registrations between identify and commit → the workers each will start; every limit counts them."""
        self._subscribers: list[Callable[[], None]] = []
        self._threads_for: int | None = None
        self.in_flight = InFlight()
        """Calls of every version inside predict/stream (each version's own count is its queue's)."""
        self.lone_calls = LoneCall(self.in_flight)
        """Whether a call is the only one in flight server-wide (the fast path's first test, fastpath.py)."""

    # ---- observers --------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[], None]) -> None:
        self._subscribers.append(callback)

    def _changed(self) -> None:
        for callback in self._subscribers:
            try:
                callback()
            except Exception:
                log.exception("registry subscriber failed")

    def health_view(self) -> dict[str, bool]:
        view: dict[str, bool] = {}
        for model in self._models.values():
            for version in model.versions.values():
                view[f"{model.name}/{version.key.version}"] = version.serving
            view[model.name] = model.versions[model.default].serving
        return view

    def healthy(self) -> bool:
        return all(model.versions[model.default].serving for model in self._models.values())

    # ---- lookups ----------------------------------------------------------------------------
    def _model(self, name: str) -> Model:
        check_lookup(name)
        model = self._models.get(name)
        if model is None:
            raise model_not_found(name)
        return model

    def _version(self, name: str, version: str | None) -> ModelVersion:
        check_lookup(name, version)
        model = self._model(name)
        found = model.versions.get(version or model.default)
        if found is None:
            raise version_not_found(name, version or "")
        return found

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """The registered version (default when version is None/empty); raises NOT_FOUND."""
        return self._version(name, version)

    # ---- management -------------------------------------------------------------------------
    async def register(self, spec: RegisterSpec, *, at_startup: bool = False) -> RegisterResult:
        if not spec.url:
            raise ModelFleetError(ErrorKind.INVALID_ARGUMENT, Reason.MISSING_FIELD, "url is required")
        if spec.model_name:
            check_model_name(spec.model_name)
        if spec.batch_size < 0 or spec.max_batch_delay_ms < 0 or spec.initial_workers < 0:
            raise ModelFleetError(
                ErrorKind.INVALID_ARGUMENT,
                Reason.BAD_INPUT,
                "batch_size, max_batch_delay and initial_workers must not be negative",
            )
        workers = _positive_or(spec.initial_workers, self.default_workers)
        self._check_request(spec, workers)  # before resolve: nothing is downloaded for a request that cannot pass
        source = await self.resolver.resolve(spec.url)
        identity = await asyncio.to_thread(self.loader.identify, source, spec)
        key = VersionKey(check_model_name(identity.name), check_version(identity.version))
        self._reserve(key, workers)
        startup_timeout = _positive_or(spec.startup_timeout_s, self.settings.default_startup_timeout_s)
        try:
            try:
                loaded = await asyncio.wait_for(
                    asyncio.to_thread(self.loader.load, source, spec, identity), startup_timeout
                )
            except TimeoutError:
                raise ModelFleetError(
                    ErrorKind.DEADLINE_EXCEEDED,
                    Reason.LOAD_TIMEOUT,
                    f"Loading {key.name} version {key.version} took longer than {startup_timeout}s",
                ) from None
            version = self._new_version(key, spec, source, loaded, workers=workers, at_startup=at_startup)
            model = self._models.get(key.name)
            if model is None:
                model = self._models[key.name] = Model(key.name, default=key.version)
            model.versions[key.version] = version
        finally:
            self._loading.pop(key, None)
        version.pool.scale(workers)
        self._retune_threads()
        log.info("registered %s version %s with %d workers", key.name, key.version, workers)
        if spec.synchronous:
            try:
                await version.pool.wait_ready(workers, startup_timeout)
            except ModelFleetError:
                # As TorchServe does: a synchronous register whose workers do not start is undone, so
                # the caller's error means "not registered" and a retry is not ALREADY_EXISTS.
                owner = self._models.get(key.name)
                if owner is not None and owner.versions.get(key.version) is version:  # not unregistered meanwhile
                    self._remove(version)
                raise
        return RegisterResult(key, workers)

    def _check_request(self, spec: RegisterSpec, workers: int) -> None:
        self.limits.check_values(
            batch_size=spec.batch_size,
            max_batch_delay_ms=spec.max_batch_delay_ms,
            response_timeout_s=spec.response_timeout_s,
        )
        self.limits.check_version_workers(
            workers, what="initial_workers" if spec.initial_workers > 0 else "the default worker count"
        )
        self.limits.check_total_workers(self._worker_total(), adding=workers)

    def _reserve(self, key: VersionKey, workers: int) -> None:
        """Count `key` as held from now on; no await between these checks and the reservation."""
        self._refuse_duplicate(key)
        names = set(self._models) | {loading.name for loading in self._loading} | {key.name}
        model = self._models.get(key.name)
        versions = (len(model.versions) if model else 0) + sum(1 for k in self._loading if k.name == key.name)
        self.limits.check_models(len(names), model=key.name)
        self.limits.check_versions(versions + 1, model=key.name)
        self.limits.check_total_workers(self._worker_total(), adding=workers)
        self._loading[key] = workers

    def _worker_total(self) -> int:
        """Worker threads of every version plus those registrations still loading will start."""
        running = sum(len(v.pool.workers) for m in self._models.values() for v in m.versions.values())
        return running + sum(self._loading.values())

    def _refuse_duplicate(self, key: VersionKey) -> None:
        model = self._models.get(key.name)
        if key in self._loading or (model is not None and key.version in model.versions):
            raise ModelFleetError(
                ErrorKind.ALREADY_EXISTS,
                Reason.ALREADY_EXISTS,
                f"Model version {key.version} is already registered for model {key.name}",
                metadata={"model": key.name, "version": key.version},
            )

    def _new_version(
        self,
        key: VersionKey,
        spec: RegisterSpec,
        source: ResolvedSource,
        loaded: LoadedModel,
        *,
        workers: int,
        at_startup: bool,
    ) -> ModelVersion:
        settings = self.settings
        batch_size = _positive_or(spec.batch_size, settings.default_batch_size)
        delay_ms = spec.max_batch_delay_ms if spec.max_batch_delay_ms > 0 else settings.default_max_batch_delay_ms
        timeout_s = _positive_or(spec.response_timeout_s, settings.default_response_timeout_s)
        queue = JobQueue(
            capacity=settings.job_queue_size,
            policy=BatchPolicy(batch_size, delay_ms / 1000.0, settings.adaptive_batching),
        )
        pool = WorkerPool(
            name=f"{key.name}/{key.version}",
            loaded=loaded,
            queue=queue,
            response_timeout_s=timeout_s,
            loop=asyncio.get_running_loop(),
            on_change=self._changed,
            next_device=lambda: next(self._device_cycle),
        )
        sequences = None
        if loaded.handler.stateful:
            sequences = SequenceTable(
                name=pool.name,
                pool=pool,
                handler=loaded.handler,
                idle_timeout_s=settings.sequence_idle_timeout_s,
                max_sequences=settings.max_sequences,
            )
        return ModelVersion(
            sequences=sequences,
            key=key,
            spec=spec,
            source=source,
            loaded=loaded,
            pool=pool,
            min_workers=workers,
            max_workers=workers,
            batch_size=batch_size,
            max_batch_delay_ms=delay_ms,
            response_timeout_s=timeout_s,
            startup_timeout_s=_positive_or(spec.startup_timeout_s, settings.default_startup_timeout_s),
            loaded_at_startup=at_startup,
        )

    async def unregister(self, name: str, version: str | None) -> VersionKey:
        model = self._model(name)
        target = self._version(name, version)
        if target.key.version == model.default and len(model.versions) > 1:
            raise ModelFleetError(
                ErrorKind.FAILED_PRECONDITION,
                Reason.DEFAULT_VERSION_IN_USE,
                f"Cannot remove default version {model.default} for model {name}; set another default version first",
                metadata={"model": name, "version": model.default},
            )
        self._remove(target)
        log.info("unregistered %s version %s", name, target.key.version)
        return target.key

    def _remove(self, target: ModelVersion) -> None:
        """Drop a version, fail its queued requests and free it (unregister, or an undone register)."""
        name = target.key.name
        model = self._models[name]
        del model.versions[target.key.version]
        if not model.versions:
            del self._models[name]
        elif model.default == target.key.version:  # only when undoing a register raced by another
            model.default = next(iter(model.versions))
        _close_version(target, version_not_found(name, target.key.version))
        self._retune_threads()

    async def scale(
        self,
        name: str,
        version: str | None,
        *,
        min_workers: int,
        max_workers: int,
        synchronous: bool,
        timeout_s: float | None,
    ) -> VersionKey:
        target = self._version(name, version)
        low = _positive_or(min_workers, 1)
        high = _positive_or(max_workers, low)
        if high < low:
            raise ModelFleetError(
                ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT, "max_worker cannot be less than min_worker."
            )
        self.limits.check_version_workers(low, what="min_worker")
        self.limits.check_version_workers(high, what="max_worker")
        current = len(target.pool.workers)
        if low > current:  # scaling down is always allowed, even above a limit lowered since
            self.limits.check_total_workers(self._worker_total(), adding=low - current)
        target.min_workers, target.max_workers = low, high
        target.pool.scale(low)
        self._retune_threads()
        if synchronous:
            await target.pool.wait_ready(low, timeout_s if timeout_s and timeout_s > 0 else target.startup_timeout_s)
        return target.key

    def set_default(self, name: str, version: str) -> None:
        check_lookup(name, version)
        model = self._model(name)
        if version not in model.versions:
            raise version_not_found(name, version)
        if model.default != version:
            model.default = version
            self._changed()

    def _retune_threads(self) -> None:
        """Size torch's intra-op pool so all workers together use about the CPUs we may use."""
        total = sum(len(v.pool.workers) for m in self._models.values() for v in m.versions.values())
        threads = devices_mod.intra_op_threads(self.cpus, total)
        if threads != self._threads_for:
            import torch

            torch.set_num_threads(threads)
            self._threads_for = threads

    # ---- queries ----------------------------------------------------------------------------
    def describe(self, name: str, version: str | None) -> list[VersionDescription]:
        """`version` "all" gives every version in version order; None gives the default."""
        model = self._model(name)
        if version == "all":
            chosen = [model.versions[v] for v in sorted(model.versions)]
        else:
            chosen = [self._version(name, version)]
        return [self._describe(v) for v in chosen]

    def _describe(self, version: ModelVersion) -> VersionDescription:
        workers = describe_workers(version.pool)
        pending = len(version.pool.queue)
        sequences = version.sequences
        return VersionDescription(
            name=version.key.name,
            version=version.key.version,
            url=version.source.url,
            engine=version.loaded.load_info.engine,
            min_workers=version.min_workers,
            max_workers=version.max_workers,
            batch_size=version.batch_size,
            max_batch_delay_ms=version.max_batch_delay_ms,
            response_timeout_s=version.response_timeout_s,
            startup_timeout_s=version.startup_timeout_s,
            device_ids=tuple(sorted({w.device_index for w in workers if w.device_index is not None})),
            stateful=sequences is not None,
            sequence_idle_timeout_s=sequences.idle_timeout_s if sequences is not None else 0.0,
            max_sequences=sequences.max_sequences if sequences is not None else 0,
            loaded_at_startup=version.loaded_at_startup,
            workers=workers,
            queue_pending=pending,
            queue_remaining=max(0, self.settings.job_queue_size - pending),
        )

    def list_models(self, *, limit: int, offset: int) -> ModelPage:
        """Models in name order; an unset (0) limit gives the documented 100, not an empty page."""
        if limit <= 0 or limit > LIST_DEFAULT_LIMIT:
            limit = LIST_DEFAULT_LIMIT
        offset = max(0, offset)
        names = sorted(self._models)
        page = names[offset : offset + limit]
        return ModelPage(
            models=tuple(
                ListedModel(name, self._models[name].versions[self._models[name].default].source.url) for name in page
            ),
            next_offset=offset + limit if offset + limit < len(names) else None,
        )

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def versions(self) -> list[ModelVersion]:
        """Every registered version (metrics read them at scrape time)."""
        return [v for m in self._models.values() for v in m.versions.values()]

    # ---- inference --------------------------------------------------------------------------
    async def predict(
        self, name: str, version: str | None, inputs: Mapping[str, bytes], *, deadline: float | None
    ) -> bytes:
        """One request's answer (the default version when `version` is None/empty)."""
        return await self.predict_on(self._version(name, version), inputs, deadline=deadline)

    async def predict_on(self, target: ModelVersion, inputs: Mapping[str, bytes], *, deadline: float | None) -> bytes:
        """One request's answer from a version the caller already looked up (get) with no await since.
        Counted in flight (server-wide and per version) until it is back here."""
        pool = target.pool
        with self._counted(pool):
            if self.in_flight.now == 1 and pool.inline_ready(inputs) and self.lone_calls.admits():
                return pool.run_inline(inputs, deadline)
            return await pool.submit(inputs, deadline)

    @contextlib.contextmanager
    def _counted(self, pool: WorkerPool) -> Iterator[None]:
        """A call in flight, server-wide and for its version (inflight.py), until the block ends."""
        total, calls = self.in_flight, pool.queue.in_flight
        total.enter()
        calls.enter()
        try:
            yield
        finally:
            total.leave()
            calls.leave()

    async def stream(
        self,
        name: str,
        version: str | None,
        inputs: Mapping[str, bytes],
        *,
        deadline: float | None,
        sequence: SequenceRequest | None = None,
        session: SequenceSession | None = None,
    ) -> AsyncIterator[bytes]:
        """Responses of one streaming request; a handler that does not stream yields its one result.

        `sequence` (StreamPredictions2): a stateful handler runs it on the sequence's worker with its state.
        """
        target = self._version(name, version)
        async for chunk in self.stream_on(target, inputs, deadline=deadline, sequence=sequence, session=session):
            yield chunk

    async def stream_on(
        self,
        target: ModelVersion,
        inputs: Mapping[str, bytes],
        *,
        deadline: float | None,
        sequence: SequenceRequest | None = None,
        session: SequenceSession | None = None,
    ) -> AsyncIterator[bytes]:
        """stream() for a version the caller already looked up (get) with no await since."""
        with self._counted(target.pool):
            async for chunk in self._stream(target, inputs, deadline=deadline, sequence=sequence, session=session):
                yield chunk

    async def _stream(
        self,
        target: ModelVersion,
        inputs: Mapping[str, bytes],
        *,
        deadline: float | None,
        sequence: SequenceRequest | None,
        session: SequenceSession | None,
    ) -> AsyncIterator[bytes]:
        handler = target.loaded.handler
        if sequence is not None and target.sequences is not None:
            async for chunk in target.sequences.run(sequence, inputs, deadline=deadline, session=session):
                yield chunk
            return
        workers = target.pool.workers
        own = handler.open_stream(StreamRequest(inputs, workers[0].device if workers else "cpu", deadline))
        if own is not None:
            async for chunk in own:
                yield chunk
        elif handler.streams:
            async for chunk in target.pool.stream(inputs, deadline):
                yield chunk
        else:
            yield await target.pool.submit(inputs, deadline)

    async def close(self) -> None:
        for model in list(self._models.values()):
            for version in model.versions.values():
                _close_version(
                    version, ModelFleetError(ErrorKind.UNAVAILABLE, Reason.SHUTTING_DOWN, "Server is shutting down")
                )
        self._models.clear()


def _close_version(version: ModelVersion, error: ModelFleetError) -> None:
    """Release its sequences (their hooks queue on the workers), fail its queue, close its handler."""
    if version.sequences is not None:
        version.sequences.close()
    version.pool.close(error)
    loaded = version.loaded
    try:
        loaded.handler.close()
    except Exception:
        log.exception("closing %s version %s failed", loaded.name, loaded.version)
