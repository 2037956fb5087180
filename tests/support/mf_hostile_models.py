"""A benign TorchScript model and the means to edit its code/ the way an attacker would.

Used by the hostile-model tests (tests/server/loading, tests/server/api). The Victim class's code
file and qualified name depend on the importing module's name, so edits are addressed by VICTIM.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch


class Victim(torch.nn.Module):
    """A benign model with __getstate__/__setstate__, the methods torch.jit.load runs while loading."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.ones(16)
        self.note = "n"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, str, bool]:
        return (self.weight, self.note, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, str, bool]) -> None:
        self.weight = state[0]
        self.note = state[1]
        self.training = state[2]


VICTIM = "<the file that defines Victim>"
SETSTATE_LINE = "    self.weight = (state)[0]\n"
FORWARD_LINE = "    return torch.mul(x, weight)\n"


VICTIM_QUALNAME = f"{__name__}.Victim"
"""Victim's TorchScript qualified name, without the `__torch__.` prefix."""
VICTIM_GLOBAL = f"c__torch__.{__name__}\nVictim\n".encode()
"""How data.pkl names Victim's class."""


def rewrite(source: Path, target: Path, edits: dict[str, tuple[str, str]]) -> Path:
    """Copy a TorchScript archive, replacing text in its code files.

    `edits` maps an entry suffix or VICTIM (the file defining Victim), plus an optional `#n` to edit
    one file twice, to (old, new); an empty `old` adds the entry.
    """
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        names = src.namelist()
        root = names[0].split("/", 1)[0]
        for name in names:
            if name.endswith(".debug_pkl"):
                continue  # source ranges of the original code
            data = src.read(name)
            for key, (old, new) in edits.items():
                entry = key.split("#", 1)[0]
                if name.endswith(entry) or (entry == VICTIM and name.endswith(".py") and b"class Victim(" in data):
                    text = data.decode()
                    assert old in text, f"{old!r} not in {name}"
                    data = text.replace(old, new).encode()
            dst.writestr(name, data)
        for key, (old, new) in edits.items():
            if old == "" and f"{root}/{key}" not in names:
                dst.writestr(f"{root}/{key}", new)
    return target
