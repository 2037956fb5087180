"""Seeded fuzzer against a real `python -m modelfleet.server`: every RPC, garbage bodies, churn.

Every RPC: TorchServe's inference and management APIs, the Open Inference API under both package
names (inference.GRPCInferenceService, org.pytorch.serve.grpc.openinference.GRPCInferenceService;
messages from fuzz_oip.py), health and reflection.

Short mode is a test (tests/server/attack/test_seeded_fuzzer.py: 5,000 messages, fixed seed);
long mode runs from here: `.venv/bin/python benchmarks/fuzz.py --messages 200000 --seed 7`.
Phases: warm-up (first-use costs, then the start RSS), concurrent (fuzz workers plus a churn task
registering, predicting, setting defaults, scaling and unregistering while predictions run), then
sequential (a state snapshot around every call: refused calls must change nothing). Checks: the
server stays alive and answers health at the end, every call ends before its deadline, no
INTERNAL/UNKNOWN for client input (torchserve mode: only status.py's documented quirks), bad
tokens are refused, undecodable bodies get INVALID_ARGUMENT, well-formed predictions on the base
models succeed whatever their batch-mates, no "Traceback" in the log, RSS bounded (see RssBound).
Open Inference RPCs answer only the codes fuzz_oip.ALLOWED (UNAUTHENTICATED for bad tokens in either
mode), in-band stream errors are never INTERNAL nor echoes of megabytes, and in the sequential phase a
probe on each package after every message must get the answer it got at the start. The server's
thread count is bounded like its RSS (THREAD_GROWTH).
Every failure names its seed and message index: `--replay INDEX` resends that one message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import shutil
import socket
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.errors import Reason
from modelfleet.server.rpc import status
from modelfleet.server.rpc.error_details import error_info_from_trailer

import fuzz_messages as fm
import fuzz_oip as oip
from server_process import ServerProcess, read_kib

C = grpc.StatusCode
DEFAULT_SEED = 20240610
MAX_DETAILS = 2048
"""Longest error message accepted: echoed client strings must be truncated (issue 10, finding 4)."""
HANG_MARGIN_S = 0.25
"""A DEADLINE_EXCEEDED seen this close to the call's own deadline means the server never answered."""
MAX_REQUEST_BYTES = 6_553_500
PEAK_COPIES = 8
"""Copies of one in-flight request the peak-RSS bound allows (gRPC buffer, bytes, protobuf, decoded
input, batch tensor, echo...): peak ≤ start + concurrency × largest request × PEAK_COPIES + 256 MiB."""
END_GROWTH = 0.10
"""End RSS may exceed the start RSS by this fraction (both taken with only the base models loaded)."""
SERVER_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
"""glibc: every buffer over 64 KiB is its own mapping, returned to the OS when freed. Without it the
allocator keeps what the last big requests needed and RSS swings by ±100 MiB between checkpoints
of one campaign while Python's traced memory stays flat (measured with tracemalloc): the bound
would measure the allocator's cache, not leaks. With it, 20,000 messages: start 271, end 285 MiB."""
THREAD_GROWTH = 24
"""Threads the server may have above its start count at a checkpoint (fuzz models removed): the base
models' workers, the executor's threads that registering starts once (up to min(32, cores + 4)), gRPC's.
A thread leaked per call or per stream crosses it within a quarter of a campaign."""
STREAM_WRITE_S = 2.0
"""How long a ModelStreamInfer client that reads nothing keeps writing before it cancels."""
CLIENT_LOST_STATUS = "Internal error from Core"
"""What the grpc aio *client* reports when a server ends a request stream while the client is still
writing (grpc's AioCall.set_internal_error; the server never sends this text). Such an outcome says
nothing about the server's code, so for request-streaming calls it is counted, not judged. fuzz.py also
puts it on a ModelStreamInfer whose write the server cut off and that the grpc client then cancelled
itself (CANCELLED without the server's status)."""
CLIENT_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str = ""
    reason: str | None = None
    elapsed_s: float = 0.0
    responses: list[bytes] = field(default_factory=list)


@dataclass
class Failure:
    seed: int
    index: int
    phase: str
    message: str
    outcome: str
    problem: str

    def line(self) -> str:
        return (
            f"seed={self.seed} index={self.index} phase={self.phase}: {self.problem}\n"
            f"    sent: {self.message}\n    got:  {self.outcome}"
        )


