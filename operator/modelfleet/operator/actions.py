"""The management calls a plan asks for: one frozen value per kind, a closed union.

plan.py makes them; dispatch.py turns each into one PodClient call with a `match` that ends in
`assert_never`, so mypy reports a kind nobody handles. A Register carries the model and version
spec it loads and a Scale its worker counts, so no call looks a model up again (and none can find
it missing). Pure values: no I/O, no grpc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from .observed import PodRef
from .spec import ModelSpec, ModelVersionSpec

ActionKind = Literal["register", "scale", "set_default", "unregister"]


@dataclass(frozen=True)
class _Call:
    pod: PodRef
    model: str
    version: str

    kind: ClassVar[ActionKind]
    verb: ClassVar[str]
    order: ClassVar[int]
    """Within one pod: register, scale, set default, unregister (a cut-over's order)."""

    def describe(self) -> str:
        return f"{self.verb} {self.model}/{self.version} on {self.pod.name}"


@dataclass(frozen=True, kw_only=True)
class Register(_Call):
    """Load a version the pod does not hold."""

    spec: ModelSpec
    entry: ModelVersionSpec
    kind: ClassVar[Literal["register"]] = "register"
    verb: ClassVar[str] = "register"
    order: ClassVar[int] = 0


@dataclass(frozen=True, kw_only=True)
class Scale(_Call):
    """Bring a held version's worker range to the spec's."""

    min_workers: int
    max_workers: int
    kind: ClassVar[Literal["scale"]] = "scale"
    verb: ClassVar[str] = "scale"
    order: ClassVar[int] = 1


@dataclass(frozen=True)
class SetDefault(_Call):
    """Make a version the pod serves the default (only once every pod serves it)."""

    kind: ClassVar[Literal["set_default"]] = "set_default"
    verb: ClassVar[str] = "make default"
    order: ClassVar[int] = 2


@dataclass(frozen=True)
class Unregister(_Call):
    """Remove a version the spec no longer lists (the default last)."""

    kind: ClassVar[Literal["unregister"]] = "unregister"
    verb: ClassVar[str] = "unregister"
    order: ClassVar[int] = 3


Action = Register | Scale | SetDefault | Unregister
"""Every kind of management call; dispatch.py handles each (mypy checks it is all of them)."""


def register(pod: PodRef, model: ModelSpec, entry: ModelVersionSpec) -> Register:
    return Register(pod, model.name, entry.version, spec=model, entry=entry)


def scale(pod: PodRef, model: ModelSpec, version: str) -> Scale:
    return Scale(pod, model.name, version, min_workers=model.min_workers, max_workers=model.max_workers)
