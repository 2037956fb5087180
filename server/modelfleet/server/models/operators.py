"""The allow-list of operators a model may use, read from the committed `allowed_operators.txt`.

Consulted by torchscript_safety.py and export_safety.py before torch opens a model file, and by
loading.py on the loaded graphs. An operator counts as allowed only if it is listed and, for an
extension namespace (e.g. `torchvision::`), registered in this process: the list may name operators
of optional libraries, which stay refused in an image that does not install them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

CORE_NAMESPACES = frozenset({"aten", "prim"})
"""Namespaces TorchScript and torch itself always provide."""


@dataclass(frozen=True)
class OperatorAllowList:
    """Qualified operator names (`namespace::name`) a model may use; everything else is refused."""

    names: frozenset[str]

    def allows(self, qualified: str) -> bool:
        if qualified not in self.names:
            return False
        namespace = qualified.split("::", 1)[0]
        return namespace in CORE_NAMESPACES or is_registered(qualified)

    def allows_method(self, short: str) -> bool:
        """`value.short(...)` in TorchScript resolves to `aten::short`; properties to `prim::short`."""
        return f"aten::{short}" in self.names or f"prim::{short}" in self.names


def parse_allow_list(text: str) -> OperatorAllowList:
    names = set()
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            if "::" not in line:
                raise ValueError(f"allowed_operators.txt: {line!r} is not `namespace::name`")
            names.add(line)
    return OperatorAllowList(frozenset(names))


@functools.cache
def default_allow_list() -> OperatorAllowList:
    """The committed list shipped with the server package."""
    text = resources.files(__package__).joinpath("allowed_operators.txt").read_text(encoding="utf-8")
    return parse_allow_list(text)


@functools.cache
def registered_short_names() -> frozenset[str]:
    """Short names of every operator torch knows: a model's own method may not reuse one that is refused."""
    import torch

    return frozenset(schema.name.split("::", 1)[1] for schema in torch._C._jit_get_all_schemas())


def is_registered(qualified: str) -> bool:
    import torch

    try:
        return bool(torch._C._jit_get_schemas_for_operator(qualified))
    except RuntimeError:
        return False
