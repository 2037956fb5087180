"""One conversion from start to end: read the archive, build the eager model, convert, verify, vet, write.

Called by __main__ with the settings and a Progress. In `auto` mode the methods are tried in order
(torch.export, script, trace) and the first whose output matches the eager model AND passes the
server's loader is kept; every attempt and its reason goes into the report. Raises ConvertError for
sources that cannot be converted as given; a conversion where no method passed returns a report
whose `ok` is False.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath

import torch

from . import eager as eager_models
from . import examples as example_inputs
from . import exporting, handler_kinds, server_check, vocab, writing
from .errors import ConvertError
from .outputs import flatten, parse_path, select
from .progress import Progress
from .report import Attempt, Report, finite
from .settings import ConvertSettings
from .torchserve_archive import TorchServeArchive, opened
from .verify import verify

PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".pt2"})


def convert(settings: ConvertSettings, progress: Progress) -> Report:
    with opened(settings.source) as archive:
        output = (settings.output or Path.cwd() / f"{archive.model_name}-modelfleet.mar").absolute()
        writing.check_target(output, force=settings.force)
        report = Report(
            source=settings.source.name,
            output=output,
            model_name=archive.model_name,
            model_version=archive.model_version,
            handler_in=archive.handler,
        )
        members, vocab_size = _carry_files(archive, report, progress)
        with progress.step(f"building the eager model from {archive.model_file or settings.model_file}"):
            eager = eager_models.build(archive, model_file=settings.model_file, model_class=settings.model_class)
        report.eager = f"{eager.model_file} (class {eager.class_name}) + {eager.weights}"
        examples = example_inputs.choose(
            archive,
            shape=settings.example_shape,
            dtype=settings.example_dtype,
            input_file=settings.example_input,
            vocab_size=vocab_size,
        )
        report.examples = examples.describe()
        select_path = parse_path(settings.select_output) if settings.select_output else None
        report.output_parts = _output_parts(eager.module, examples, select_path, seed=settings.seed)
        methods = exporting.ORDER if settings.method == "auto" else (settings.method,)
        with tempfile.TemporaryDirectory(prefix="modelfleet-convert-work-") as work:
            built = None
            for method in methods:
                built = _attempt(
                    method,
                    eager.module,
                    examples,
                    settings,
                    report,
                    progress,
                    select_path=select_path,
                    work_dir=Path(work),
                )
                if built is not None:
                    break
            if built is None:
                return report
            report.handler_out = settings.handler or (
                archive.handler if handler_kinds.is_standard(archive.handler) else server_check.CHECK_HANDLER
            )
            if archive.handler and not handler_kinds.is_standard(archive.handler):
                report.notes.append(handler_kinds.custom_handler_advice(archive.handler, report.handler_out))
            if report.output_parts != ["output"] and report.handler_out == server_check.CHECK_HANDLER:
                report.notes.append(
                    "ModelFleet's 'default' handler answers one tensor per sample, and this model returns "
                    f"{len(report.output_parts)} parts ({', '.join(report.output_parts[:6])}). Serve it with a "
                    "trusted handler, or convert again with --select-output NAME to keep one of them."
                )
            doc = writing.manifest(
                model_name=archive.model_name,
                model_version=archive.model_version,
                serialized_file=built.path.name,
                handler=report.handler_out,
                converted_from={
                    "archive": settings.source.name,
                    "method": built.method,
                    "maxAbsDiff": finite(report.attempts[-1].max_abs_diff),
                },
            )
            with progress.step(f"writing {output.name}"):
                writing.write(
                    output,
                    [writing.Member(built.path.name, source=built.path), *members],
                    manifest_doc=doc,
                    force=settings.force,
                )
            report.server_check = server_check.vet(output, load=False) + "; " + report.server_check
        report.ok = True
        return report


def _attempt(
    method: str,
    model: torch.nn.Module,
    examples: example_inputs.Examples,
    settings: ConvertSettings,
    report: Report,
    progress: Progress,
    *,
    select_path: tuple[str | int, ...] | None,
    work_dir: Path,
) -> exporting.Built | None:
    """Convert, verify and vet with one method; the Built when all three pass, else None (reason recorded)."""
    title = exporting.TITLES[method]
    try:
        with progress.step(f"converting with {title}"):
            built = exporting.build(
                method,
                model,
                examples,
                select=select_path,
                work_dir=work_dir,
                max_batch=settings.max_batch,
                seed=settings.seed,
            )
    except exporting.MethodFailed as exc:
        report.attempts.append(Attempt(method, ok=False, reason=str(exc)))
        return None
    sizes = ", ".join(map(str, examples.verify_sizes))
    if examples.other_image_size is not None:
        sizes += f"; images {list(examples.sample_shape[-2:])} and {list(examples.other_image_size[-2:])}"
    with progress.step(f"verifying against the eager model ({examples.varying} {sizes})"):
        try:
            converted = exporting.load_back(built)
        except Exception as exc:
            report.attempts.append(Attempt(method, ok=False, reason=f"cannot be loaded back: {exporting.reason(exc)}"))
            return None
        checked = verify(
            model,
            converted,
            examples,
            select_path=select_path,
            atol=settings.atol,
            rtol=settings.rtol,
            seed=settings.seed,
        )
    if not checked.ok:
        report.attempts.append(Attempt(method, ok=False, reason=checked.problem, max_abs_diff=checked.max_abs_diff))
        return None
    with progress.step("checking the file with ModelFleet's loader"):
        try:
            server_check.vet(built.path)
        except ConvertError as exc:
            report.attempts.append(Attempt(method, ok=False, reason=exc.message, max_abs_diff=checked.max_abs_diff))
            return None
    report.server_check = f"the server's loader vetted and loaded {built.path.name}"
    report.attempts.append(
        Attempt(method, ok=True, reason=built.detail, max_abs_diff=checked.max_abs_diff, notes=built.notes)
    )
    report.verified = (
        f"{examples.varying} {sizes}: max |eager - converted| = {checked.max_abs_diff:.3g} "
        f"(tolerance atol {settings.atol:g}, rtol {settings.rtol:g})"
    )
    return built


def _output_parts(
    model: torch.nn.Module, examples: example_inputs.Examples, select_path: tuple[str | int, ...] | None, *, seed: int
) -> list[str]:
    """The names of the model's output parts (one entry, `output`, for a plain tensor)."""
    args = examples.make(examples.export_size, seed=seed)
    with torch.no_grad():
        try:
            out = model(*args)
        except Exception as exc:
            raise ConvertError(
                f"the eager model fails on the example input ({examples.describe()}): "
                f"{exporting.reason(exc)}; pass --example-shape/--example-input"
            ) from None
        if select_path:
            try:
                out = select(out, select_path)
            except (KeyError, IndexError, TypeError):
                parts = [name for name, _ in flatten(out)]
                raise ConvertError(
                    f"--select-output {'.'.join(map(str, select_path))}: the output has no such "
                    f"part; its parts are {parts}"
                ) from None
    return [name for name, _ in flatten(out)]


