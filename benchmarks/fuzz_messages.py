"""Seeded fuzz messages for every RPC of ModelFleet: both TorchServe APIs, the Open Inference API under
both package names (fuzz_oip.py builds those), health and reflection.

fuzz.py asks for message `index` of campaign `seed` and sends it; the same (seed, index) always
gives the same bytes, so a failure is replayed with `fuzz.py --seed S --replay INDEX`. Messages are
pre-serialized (sent with no client serializer), which is how garbage bodies and invalid UTF-8
reach the server at all. Pure: no I/O, no server knowledge beyond the names in `Target`.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import empty_pb2
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from modelfleet.protos import inference_pb2, management_pb2

import fuzz_oip as oip

INF = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/"
MGMT = "/org.pytorch.serve.grpc.management.ManagementAPIsService/"
HEALTH = "/grpc.health.v1.Health/"
REFLECTION = (
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
)

# method → (request type, request streaming, response streaming, token scope or None when open)
METHODS: dict[str, tuple[Any, bool, bool, str | None]] = {
    INF + "Ping": (empty_pb2.Empty, False, False, "inference"),
    INF + "Predictions": (inference_pb2.PredictionsRequest, False, False, "inference"),
    INF + "StreamPredictions": (inference_pb2.PredictionsRequest, False, True, "inference"),
    INF + "StreamPredictions2": (inference_pb2.PredictionsRequest, True, True, "inference"),
    MGMT + "DescribeModel": (management_pb2.DescribeModelRequest, False, False, "management"),
    MGMT + "ListModels": (management_pb2.ListModelsRequest, False, False, "management"),
    MGMT + "RegisterModel": (management_pb2.RegisterModelRequest, False, False, "management"),
    MGMT + "ScaleWorker": (management_pb2.ScaleWorkerRequest, False, False, "management"),
    MGMT + "SetDefault": (management_pb2.SetDefaultRequest, False, False, "management"),
    MGMT + "UnregisterModel": (management_pb2.UnregisterModelRequest, False, False, "management"),
    HEALTH + "Check": (health_pb2.HealthCheckRequest, False, False, None),
    HEALTH + "List": (health_pb2.HealthListRequest, False, False, None),
    HEALTH + "Watch": (health_pb2.HealthCheckRequest, False, True, None),
    **{path: (reflection_pb2.ServerReflectionRequest, True, True, None) for path in REFLECTION},
    **oip.METHODS,
}
MUTATING = frozenset(MGMT + m for m in ("RegisterModel", "ScaleWorker", "SetDefault", "UnregisterModel"))
UNKNOWN_METHODS = (INF + "Nope", MGMT + "DeleteEverything", "/grpc.health.v1.Health/Kill", "/x.Y/Z", "/")
UNKNOWN_METHODS += oip.UNKNOWN_METHODS
BAD_AUTH = ("none", "wrong", "other-scope", "malformed", "huge")
INT32_EDGES = (0, 1, -1, 2, 4, 8, 16, 100, 1024, 1025, 3600, 3601, 60_000, 60_001, 2**31 - 1, -(2**31), 2**31 - 2)
INT64_EDGES = (0, -1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**30)
SAFETENSORS_DTYPES = (
    "F32",
    "F16",
    "BF16",
    "F64",
    "I8",
    "I16",
    "I32",
    "I64",
    "U8",
    "BOOL",
    "U16",
    "U32",
    "U64",
    "F4",
    "F6_E2M3",
    "F6_E3M2",
    "F8_E4M3",
    "F8_E5M2",
    "F8_E8M0",
    "C64",
    "XYZ",
    "",
)
RAW_DTYPES = (
    "float32",
    "float",
    "float16",
    "half",
    "bfloat16",
    "float64",
    "double",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
    "torch.float32",
    "complex64",
    "uint16",
    "float32\n",
    "",
    "F32",
    "object",
)
UNICODE = ("モデル", "😀", "tiny\u202e", "ti\u0301ny", "\x00", "tiny\x00", "Ω≈ç√", "\u200b", "ｔｉｎｙ", "\ufeff")

# Weights of each kind of message in a campaign (they sum to 100).
KINDS: tuple[tuple[str, int], ...] = (
    ("Predictions", 15),
    ("StreamPredictions", 4),
    ("StreamPredictions2", 6),
    ("Ping", 2),
    ("DescribeModel", 5),
    ("ListModels", 3),
    ("RegisterModel", 7),
    ("ScaleWorker", 5),
    ("SetDefault", 3),
    ("UnregisterModel", 4),
    ("Check", 4),
    ("List", 1),
    ("Watch", 2),
    ("reflection", 4),
    ("ModelInfer", 10),
    ("ModelStreamInfer", 5),
    ("OipMetadata", 4),
    ("garbage", 15),
    ("unknown", 1),
)


@dataclass(frozen=True)
class Target:
    """What messages may name. Mutating calls never name `base` or `churn` models (kept for controls)."""

    store: str = "/nonexistent"
    closed_port: int = 9
    base: dict[str, int] = field(default_factory=lambda: {"tiny": 16, "mlp": 256})
    """Base model name → input width; registered before the campaign, never changed by it."""
    outputs: dict[str, int] = field(default_factory=lambda: {"tiny": 4, "mlp": 10})
    """Base model name → output width (demo.SHAPES), to check Open Inference answers."""
    owned: tuple[str, ...] = ("fz0", "fz1", "fz2")
    churn: tuple[str, ...] = ("churn",)
    files: tuple[str, ...] = ("tiny.pt", "mlp.pt", "bad.pt", "empty.pt", "bad.mar", "notes.txt", "folder")
    kinds: tuple[str, ...] = ()
    """Only these KINDS (to chase one problem); empty = all, with their weights."""


@dataclass(frozen=True)
class Message:
    index: int
    method: str
    bodies: tuple[bytes, ...]
    """One body for unary-request methods; 0-4 for request streams."""
    auth: str = "good"
    """"good", or one of BAD_AUTH (only on methods that need a token)."""
    undecodable: bool = False
    """Some body cannot be parsed as the method's request type (the server must say INVALID_ARGUMENT)."""
    control: bool = False
    """A well-formed prediction on a base model: it must succeed, whatever its batch-mates are."""
    note: str = ""
    timeout_s: float = 10.0
    read_limit: int | None = None
    """ModelStreamInfer: None reads every answer; N reads N, then cancels (0: sends all, reads none)."""

    @property
    def scope(self) -> str | None:
        return METHODS[self.method][3] if self.method in METHODS else "unknown"

    @property
    def mutating(self) -> bool:
        return self.method in MUTATING

    def describe(self) -> str:
        sizes = ",".join(str(len(body)) for body in self.bodies)
        if len(self.bodies) > 8:
            sizes = f"{len(self.bodies)} bodies, {sum(map(len, self.bodies)):,} bytes"
        read = "" if self.read_limit is None else f" read_limit={self.read_limit}"
        return f"#{self.index} {self.method} auth={self.auth} bytes=[{sizes}]{read} {self.note}"


