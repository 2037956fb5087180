"""The committed stubs are exactly what protos/generate.py makes, with the pinned generator, from the .proto files.

The generator runs in .venv-protoc (protos/requirements-protoc.txt, made by scripts/setup.sh), so
the comparison is byte for byte with the same grpcio-tools that made the committed files; its
gencode version is the protobuf floor modelfleet-protos declares, checked here too.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "protos" / "modelfleet" / "protos"
STEMS = ("inference", "management", "open_inference", "torchserve_open_inference")
GENERATED_NAMES = [f"{stem}{suffix}" for stem in STEMS for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]


def _generate_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("modelfleet_protos_generate", ROOT / "protos" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    _generate_module().generate(tmp_path, create=False)
    made = sorted(p.name for p in (tmp_path / "modelfleet" / "protos").iterdir())
    assert made == sorted(GENERATED_NAMES)
    stale = [
        name
        for name in GENERATED_NAMES
        if (tmp_path / "modelfleet" / "protos" / name).read_bytes() != (COMMITTED / name).read_bytes()
    ]
    assert not stale, f"stale generated stubs {stale}: run `python protos/generate.py`"


def test_the_generator_venv_holds_exactly_the_pinned_tools() -> None:
    generate = _generate_module()
    listed = subprocess.run(
        [str(generate.TOOLS_PYTHON), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = dict(line.lower().split("==", 1) for line in listed.split() if "==" in line)
    assert {name: installed.get(name) for name in generate.pins()} == generate.pins()


def test_the_declared_floors_are_the_generated_codes_own_checks() -> None:
    # _pb2.py refuses a protobuf older than its gencode, _pb2_grpc.py a grpcio older than the generator:
    # so those are the true floors, and pyproject.toml must say exactly them.
    dependencies = tomllib.loads((ROOT / "protos" / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dependency in dependencies:
        match = re.match(r"([\w-]+)>=([\d.]+)", dependency)
        assert match is not None, dependency
        floors[match.group(1)] = match.group(2)
    for stem in STEMS:
        gencode = re.search(r"Protobuf Python Version: ([\d.]+)", (COMMITTED / f"{stem}_pb2.py").read_text())
        grpc_made = re.search(r"GRPC_GENERATED_VERSION = '([\d.]+)'", (COMMITTED / f"{stem}_pb2_grpc.py").read_text())
        assert gencode is not None and grpc_made is not None
        assert (gencode.group(1), grpc_made.group(1)) == (floors["protobuf"], floors["grpcio"]), stem
    pins = _generate_module().pins()
    assert (pins["protobuf"], pins["grpcio"]) == (floors["protobuf"], floors["grpcio"])
    assert pins["googleapis-common-protos"] == floors["googleapis-common-protos"]


def test_the_namespace_folder_never_gets_an_init_file() -> None:
    # An __init__.py in any modelfleet/ folder would hide the other distributions' parts.
    for dist in ("protos", "server", "operator", "local"):
        assert not (ROOT / dist / "modelfleet" / "__init__.py").exists(), dist