def _carry_files(
    archive: TorchServeArchive, report: Report, progress: Progress
) -> tuple[list[writing.Member], int | None]:
    """The archive's other files the handlers need; code and pickles are left out (or converted), with why."""
    members: list[writing.Member] = []
    vocab_size = None
    handler_file = archive.handler.split(":", 1)[0]
    handler_file = handler_file if handler_file.endswith(".py") else f"{handler_file}.py"
    for name in archive.files():
        if name in (archive.model_file, archive.serialized_file):
            continue
        suffix = PurePosixPath(name).suffix.lower()
        if PurePosixPath(name).name == vocab.PICKLED_VOCAB:
            with progress.step(f"converting {name} to JSON (unpickled here, never in the server)"):
                converted = vocab.vocab_to_json(archive.root / name)
            json_name = str(PurePosixPath(name).with_name(vocab.JSON_VOCAB))
            members.append(writing.Member(json_name, data=vocab.to_bytes(converted)))
            vocab_size = vocab.size(converted)
            report.files.append(f"{name} -> {json_name} ({len(converted['stoi'])} tokens, converted)")
        elif name == handler_file:
            report.files.append(f"{name}: left out (handler code; ModelFleet never runs code from an archive)")
        elif suffix == ".py":
            report.files.append(f"{name}: left out (Python code; ModelFleet never runs code from an archive)")
        elif suffix in PICKLE_SUFFIXES:
            report.files.append(
                f"{name}: left out (pickled data, which the server never reads; turn it into "
                "JSON or safetensors for a trusted handler)"
            )
        elif PurePosixPath(name).name == "requirements.txt":
            report.files.append(f"{name}: left out (the server installs nothing from an archive)")
        else:
            members.append(writing.Member(name, source=archive.root / name))
            report.files.append(f"{name}: kept")
    return members, vocab_size
