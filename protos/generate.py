"""Regenerate the committed Python stubs from the .proto files in PROTO_FILES.

Run `python protos/generate.py` after changing a .proto; tests/protos/test_stubs_are_fresh.py
calls `generate(out_dir)` into a temporary folder and fails when the committed files differ.
The virtual include path `modelfleet/protos=protos` makes the stubs import each other as
`modelfleet.protos.*`, so no post-processing is needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTOS_DIR = Path(__file__).resolve().parent
PROTO_FILES = ("inference.proto", "management.proto", "open_inference.proto", "torchserve_open_inference.proto")


def generate(out_dir: Path) -> None:
    """Write modelfleet/protos/*_pb2{,_grpc}.py{,i} under out_dir."""
    import google.rpc.status_pb2  # the googleapis-common-protos install holds google/rpc/*.proto
    import grpc_tools
    from grpc_tools import protoc

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
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTOS_DIR)