@dataclass
class Report:
    seed: int
    messages: int = 0
    elapsed_s: float = 0.0
    codes: dict[str, int] = field(default_factory=dict)
    methods: dict[str, int] = field(default_factory=dict)
    churn_cycles: int = 0
    rss_start_kib: int = 0
    rss_end_kib: int = 0
    rss_peak_kib: int = 0
    rss_checkpoints_kib: list[int] = field(default_factory=list)
    """RSS after each quarter of the concurrent phase (fuzz models removed): a leak rises steadily."""
    threads_start: int = 0
    threads_end: int = 0
    threads_checkpoints: list[int] = field(default_factory=list)
    """Server threads after each quarter of the concurrent phase (fuzz models removed)."""
    probes: int = 0
    """Open Inference probes answered correctly in the sequential phase (one after every message)."""
    health_latency_s: float = 0.0
    log_tracebacks: int = 0
    log_errors: int = 0
    log_undecodable_warnings: int = 0
    client_lost_status: int = 0
    """Request-streaming calls whose status the grpc client lost (CLIENT_LOST_STATUS); not judged."""
    failures: list[Failure] = field(default_factory=list)

    def summary(self) -> str:
        mib = lambda kib: f"{kib / 1024:,.0f}"  # noqa: E731
        rate = self.messages / self.elapsed_s if self.elapsed_s else 0.0
        lines = [
            f"seed {self.seed}: {self.messages:,} messages in {self.elapsed_s:.1f} s ({rate:,.0f}/s), "
            f"{self.churn_cycles} churn cycles",
            f"RSS MiB: start {mib(self.rss_start_kib)}  end {mib(self.rss_end_kib)}  peak {mib(self.rss_peak_kib)}"
            f"  (after each quarter: {', '.join(mib(k) for k in self.rss_checkpoints_kib)})",
            f"threads: start {self.threads_start}  end {self.threads_end}  (after each quarter: "
            f"{', '.join(map(str, self.threads_checkpoints))}); {self.probes} probes answered correctly",
            f"health at the end: {self.health_latency_s * 1000:.1f} ms; log: {self.log_tracebacks} tracebacks, "
            f"{self.log_errors} ERROR lines, {self.log_undecodable_warnings} undecodable-body warnings; "
            f"{self.client_lost_status} stream statuses lost by the grpc client",
            "codes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.codes.items(), key=lambda kv: -kv[1])),
            f"failures: {len(self.failures)}",
        ]
        lines += [failure.line() for failure in self.failures[:30]]
        return "\n".join(lines)


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released): http sources fail fast there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_store(workdir: Path, seed: int) -> Path:
    """tiny.pt, mlp.pt and hostile files in a fresh store; secret.pt sits *outside* it."""
    from modelfleet.server.demo import write_torchscript

    store = workdir / "store"
    store.mkdir(parents=True)
    rng = random.Random(seed)
    write_torchscript("tiny", store / "tiny.pt")
    write_torchscript("mlp", store / "mlp.pt")
    shutil.copy(store / "tiny.pt", workdir / "secret.pt")
    (store / "bad.pt").write_bytes(rng.randbytes(4096))
    (store / "empty.pt").write_bytes(b"")
    (store / "notes.txt").write_text("not a model\n")
    (store / "folder").mkdir()
    with zipfile.ZipFile(store / "bad.mar", "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", "{not json")
        archive.writestr("model.pt", rng.randbytes(512))
    return store


def outcome_text(outcome: Outcome) -> str:
    details = outcome.details if len(outcome.details) <= 300 else outcome.details[:300] + f"...({len(outcome.details)})"
    return f"{outcome.code.name} {details!r} reason={outcome.reason} in {outcome.elapsed_s:.2f} s"


def reason_of(status_message: Any) -> str | None:
    from google.rpc import error_details_pb2

    for detail in status_message.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return None