def rng_for(seed: int, index: int) -> random.Random:
    """The generator of one message: depends only on (seed, index), never on what ran before."""
    return random.Random(f"modelfleet-fuzz:{seed}:{index}")


def decodes(request_type: Any, body: bytes) -> bool:
    try:
        request_type.FromString(body)
    except (DecodeError, ValueError, RuntimeError):
        return False
    return True


# ---- fields ----------------------------------------------------------------------------------
def huge(rng: random.Random) -> int:
    return rng.choice((300, 4_096, 65_536, 1_000_000, 2_000_000))


def text(rng: random.Random) -> str:
    """Arbitrary text: ASCII, unicode, control characters, newlines, sometimes huge."""
    roll = rng.random()
    if roll < 0.03:
        return rng.choice("aZ9é😀") * huge(rng)
    if roll < 0.3:
        return rng.choice(UNICODE) * rng.randint(1, 4)
    alphabet = "abcXYZ019_.-+/ \n\t\r%:#?@\\'\"*"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


def valid_name(rng: random.Random) -> str:
    first = "abcdefghijklmnopqrstuvwxyzABC0123456789"
    rest = first + "_.-"
    return rng.choice(first) + "".join(rng.choice(rest) for _ in range(rng.randint(0, rng.choice((3, 20, 62)))))


def name(rng: random.Random, target: Target, *, mutating: bool) -> str:
    roll = rng.random()
    if roll < 0.45:
        pool = list(target.owned) if mutating else [*target.base, *target.owned, *target.churn]
        return rng.choice(pool)
    if roll < 0.55:
        return valid_name(rng)
    if roll < 0.62:
        return rng.choice([*target.owned, *target.base]) + rng.choice(("\n", "\r\n", " ", "\x00", "/1.0", "\t"))
    if roll < 0.67:
        return "n" * rng.choice((63, 64, 65, 255, 256, 10_000, 1_000_000))
    if roll < 0.72:
        return rng.choice(("", "all", "..", "../tiny", "/etc/passwd", "tiny/1.0", "%2e%2e", "-x", ".x", "_x"))
    return text(rng)


