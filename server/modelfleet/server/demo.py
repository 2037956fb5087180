"""Build small, seeded demo models locally (no download) for the README, tests and benchmarks.

`python -m modelfleet.server.demo <store>` writes tiny.pt (Linear 16->4) and mlp.pt
(256->1024->1024->10) as TorchScript. Seeded, so expected outputs can be recomputed anywhere.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

SHAPES: dict[str, tuple[int, ...]] = {"tiny": (16, 4), "mlp": (256, 1024, 1024, 10)}


def build_module(kind: str, *, seed: int = 0) -> Any:
    """The eager torch module for `kind` (see SHAPES), weights drawn from `seed`."""
    import torch

    sizes = SHAPES[kind]
    torch.manual_seed(seed)
    layers: list[Any] = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def write_torchscript(kind: str, path: Path, *, seed: int = 0) -> Path:
    """Script the seeded module and save it to `path`."""
    import torch

    torch.jit.script(build_module(kind, seed=seed)).save(str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store", type=Path, help="model store folder to write into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.store.mkdir(parents=True, exist_ok=True)
    for kind in SHAPES:
        print(write_torchscript(kind, args.store / f"{kind}.pt", seed=args.seed))


if __name__ == "__main__":
    main()
