"""What a conversion did, gathered by the pipeline step by step and rendered for a person by __main__.

Says which path was taken and why the others were not, how far the converted model is from the eager
one, what happened to the handler and to every other file of the archive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .exporting import FILE_NAMES, TITLES


@dataclass(frozen=True)
class Attempt:
    method: str
    ok: bool
    reason: str
    """Why it failed, or (when it passed) how it was made, e.g. `dynamic batch 1..1024`."""
    max_abs_diff: float | None = None
    notes: tuple[str, ...] = ()


@dataclass
class Report:
    """Filled in as the conversion goes; `ok` only once the archive is written."""

    source: str
    output: Path
    model_name: str
    model_version: str | None
    handler_in: str
    handler_out: str = ""
    eager: str = ""
    examples: str = ""
    output_parts: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    verified: str = ""
    server_check: str = ""
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ok: bool = False

    @property
    def chosen(self) -> Attempt | None:
        return next((attempt for attempt in self.attempts if attempt.ok), None)


def render(report: Report) -> str:
    version = report.model_version or "(none: the server uses 1.0)"
    lines = [
        f"modelfleet-convert: {report.source} -> {report.output if report.ok else '(nothing written)'}",
        f"  model       {report.model_name}, version {version}",
    ]
    if report.eager:
        lines.append(f"  eager model {report.eager}")
    if report.examples:
        lines.append(f"  inputs      {report.examples}")
    if report.output_parts:
        parts = "one tensor" if report.output_parts == ["output"] else ", ".join(report.output_parts)
        lines.append(f"  outputs     {parts}")
    for attempt in report.attempts:
        title = TITLES[attempt.method]
        if attempt.ok:
            lines.append(f"  PATH TAKEN  {title} -> {FILE_NAMES[attempt.method]} ({attempt.reason})")
            lines += [f"              note: {note}" for note in attempt.notes]
        else:
            lines.append(f"  not taken   {title}: {attempt.reason}")
    chosen = report.chosen
    if chosen is not None:
        lines.append(f"  verified    {report.verified}")
        lines.append(f"  server      {report.server_check}")
        standard = report.handler_out == report.handler_in
        kind = "TorchServe standard handler, kept" if standard else "written to the manifest"
        lines.append(f"  handler     {report.handler_out} ({kind})")
    lines += [f"  file        {entry}" for entry in report.files]
    lines += [f"  NOTE        {note}" for note in report.notes]
    if not report.ok:
        tried = ", ".join(TITLES[a.method] for a in report.attempts)
        lines.append(
            f"  FAILED      no conversion path matched the eager model and passed the server's check "
            f"(tried: {tried or 'none'}); see the reasons above"
        )
    return "\n".join(lines)


def finite(value: float | None) -> float | None:
    """JSON has no infinity: an unmeasurable difference is written as null."""
    return None if value is None or not math.isfinite(value) else value
