"""The committed stubs are exactly what protos/generate.py makes from the committed .proto files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "protos" / "modelfleet" / "protos"
GENERATED_NAMES = [
    f"{stem}{suffix}" for stem in ("inference", "management") for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
]


def _generate(out_dir: Path) -> None:
    spec = importlib.util.spec_from_file_location("modelfleet_protos_generate", ROOT / "protos" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate(out_dir)


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    _generate(tmp_path)
    stale = [
        name
        for name in GENERATED_NAMES
        if (tmp_path / "modelfleet" / "protos" / name).read_bytes() != (COMMITTED / name).read_bytes()
    ]
    assert not stale, f"stale generated stubs {stale}: run `python protos/generate.py`"


def test_the_namespace_folder_never_gets_an_init_file() -> None:
    # An __init__.py in any modelfleet/ folder would hide the other distributions' parts.
    for dist in ("protos", "server", "operator", "local"):
        assert not (ROOT / dist / "modelfleet" / "__init__.py").exists(), dist