class Campaign:
    """One server, one seed: setup, the phases, the checks, the report."""

    def __init__(
        self,
        *,
        seed: int,
        messages: int,
        concurrency: int,
        status_codes: str,
        workdir: Path,
        base_workers: int = 1,
        kinds: tuple[str, ...] = (),
        churn: bool = True,
        end_growth: float = END_GROWTH,
    ) -> None:
        self.seed = seed
        self.end_growth = end_growth
        self.count = messages
        self.concurrency = concurrency
        self.mode = status_codes
        self.workdir = workdir
        self.base_workers = base_workers
        self.kinds = kinds
        self.with_churn = churn
        self.report = Report(seed=seed)
        self.denied = status.token_denied_code("torchserve" if status_codes == "torchserve" else "conventional")
        self.server: ServerProcess | None = None
        self.target = fm.Target()
        self.channels: dict[str, aio.Channel] = {}
        self.phase = "setup"
        self.started = time.monotonic()
        self.reference: dict[str, list[float]] = {}
        """Base model → its answer to the probe request, taken at the start."""

    # ---- setup and teardown ---------------------------------------------------------------------
    async def start(self) -> None:
        store = write_store(self.workdir, self.seed)
        port = closed_port()
        self.target = fm.Target(store=str(store), closed_port=port, kinds=self.kinds)
        allowed = [rf"http://127\.0\.0\.1:{port}/.*", rf"https://127\.0\.0\.1:{port}/.*", f"file://{store}/.*"]
        self.server = ServerProcess(
            self.workdir / "server",
            store,
            status_codes=self.mode,
            extra=["--allowed-sources", *allowed],
            env=SERVER_ENV,
        )
        await asyncio.to_thread(self.server.wait_started)
        self.channels = {
            kind: aio.insecure_channel(address, options=CLIENT_OPTIONS)
            for kind, address in (("inference", self.server.inference), ("management", self.server.management))
        }
        for model in self.target.base:
            reply = await self.management(
                "RegisterModel",
                management_pb2.RegisterModelRequest(
                    url=f"{model}.pt",
                    model_name=model,
                    initial_workers=self.base_workers,
                    batch_size=8,
                    max_batch_delay=5,
                    synchronous=True,
                ),
                timeout=120,
            )
            if reply.code != C.OK:
                raise RuntimeError(f"cannot register base model {model}: {outcome_text(reply)}")
        # The first request teaches each model its sample rank (one-sample rule), so it is a plain
        # one-sample probe, not whatever fuzz message comes first; its answer is the reference for
        # the probes of the sequential phase.
        for model in self.target.base:
            for prefix in oip.PACKAGES:
                outcome = await self.probe(model, prefix)
                if outcome.code != C.OK:
                    raise RuntimeError(f"the first Open Inference probe of {model} failed: {outcome_text(outcome)}")
                self.reference.setdefault(model, self.probe_values(prefix, outcome))

    def probe_request(self, model: str, prefix: str) -> bytes:
        width = self.target.base[model]
        request = oip.PACKAGES[prefix].ModelInferRequest(model_name=model, id="probe")
        tensor = request.inputs.add(name="input__0", datatype="FP32", shape=[width])
        tensor.contents.fp32_contents.extend([(i % 7) / 7 - 0.5 for i in range(width)])
        return bytes(request.SerializeToString())

    async def probe(self, model: str, prefix: str) -> Outcome:
        message = fm.Message(-3, prefix + "ModelInfer", (self.probe_request(model, prefix),), timeout_s=10.0)
        return await self.send(message, self.metadata("inference"))

    def probe_values(self, prefix: str, outcome: Outcome) -> list[float]:
        reply = oip.PACKAGES[prefix].ModelInferResponse.FromString(outcome.responses[0])
        return [float(v) for v in reply.outputs[0].contents.fp32_contents] if reply.outputs else []

    async def check_probe(self, index: int, message: fm.Message) -> None:
        """A good request after `message` gets the answer the first one got (the server is not damaged)."""
        model = sorted(self.target.base)[index % len(self.target.base)]
        prefix = list(oip.PACKAGES)[index // len(self.target.base) % len(oip.PACKAGES)]
        outcome = await self.probe(model, prefix)
        values = self.probe_values(prefix, outcome) if outcome.code == C.OK else []
        expected = self.reference[model]
        if len(values) != len(expected) or not all(
            math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) for a, b in zip(values, expected)
        ):
            self.fail(
                index,
                message.describe(),
                f"probe {prefix}ModelInfer on {model}: {outcome_text(outcome)} values {values[:4]}",
                f"a good request after this one did not get the right answer (want {expected[:4]}...)",
            )
        else:
            self.report.probes += 1

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)

    # ---- calls ----------------------------------------------------------------------------------
    def metadata(self, scope: str | None) -> list[tuple[str, str]]:
        assert self.server is not None
        return list(self.server.tokens.metadata(scope)) if scope in ("inference", "management") else []

    async def management(self, method: str, request: Any, *, timeout: float = 30.0) -> Outcome:
        msg = fm.Message(-1, fm.MGMT + method, (request.SerializeToString(),), timeout_s=timeout)
        return await self.send(msg, self.metadata("management"))

    async def send(self, message: fm.Message, metadata: list[tuple[str, str]]) -> Outcome:
        _, request_streaming, response_streaming, _ = fm.METHODS.get(message.method, (None, False, False, None))
        port = "management" if message.method.startswith(fm.MGMT) else "inference"
        if message.scope is None and message.index % 2:
            port = "management"  # health and reflection answer on both API ports
        channel = self.channels[port]
        started = time.monotonic()
        outcome = Outcome(C.OK)
        try:
            if message.method == oip.OIP + "ModelStreamInfer":
                await self.oip_stream(channel, message, metadata, outcome)
            elif request_streaming:
                call = channel.stream_stream(message.method)(
                    iter(message.bodies), timeout=message.timeout_s, metadata=metadata
                )
                outcome.responses = [reply async for reply in call]
            elif response_streaming:
                stream = channel.unary_stream(message.method)(
                    message.bodies[0], timeout=message.timeout_s, metadata=metadata
                )
                async for reply in stream:
                    outcome.responses.append(reply)
                    if message.method.endswith("/Watch"):  # endless by design: the first answer is enough
                        stream.cancel()
                        break
            else:
                outcome.responses = [
                    await channel.unary_unary(message.method)(
                        message.bodies[0], timeout=message.timeout_s, metadata=metadata
                    )
                ]
        except aio.AioRpcError as error:
            info = error_info_from_trailer(list(error.trailing_metadata() or ()))
            outcome.code, outcome.details = error.code(), error.details() or ""
            outcome.reason = None if info is None else info.reason
        outcome.elapsed_s = time.monotonic() - started
        return outcome

    async def oip_stream(
        self, channel: aio.Channel, message: fm.Message, metadata: list[tuple[str, str]], outcome: Outcome
    ) -> None:
        """ModelStreamInfer as its clients use it: writes and reads at once; or it reads `read_limit`
        answers and cancels (0: it writes for STREAM_WRITE_S, reading nothing, then cancels)."""
        call = channel.stream_stream(message.method)(timeout=message.timeout_s, metadata=metadata)

        wrote_all = asyncio.Event()

        async def write() -> None:
            # A write fails (an error, or CancelledError from grpc) once the server ended the call.
            with contextlib.suppress(Exception):
                for body in message.bodies:
                    await call.write(body)
                await call.done_writing()
                wrote_all.set()

        writer = asyncio.get_running_loop().create_task(write())
        try:
            if message.read_limit is None:
                outcome.responses = [reply async for reply in call]
                return
            while len(outcome.responses) < message.read_limit:
                reply = await call.read()
                if reply is aio.EOF:
                    return
                outcome.responses.append(reply)
            if message.read_limit == 0:
                await asyncio.wait([writer], timeout=STREAM_WRITE_S)
            refused = writer.done() and not wrote_all.is_set()  # the server ended the call (bad token, bad request)
            # A bad token is refused before any request is read, but a short stream may be written in
            # full before that status arrives: wait for it rather than cancel over it.
            if call.done() or refused or message.auth != "good":  # its status, not our cancel
                outcome.code = await asyncio.wait_for(call.code(), timeout=message.timeout_s)
                outcome.details = await call.details() or ""
                if outcome.code == C.CANCELLED:  # grpc's client cancels its own call when a write is cut off
                    outcome.details = CLIENT_LOST_STATUS
                return
            call.cancel()
            outcome.code, outcome.details = C.CANCELLED, "cancelled by the client"
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    # ---- checks ---------------------------------------------------------------------------------
    def documented_quirk(self, method: str, code: grpc.StatusCode, reason: str | None) -> bool:
        """torchserve mode only: INTERNAL/UNKNOWN that status.py's table maps this reason to."""
        if self.mode != "torchserve" or reason in (None, Reason.INTERNAL.value):
            return False
        try:
            known = Reason(reason)
        except ValueError:
            return False
        return status.codes_for(method.rsplit("/", 1)[-1], "torchserve").get(known) == code

    def problems(self, message: fm.Message, outcome: Outcome) -> list[str]:
        found: list[str] = []
        code = outcome.code
        if (
            code in (C.INTERNAL, C.CANCELLED)
            and outcome.details == CLIENT_LOST_STATUS
            and fm.METHODS.get(message.method, (None, False))[1]
        ):
            self.report.client_lost_status += 1
            return found
        if code in (C.INTERNAL, C.UNKNOWN) and not self.documented_quirk(message.method, code, outcome.reason):
            found.append(f"{code.name} for client input")
        elif oip.is_oip(message.method) and code not in oip.ALLOWED:
            found.append(f"{code.name} is not an Open Inference code for client input")
        if message.method == oip.OIP + "ModelStreamInfer":
            found += oip.check_in_band(outcome.responses, MAX_DETAILS)
        if code == C.DEADLINE_EXCEEDED and outcome.elapsed_s >= message.timeout_s - HANG_MARGIN_S:
            found.append(f"no answer within the {message.timeout_s:g} s deadline")
        if len(outcome.details) > MAX_DETAILS:
            found.append(f"error message of {len(outcome.details):,} characters (client input echoed untruncated?)")
        # gRPC refuses a message over --max-request-size before any interceptor or decoder sees it.
        oversized = any(len(body) > MAX_REQUEST_BYTES for body in message.bodies)
        if message.auth != "good":
            # Open Inference clients get gRPC's usual code whatever --status-codes says.
            denied = C.UNAUTHENTICATED if oip.is_oip(message.method) else self.denied
            if code != denied and not (oversized and code == C.RESOURCE_EXHAUSTED):
                found.append(f"bad token ({message.auth}) answered {code.name}, not {denied.name}")
            return found
        if message.undecodable and oversized and code != C.RESOURCE_EXHAUSTED:
            found.append(f"oversized undecodable body answered {code.name}, not RESOURCE_EXHAUSTED")
        elif message.undecodable and not oversized and code != C.INVALID_ARGUMENT:
            found.append(f"undecodable body answered {code.name}, not INVALID_ARGUMENT")
        if message.method.endswith("/StreamPredictions2"):
            for raw in outcome.responses:
                reply = inference_pb2.PredictionResponse.FromString(raw)
                if not reply.HasField("status"):
                    continue
                in_band = C.OK
                for candidate in C:
                    if candidate.value[0] == reply.status.code:
                        in_band = candidate
                if in_band in (C.INTERNAL, C.UNKNOWN) and not self.documented_quirk(
                    message.method, in_band, reason_of(reply.status)
                ):
                    found.append(f"in-band {in_band.name} for client input: {reply.status.message[:200]!r}")
                if message.control:
                    found.append(f"well-formed request refused in-band: {in_band.name} {reply.status.message[:200]!r}")
        if message.control:
            if code != C.OK:
                found.append(f"well-formed prediction on a base model failed with {code.name}")
            elif oip.is_oip(message.method):
                found += oip.check_control(message.method, message.bodies, outcome.responses, self.target.outputs)
            else:
                found += self.check_predictions(message, outcome)
        if message.method == fm.MGMT + "RegisterModel" and code == C.OK:
            request = management_pb2.RegisterModelRequest.FromString(message.bodies[0])
            if "secret" in request.url:
                found.append("a file outside the model store was registered")
        return found

    def check_predictions(self, message: fm.Message, outcome: Outcome) -> list[str]:
        expected = len(message.bodies) if message.method.endswith("/StreamPredictions2") else 1
        if message.method.endswith("/Predictions") and len(outcome.responses) != 1:
            return [f"{len(outcome.responses)} replies to one Predictions call"]
        if len(outcome.responses) < expected:
            return [f"{len(outcome.responses)} replies for {expected} requests"]
        for raw in outcome.responses:
            try:
                values = json.loads(inference_pb2.PredictionResponse.FromString(raw).prediction)
            except ValueError:
                return ["a well-formed prediction's reply is not JSON"]
            if not isinstance(values, list) or not values:
                return [f"a well-formed prediction's reply is {str(values)[:80]}"]
        return []

    def fail(self, index: int, message: str, outcome: str, problem: str) -> None:
        self.report.failures.append(Failure(self.seed, index, self.phase, message, outcome, problem))

    # ---- state ----------------------------------------------------------------------------------
    async def snapshot(self) -> Any:
        """What clients see of the state: every model's versions and workers, minus volatile fields."""
        listing = await self.management("ListModels", management_pb2.ListModelsRequest(limit=1000))
        if listing.code != C.OK:
            return ("ListModels", listing.code.name)
        names = sorted(
            model["modelName"]
            for model in json.loads(management_pb2.ManagementResponse.FromString(listing.responses[0]).msg)["models"]
        )
        state: list[Any] = []
        for name in names:
            described = await self.management(
                "DescribeModel", management_pb2.DescribeModelRequest(model_name=name, model_version="all")
            )
            if described.code != C.OK:
                state.append((name, described.code.name))
                continue
            versions = json.loads(management_pb2.ManagementResponse.FromString(described.responses[0]).msg)
            for entry in versions:
                entry.pop("jobQueueStatus", None)
                for worker in entry.get("workers", []):
                    worker.pop("memoryUsage", None)
            state.append((name, versions))
        return state

    async def settled(self, *, timeout_s: float = 30.0) -> Any:
        """The snapshot once it stops changing and every worker is READY (async loads finish)."""
        deadline = time.monotonic() + timeout_s
        previous = await self.snapshot()
        while True:
            await asyncio.sleep(0.05)
            current = await self.snapshot()
            ready = all(
                worker.get("status") == "READY"
                for _, versions in current
                if isinstance(versions, list)
                for entry in versions
                for worker in entry.get("workers", [])
            )
            if current == previous and ready:
                return current
            if time.monotonic() > deadline:
                return current
            previous = current

    async def cleanup(self) -> None:
        """Unregister every model the campaign added, so only the base models stay."""
        keep = set(self.target.base)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = await self.settled(timeout_s=10)
            extra = [(name, versions) for name, versions in state if name not in keep]
            if not extra:
                return
            for name, versions in extra:
                if not isinstance(versions, list):
                    continue
                for entry in versions:  # the default goes last: it fails while others remain
                    await self.management(
                        "UnregisterModel",
                        management_pb2.UnregisterModelRequest(
                            model_name=name, model_version=entry.get("modelVersion", "")
                        ),
                    )
                await self.management("UnregisterModel", management_pb2.UnregisterModelRequest(model_name=name))
        self.fail(-1, "cleanup", str(await self.snapshot())[:500], "fuzz-registered models could not be removed")

    # ---- phases ---------------------------------------------------------------------------------
    async def one(self, index: int, *, sequential: bool) -> None:
        assert self.server is not None
        message = fm.message(self.seed, index, self.target)
        if message.auth == "good":
            metadata = (
                self.metadata(message.scope)
                if message.scope != "unknown"
                else self.metadata("management" if message.method.startswith(fm.MGMT) else "inference")
            )
        else:
            rng = fm.rng_for(self.seed, -index - 1)
            metadata = fm.bad_metadata(message.auth, message.scope, lambda s: getattr(self.server.tokens, s), rng)
        before = await self.snapshot() if sequential else None
        outcome = await self.send(message, metadata)
        self.report.messages += 1
        self.report.codes[outcome.code.name] = self.report.codes.get(outcome.code.name, 0) + 1
        path = message.method.lstrip("/") if message.method in fm.METHODS else "unknown"  # both OIP packages apart
        self.report.methods[path] = self.report.methods.get(path, 0) + 1
        for problem in self.problems(message, outcome):
            self.fail(index, message.describe(), outcome_text(outcome), problem)
        if not self.server.alive():
            self.fail(index, message.describe(), outcome_text(outcome), "the server process died")
            raise RuntimeError("server died")
        if sequential:
            await self.check_probe(index, message)
            changed_ok = outcome.code == C.OK and message.mutating
            after = await (self.settled() if changed_ok else self.snapshot())
            if not changed_ok and after != before:
                self.fail(
                    index,
                    message.describe(),
                    outcome_text(outcome),
                    f"state changed by a {'refused' if outcome.code != C.OK else 'read-only'} call: "
                    f"{str(before)[:300]} -> {str(after)[:300]}",
                )

    async def run_indices(self, indices: range, *, workers: int, sequential: bool = False) -> None:
        pending = iter(indices)

        async def worker() -> None:
            for index in pending:
                await self.one(index, sequential=sequential)

        await asyncio.gather(*(worker() for _ in range(workers)))

    async def churn(self, stop: asyncio.Event) -> None:
        """Register, predict, add a version, set it default, scale, unregister: every step must succeed."""
        name = self.target.churn[0]
        sample = json.dumps([0.25] * self.target.base["tiny"]).encode()
        predict = inference_pb2.PredictionsRequest(model_name=name, input={"data": sample})
        steps: list[tuple[str, str, Any]] = [
            (
                "management",
                "RegisterModel",
                management_pb2.RegisterModelRequest(
                    url="tiny.pt#version=1.0",
                    model_name=name,
                    initial_workers=1,
                    batch_size=4,
                    max_batch_delay=5,
                    synchronous=True,
                ),
            ),
            ("inference", "Predictions", predict),
            (
                "management",
                "RegisterModel",
                management_pb2.RegisterModelRequest(
                    url="tiny.pt#version=2.0", model_name=name, initial_workers=1, synchronous=True
                ),
            ),
            ("management", "SetDefault", management_pb2.SetDefaultRequest(model_name=name, model_version="2.0")),
            (
                "management",
                "ScaleWorker",
                management_pb2.ScaleWorkerRequest(
                    model_name=name, model_version="2.0", min_worker=2, max_worker=2, synchronous=True
                ),
            ),
            ("inference", "Predictions", predict),
            (
                "management",
                "ScaleWorker",
                management_pb2.ScaleWorkerRequest(
                    model_name=name, model_version="2.0", min_worker=1, max_worker=1, synchronous=True
                ),
            ),
            (
                "management",
                "UnregisterModel",
                management_pb2.UnregisterModelRequest(model_name=name, model_version="1.0"),
            ),
            (
                "management",
                "UnregisterModel",
                management_pb2.UnregisterModelRequest(model_name=name, model_version="2.0"),
            ),
        ]
        while self.with_churn and not stop.is_set():
            for scope, method, request in steps:
                prefix = fm.INF if scope == "inference" else fm.MGMT
                message = fm.Message(-2, prefix + method, (request.SerializeToString(),), timeout_s=30.0)
                outcome = await self.send(message, self.metadata(scope))
                if outcome.code != C.OK:
                    self.fail(
                        -2,
                        f"churn cycle {self.report.churn_cycles}: {method} {str(request)[:120]!r}",
                        outcome_text(outcome),
                        "a churn step failed while fuzzing ran",
                    )
                    for version in ("1.0", "2.0"):  # start the next cycle from nothing
                        await self.management(
                            "UnregisterModel",
                            management_pb2.UnregisterModelRequest(model_name=name, model_version=version),
                        )
                    break
            else:
                self.report.churn_cycles += 1

    async def run(self, *, replay: list[int] | None = None) -> Report:
        assert self.server is not None
        started = self.started = time.monotonic()
        if replay:
            self.phase = "replay"
            for index in replay:
                await self.one(index, sequential=True)
                print(f"#{index}: {fm.message(self.seed, index, self.target).describe()}")
            self.report.elapsed_s = time.monotonic() - started
            return self.report
        warm = min(300, max(20, self.count // 20))
        sequential = max(1, self.count // 10)
        self.phase = "warm-up"
        await self.run_indices(range(0, warm), workers=self.concurrency)
        await self.cleanup()
        self.report.rss_start_kib = self.server.rss_kib()
        self.report.threads_start = read_kib(self.server.pid, "Threads")  # a plain count, read the same way
        self.phase = "concurrent"
        bounds = [warm + (self.count - sequential - warm) * part // 4 for part in range(5)]
        for first, end in zip(bounds, bounds[1:]):
            stop = asyncio.Event()
            churn = asyncio.create_task(self.churn(stop))
            try:
                await self.run_indices(range(first, end), workers=self.concurrency)
            finally:
                stop.set()
                await churn
            await self.cleanup()
            self.report.rss_checkpoints_kib.append(self.server.rss_kib())
            self.report.threads_checkpoints.append(read_kib(self.server.pid, "Threads"))
        self.phase = "sequential"
        await self.run_indices(range(self.count - sequential, self.count), workers=1, sequential=True)
        self.phase = "end"
        await self.cleanup()
        await self.finish()
        self.report.elapsed_s = time.monotonic() - started
        return self.report

    async def finish(self) -> None:
        """Health answers quickly, RSS came back, the log holds no traceback."""
        assert self.server is not None
        check = fm.Message(0, fm.HEALTH + "Check", (b"",), timeout_s=5.0)
        outcome = await self.send(check, [])
        self.report.health_latency_s = outcome.elapsed_s
        if outcome.code != C.OK or outcome.elapsed_s > 1.0:
            self.fail(-1, "health Check at the end", outcome_text(outcome), "health did not answer within 1 s")
        report = self.report
        report.rss_end_kib, report.rss_peak_kib = self.server.rss_kib(), self.server.hwm_kib()
        report.threads_end = read_kib(self.server.pid, "Threads")
        for where, count in [
            *zip(("first", "second", "third", "fourth"), report.threads_checkpoints),
            ("end", report.threads_end),
        ]:
            if count > report.threads_start + THREAD_GROWTH:
                self.fail(
                    -1,
                    f"threads after the {where} quarter" if where != "end" else "threads at the end",
                    f"start {report.threads_start}, then {count}",
                    f"the server's thread count grew by more than {THREAD_GROWTH}",
                )
        # The baseline is the RSS after the first quarter of the concurrent phase: by then every kind
        # of message, the churn and the biggest bodies have run at full concurrency, so what the
        # allocator and gRPC keep as capacity is in it; what grows after that grows with traffic.
        baseline = report.rss_checkpoints_kib[0] if report.rss_checkpoints_kib else report.rss_start_kib
        if report.rss_end_kib > baseline * (1 + self.end_growth):
            self.fail(
                -1,
                "RSS at the end",
                f"baseline {baseline} KiB, end {report.rss_end_kib} KiB",
                f"RSS grew more than {self.end_growth:.0%} after the first quarter of the campaign",
            )
        peak_limit = report.rss_start_kib + (self.concurrency * MAX_REQUEST_BYTES * PEAK_COPIES) // 1024 + 256 * 1024
        if report.rss_peak_kib > peak_limit:
            self.fail(
                -1,
                "peak RSS",
                f"peak {report.rss_peak_kib} KiB > limit {peak_limit} KiB",
                "peak RSS above start + concurrency x largest request x 8 + 256 MiB",
            )
        log = self.server.log()
        report.log_tracebacks = log.count("Traceback")
        report.log_errors = sum(1 for line in log.splitlines() if " ERROR " in line or line.startswith("ERROR"))
        report.log_undecodable_warnings = log.count("undecodable request")
        if report.log_tracebacks:
            first = log.index("Traceback")
            self.fail(-1, "server log", log[max(0, first - 300) : first + 1500], "a traceback in the server log")
        methods = len(fm.METHODS)
        allowed = methods * int((time.monotonic() - self.started) / 10 + 1)
        if report.log_undecodable_warnings > allowed:
            self.fail(
                -1,
                "server log",
                f"{report.log_undecodable_warnings} warnings",
                f"undecodable-body warnings not rate-limited (more than {allowed})",
            )


async def run_campaign(
    *,
    seed: int = DEFAULT_SEED,
    messages: int = 5000,
    concurrency: int = 8,
    status_codes: str = "conventional",
    workdir: Path | None = None,
    replay: list[int] | None = None,
    kinds: tuple[str, ...] = (),
    churn: bool = True,
    end_growth: float = END_GROWTH,
) -> Report:
    """Start a server, run the campaign (or replay some indices), stop the server; the report."""
    own = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="mf-fuzz-")) if workdir is None else workdir
    campaign = Campaign(
        seed=seed,
        messages=messages,
        concurrency=concurrency,
        status_codes=status_codes,
        workdir=folder,
        kinds=kinds,
        churn=churn,
        end_growth=end_growth,
    )
    try:
        await campaign.start()
        return await campaign.run(replay=replay)
    except RuntimeError as error:
        campaign.fail(-1, "campaign", str(error)[-2000:], "the campaign could not finish")
        return campaign.report
    finally:
        await campaign.close()
        if own and not campaign.report.failures:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="messages in the campaign (long mode: 200000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--concurrency", type=int, default=8, help="fuzz calls in flight")
    parser.add_argument("--status-codes", choices=("conventional", "torchserve"), default="conventional")
    parser.add_argument("--workdir", type=Path, default=None, help="kept; default a temp dir removed on success")
    parser.add_argument("--replay", type=int, nargs="+", default=None, help="resend only these message indices")
    parser.add_argument("--kinds", default="", help=f"comma-separated subset of {','.join(k for k, _ in fm.KINDS)}")
    parser.add_argument("--no-churn", action="store_true", help="no register/unregister task in the concurrent phase")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - {k for k, _ in fm.KINDS}
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}")
    report = asyncio.run(
        run_campaign(
            seed=args.seed,
            messages=args.messages,
            concurrency=args.concurrency,
            status_codes=args.status_codes,
            workdir=args.workdir,
            replay=args.replay,
            kinds=kinds,
            churn=not args.no_churn,
        )
    )
    print(report.summary())
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(asdict(report), indent=2))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