def version(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return ""
    if roll < 0.6:
        return rng.choice(("1.0", "2.0", "3.0"))
    if roll < 0.7:
        return rng.choice(("all", "1.0\n", "1.0 ", "1.0+cu121", "../1.0", "v" * 64, "1" * 2_000_000))
    if roll < 0.8:
        return valid_name(rng)
    return text(rng)


def int32(rng: random.Random) -> int:
    if rng.random() < 0.6:
        return rng.choice(INT32_EDGES)
    return rng.randint(-(2**31), 2**31 - 1) if rng.random() < 0.3 else rng.randint(0, 64)


def url(rng: random.Random, target: Target) -> str:
    roll = rng.random()
    file = rng.choice(target.files)
    if roll < 0.35:
        return file
    if roll < 0.5:
        return f"{file}#version={version(rng)}"
    store = target.store
    port = target.closed_port
    choices = (
        f"file://{store}/{file}",
        f"file://{store}/../secret.pt",
        f"file://{store}/%2e%2e/secret.pt",
        f"file://{store}/folder/../../secret.pt",
        "file:///etc/passwd",
        "../secret.pt",
        "folder/../../secret.pt",
        f"http://127.0.0.1:{port}/tiny.pt",
        f"https://127.0.0.1:{port}/x.mar",
        f"http://127.0.0.1:{port}/../x",
        "http://127.0.0.1:1/tiny.pt",
        "s3://bucket/tiny.pt",
        "ftp://127.0.0.1/x",
        "data:;base64,AAAA",
        "tiny.pt\n",
        "tiny.pt?x=1",
        "//127.0.0.1/x",
        "file:tiny.pt",
        "",
        "~/secret.pt",
        f"{store}/tiny.pt",
    )
    return rng.choice(choices) if roll < 0.9 else text(rng)


# ---- prediction inputs ------------------------------------------------------------------------
def floats(rng: random.Random, count: int) -> list[float]:
    return [round(rng.uniform(-2, 2), 4) for _ in range(count)]


def json_input(rng: random.Random, width: int) -> bytes:
    roll = rng.random()
    if roll < 0.3:
        return json.dumps(floats(rng, width)).encode()
    if roll < 0.45:
        return json.dumps([floats(rng, width) for _ in range(rng.randint(1, 4))]).encode()
    if roll < 0.55:
        return json.dumps(floats(rng, rng.choice((0, 1, width - 1, width + 1, width * 2)))).encode()
    if roll < 0.65:
        depth = rng.choice((10, 100, 999, 1_000, 5_000, 100_000))
        return b"[" * depth + b"1" + b"]" * depth
    if roll < 0.8:
        odd = rng.choice(
            (
                '"x"',
                "null",
                "NaN",
                "Infinity",
                "-Infinity",
                "1e400",
                "-0",
                "true",
                "{}",
                "[]",
                str(rng.choice(INT64_EDGES)),
            )
        )
        values = [odd if rng.random() < 0.5 else str(v) for v in floats(rng, width)]
        return ("[" + ",".join(values) + "]").encode()
    if roll < 0.9:
        return json.dumps({"data": floats(rng, width), "x": [[[]]]}).encode()
    return json.dumps([[1.0] * width, [1.0] * rng.randint(0, width)]).encode()  # ragged


def safetensors_input(rng: random.Random, width: int) -> bytes:
    dtype = rng.choice(SAFETENSORS_DTYPES)
    shape: Any = rng.choice(
        (
            [width],
            [1, width],
            [2, width],
            [0, width],
            [0, 2**64],
            [2**63 - 1],
            [-1],
            [width, width, width, width],
            [],
            [2**31, 2**31],
            ["16"],
            None,
        )
    )
    length = rng.choice((0, 1, width * 4, width * 2, width * 8, rng.randint(0, 5000)))
    end = rng.choice((length, length + 1, length - 1, 2**63, -1))
    header: dict[str, Any] = {"t": {"dtype": dtype, "shape": shape, "data_offsets": [0, end]}}
    if rng.random() < 0.2:
        header["u"] = {"dtype": "F32", "shape": [width], "data_offsets": [0, width * 4]}
    if rng.random() < 0.1:
        header["__metadata__"] = {"k": "v" * rng.randint(0, 1000)}
    raw_header = json.dumps(header).encode()
    size = len(raw_header) if rng.random() < 0.85 else rng.choice((0, 2**63, 2**64 - 1, len(raw_header) + 7))
    return struct.pack("<Q", size % 2**64) + raw_header + rng.randbytes(max(length, 0))


def raw_input(rng: random.Random, width: int) -> dict[str, bytes]:
    dtype = rng.choice(RAW_DTYPES)
    shape = rng.choice(
        (
            f"[{width}]",
            f"{width}",
            f"1,{width}",
            f"[2, {width}]",
            "[0, 18446744073709551616]",
            "[-1]",
            "[]",
            "[2147483647, 2147483647]",
            "abc",
            "[" * 1000,
            "[1e3]",
            "[16.5]",
            f"[{2**63}]",
            "",
            "[" + ",".join(["1"] * 100) + "]",
        )
    )
    size = rng.choice((width * 4, width * 2, width * 8, width, 0, 1, rng.randint(0, 4096)))
    entries = {"data": rng.randbytes(size), "dtype": dtype.encode()}
    if rng.random() < 0.9:
        entries["shape"] = shape.encode()
    return entries


def inputs(rng: random.Random, width: int) -> dict[str, bytes]:
    roll = rng.random()
    key = "data" if rng.random() < 0.85 else "body"
    if roll < 0.45:
        entries = {key: json_input(rng, width)}
    elif roll < 0.6:
        entries = {key: safetensors_input(rng, width)}
    elif roll < 0.75:
        entries = raw_input(rng, width)
    elif roll < 0.85:
        entries = {key: rng.randbytes(rng.choice((0, 1, 16, 1000, 65_536)))}
    elif roll < 0.9:
        entries = {}
    elif roll < 0.93:
        entries = {key: b"\xff\xfe" + rng.randbytes(30)}  # invalid UTF-8 where JSON is expected
    elif roll < 0.95:
        entries = {key: b"[" + b"1.0," * rng.choice((100_000, 1_600_000)) + b"1.0]"}  # big, up to 6.4 MB
    else:
        entries = {key: json.dumps(floats(rng, width)).encode()}
    if rng.random() < 0.1:
        entries[text(rng)[:100]] = rng.randbytes(rng.randint(0, 100))
    return entries


# ---- messages per RPC ---------------------------------------------------------------------------
def prediction(rng: random.Random, target: Target, *, sequence: bool = False) -> tuple[Any, bool, str]:
    """(PredictionsRequest, is a control, note)."""
    control = rng.random() < 0.25
    model = rng.choice(list(target.base)) if control else name(rng, target, mutating=False)
    width = target.base.get(model, rng.choice(list(target.base.values())))
    if control:
        data = json.dumps(floats(rng, width)).encode()
        request = inference_pb2.PredictionsRequest(
            model_name=model, model_version=rng.choice(("", "1.0")), input={"data": data}
        )
        if sequence:  # StreamPredictions2 requires one
            request.sequence_id = f"s{rng.randint(0, 10**6)}"
        return request, True, f"control {model}"
    request = inference_pb2.PredictionsRequest(model_name=model, model_version=version(rng), input=inputs(rng, width))
    if sequence and rng.random() < 0.8:
        request.sequence_id = text(rng) if rng.random() < 0.5 else str(rng.randint(0, 10**6))
    return request, False, f"model={model[:40]!r} inputs={sorted(k[:20] for k in request.input)}"


def reflection_request(rng: random.Random) -> Any:
    request = reflection_pb2.ServerReflectionRequest(host=text(rng)[:200] if rng.random() < 0.3 else "")
    symbols = (
        "org.pytorch.serve.grpc.inference.InferenceAPIsService",
        "grpc.health.v1.Health",
        "org.pytorch.serve.grpc.management.RegisterModelRequest",
        "google.protobuf.Empty",
    )
    files = ("modelfleet/protos/inference.proto", "grpc/health/v1/health.proto", "google/protobuf/empty.proto")
    which = rng.randrange(5)
    if which == 0:
        request.list_services = rng.choice(("", "*", text(rng)))
    elif which == 1:
        request.file_by_filename = rng.choice(files) if rng.random() < 0.5 else text(rng)
    elif which == 2:
        request.file_containing_symbol = rng.choice(symbols) if rng.random() < 0.5 else text(rng)
    elif which == 3:
        request.file_containing_extension.containing_type = rng.choice(symbols) if rng.random() < 0.5 else text(rng)
        request.file_containing_extension.extension_number = int32(rng)
    else:
        request.all_extension_numbers_of_type = rng.choice(symbols) if rng.random() < 0.5 else text(rng)
    return request


def oip_fields(target: Target) -> oip.Fields:
    return oip.Fields(name=lambda rng: name(rng, target, mutating=False), version=version, text=text)


def structured(kind: str, rng: random.Random, target: Target) -> tuple[str, list[Any], bool, str]:
    """(method, requests, control, note) for one well-formed (if unreasonable) message."""
    if kind == "Ping":
        return INF + "Ping", [empty_pb2.Empty()], False, ""
    if kind == "ModelInfer":
        return oip.infer_message(rng, target.base, oip_fields(target))
    if kind == "OipMetadata":
        return oip.metadata_message(rng, target.base, oip_fields(target))
    if kind == "ModelStreamInfer":
        method, requests, control, note, _ = oip.stream_message(rng, target.base, oip_fields(target))
        return method, requests, control, note
    if kind in ("Predictions", "StreamPredictions"):
        request, control, note = prediction(rng, target)
        return INF + kind, [request], control, note
    if kind == "StreamPredictions2":
        parts = [prediction(rng, target, sequence=True) for _ in range(rng.randint(0, 4))]
        control = bool(parts) and all(part[1] for part in parts)
        return INF + kind, [part[0] for part in parts], control, " | ".join(part[2] for part in parts)
    if kind == "DescribeModel":
        request = management_pb2.DescribeModelRequest(
            model_name=name(rng, target, mutating=False), model_version=version(rng), customized=rng.random() < 0.2
        )
    elif kind == "ListModels":
        request = management_pb2.ListModelsRequest(limit=int32(rng), next_page_token=int32(rng))
    elif kind == "RegisterModel":
        request = management_pb2.RegisterModelRequest(
            url=url(rng, target),
            model_name=name(rng, target, mutating=True) if rng.random() < 0.8 else "",
            batch_size=int32(rng),
            max_batch_delay=int32(rng),
            initial_workers=int32(rng),
            response_timeout=int32(rng),
            startup_timeout=int32(rng) if rng.random() < 0.5 else 0,
            handler=rng.choice(("", "", "default", "generation", "os.system", "mf_x", text(rng))),
            runtime=rng.choice(("", "python", text(rng))),
            synchronous=rng.random() < 0.8,
            s3_sse_kms=rng.random() < 0.1,
        )
    elif kind == "ScaleWorker":
        request = management_pb2.ScaleWorkerRequest(
            model_name=name(rng, target, mutating=True),
            model_version=version(rng),
            min_worker=int32(rng),
            max_worker=int32(rng),
            number_gpu=int32(rng),
            synchronous=rng.random() < 0.7,
            timeout=rng.choice((0, 0, 1, 5, -1, 2**31 - 1)),
        )
    elif kind == "SetDefault":
        request = management_pb2.SetDefaultRequest(
            model_name=name(rng, target, mutating=True), model_version=version(rng)
        )
    elif kind == "UnregisterModel":
        request = management_pb2.UnregisterModelRequest(
            model_name=name(rng, target, mutating=True), model_version=version(rng)
        )
    elif kind in ("Check", "Watch"):
        service = rng.choice(("", "modelfleet.liveness", *target.base, f"{next(iter(target.base))}/1.0"))
        if rng.random() >= 0.4:
            service = name(rng, target, mutating=False)
        request = health_pb2.HealthCheckRequest(service=service)
        return HEALTH + kind, [request], False, f"service={request.service[:40]!r}"
    elif kind == "List":
        return HEALTH + "List", [health_pb2.HealthListRequest()], False, ""
    else:
        method = rng.choice(REFLECTION)
        return method, [reflection_request(rng) for _ in range(rng.randint(0, 3))], False, ""
    return MGMT + kind, [request], False, str(request)[:160].replace("\n", " ")


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def garbage_body(rng: random.Random, valid: bytes) -> tuple[bytes, str]:
    """Bytes that are (mostly) not a valid message of any request type, and what they are."""
    roll = rng.randrange(9)
    if roll == 0:
        return rng.randbytes(rng.choice((1, 2, 7, 64, 1000, 4096))), "random bytes"
    if roll == 1:
        bad = b"\xff\xfe" + rng.randbytes(rng.randint(0, 20))
        field_tag = rng.choice((0x0A, 0x12, 0x2A, 0x4A))  # a length-delimited string field 1, 2, 5 or 9
        return bytes([field_tag]) + varint(len(bad)) + bad, "invalid UTF-8 in a string field"
    if roll == 2 and len(valid) > 1:
        return valid[: rng.randrange(1, len(valid))], "truncated message"
    if roll == 3:
        return b"\x08" + b"\xff" * rng.randint(10, 20), "overlong varint"
    if roll == 4:
        return b"\x0a" + varint(rng.choice((2**31, 2**32 - 1, 10**9))) + b"x", "length past the end"
    if roll == 5:
        return b"\x0b" * rng.choice((50, 101, 1000, 100_000)), "deeply nested groups"
    if roll == 6:
        key = b"\xc3\x28"  # invalid UTF-8 as a map key
        entry = b"\x0a" + varint(len(key)) + key + b"\x12\x01x"
        return b"\x1a" + varint(len(entry)) + entry, "invalid UTF-8 map key"
    if roll == 7:
        return b"\x00" * rng.randint(1, 10), "field number 0"
    return valid + rng.randbytes(rng.randint(1, 8)), "valid message plus trailing junk"


def garbage(rng: random.Random, target: Target) -> tuple[str, list[bytes], bool, str]:
    method = rng.choice(list(METHODS))
    request_type, request_streaming = METHODS[method][0], METHODS[method][1]
    kind = {
        "Predictions": "Predictions",
        "StreamPredictions": "Predictions",
        "StreamPredictions2": "Predictions",
        "ServerReflectionInfo": "reflection",
    }.get(method.rsplit("/", 1)[1], method.rsplit("/", 1)[1])
    if oip.is_oip(method):
        valid_requests = [oip.request_for(method, rng, target.base, oip_fields(target))[0]]
    else:
        _, valid_requests, _, _ = structured(kind if kind in dict(KINDS) else "Ping", rng, target)
    valid = [r.SerializeToString() for r in valid_requests if isinstance(r, request_type)] or [b""]
    bad, note = garbage_body(rng, valid[0])
    if not request_streaming:
        return method, [bad], not decodes(request_type, bad), note
    bodies = [*valid[: rng.randint(0, len(valid))]]
    bodies.insert(rng.randint(0, len(bodies)), bad)
    return method, bodies, not all(decodes(request_type, body) for body in bodies), f"{note} at {bodies.index(bad)}"


def message(seed: int, index: int, target: Target) -> Message:
    """Message `index` of campaign `seed` (deterministic)."""
    rng = rng_for(seed, index)
    kinds = [(k, w) for k, w in KINDS if not target.kinds or k in target.kinds]
    kind = rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
    control = undecodable = False
    read_limit: int | None = None
    if kind == "garbage":
        method, bodies, undecodable, note = garbage(rng, target)
    elif kind == "unknown":
        method, bodies, note = rng.choice(UNKNOWN_METHODS), [rng.randbytes(rng.randint(0, 32))], "unknown method"
    elif kind == "ModelStreamInfer":
        method, requests, control, note, read_limit = oip.stream_message(rng, target.base, oip_fields(target))
        bodies = [request.SerializeToString() for request in requests]
    else:
        method, requests, control, note = structured(kind, rng, target)
        bodies = [request.SerializeToString() for request in requests]
    scope = METHODS[method][3] if method in METHODS else None
    auth = "good"
    if scope is not None and rng.random() < 0.07:
        auth = rng.choice(BAD_AUTH)
        control = False
    timeout = 30.0 if method in (MGMT + "RegisterModel", MGMT + "ScaleWorker") else 10.0
    if method == oip.OIP + "ModelStreamInfer":
        timeout = 30.0  # up to 400 requests in one call
    return Message(index, method, tuple(bodies), auth, undecodable, control, note, timeout, read_limit)


def bad_metadata(
    auth: str, scope: str | None, tokens: Callable[[str], str], rng: random.Random
) -> list[tuple[str, str]]:
    """The metadata of a call with a bad token (`auth` one of BAD_AUTH)."""
    if auth == "none":
        return []
    if auth == "wrong":
        return [("authorization", "Bearer " + "x" * 43)]
    if auth == "other-scope":
        return [("authorization", "Bearer " + tokens("management" if scope == "inference" else "inference"))]
    if auth == "malformed":
        return [("authorization", rng.choice(("Bearer", "Basic abc", "bearer  ", tokens(scope or "inference"))))]
    return [("authorization", "Bearer " + "y" * 6000)]
