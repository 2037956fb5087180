"""Regenerate the committed Python stubs from the .proto files in PROTO_FILES, with the pinned generator.

Run `python protos/generate.py` (any Python 3.11) after changing a .proto. protoc runs inside
.venv-protoc, which holds exactly protos/requirements-protoc.txt (created here when missing;
scripts/setup.sh makes it too): the generator decides the protobuf/grpcio floors that the stubs
check at import, so it is pinned rather than taken from whatever venv runs this script.
tests/protos/test_stubs_are_fresh.py calls `generate(out_dir)` into a temporary folder and fails
when the committed files differ. The virtual include path `modelfleet/protos=protos` makes the stubs
import each other as `modelfleet.protos.*`, so no post-processing is needed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROTOS_DIR = Path(__file__).resolve().parent
ROOT = PROTOS_DIR.parent
PROTO_FILES = ("inference.proto", "management.proto", "open_inference.proto", "torchserve_open_inference.proto")
REQUIREMENTS = PROTOS_DIR / "requirements-protoc.txt"
TOOLS_VENV = ROOT / ".venv-protoc"
TOOLS_PYTHON = TOOLS_VENV / "bin" / "python"


def pins() -> dict[str, str]:
    """requirements-protoc.txt as {distribution: version}."""
    found = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[name.strip().lower()] = version.strip()
    return found


def make_tools_venv() -> Path:
    """Create .venv-protoc with the pinned generator unless it is there; return its python."""
    if not TOOLS_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True)
        pip = [str(TOOLS_PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    return TOOLS_PYTHON


def generate(out_dir: Path, *, create: bool = True) -> None:
    """Write modelfleet/protos/*_pb2{,_grpc}.py{,i} under out_dir, running protoc in .venv-protoc."""
    if create:
        make_tools_venv()
    elif not TOOLS_PYTHON.exists():
        raise FileNotFoundError(f"{TOOLS_VENV} is missing: run `bash scripts/setup.sh` or `python protos/generate.py`")
    subprocess.run([str(TOOLS_PYTHON), __file__, "--protoc", str(out_dir)], check=True)


def _protoc(out_dir: Path) -> None:
    """The protoc run itself, inside .venv-protoc (refuses any other grpcio-tools)."""
    import importlib.metadata

    import google.rpc.status_pb2  # the googleapis-common-protos install holds google/rpc/*.proto
    import grpc_tools
    from grpc_tools import protoc

    wanted, found = pins()["grpcio-tools"], importlib.metadata.version("grpcio-tools")
    if found != wanted:
        raise RuntimeError(f"grpcio-tools {found} is not the pinned {wanted}: recreate {TOOLS_VENV}")
    googleapis_root = Path(google.rpc.status_pb2.__file__).resolve().parents[2]
    bundled = Path(grpc_tools.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-Imodelfleet/protos={PROTOS_DIR}",
        f"-I{bundled}",
        f"-I{googleapis_root}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(PROTOS_DIR / name) for name in PROTO_FILES),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--protoc"]:
        _protoc(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["--tools-venv"]:
        print(make_tools_venv())
    else:
        generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTOS_DIR)
