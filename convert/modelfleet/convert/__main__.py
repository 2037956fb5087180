"""`modelfleet-convert` / `python -m modelfleet.convert`: convert one eager TorchServe archive.

Parses the command line into ConvertSettings, runs the pipeline with progress on stderr, prints the
report on stdout and exits 0 (written), 1 (no method matched the eager model or passed the server's
check) or 2 (the source or a flag cannot be used as given). Runs the archive's code: see docs/convert.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import FAILED, ConvertError
from .progress import Progress
from .settings import DTYPE_NAMES, METHODS, ConvertSettings, parse_shape

DESCRIPTION = (
    "Convert an eager TorchServe archive (model.py + pickled weights, HF pytorch_model.bin or safetensors) into "
    "an archive ModelFleet serves (torch.export .pt2, else TorchScript .pt), and check that it answers like "
    "the original. This IMPORTS AND RUNS THE ARCHIVE'S model.py in this process: run it only on archives "
    "you trust, in your own environment, never inside the server."
)


def parse(argv: list[str] | None) -> ConvertSettings:
    parser = argparse.ArgumentParser(prog="modelfleet-convert", description=DESCRIPTION)
    parser.add_argument("source", type=Path, help="a TorchServe .mar (zip or tgz) or an unpacked model folder")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="the ModelFleet archive to write: NAME.mar, or a folder for any other name "
        "(default: <modelName>-modelfleet.mar here)",
    )
    parser.add_argument("--force", action="store_true", help="replace the output if it exists")
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="auto (default): torch.export, then TorchScript script, then trace; or pin one",
    )
    parser.add_argument(
        "--example-shape",
        default=None,
        help="one input sample's shape, without the batch dimension, e.g. 3,224,224 "
        "(default: from the archive or its handler kind)",
    )
    parser.add_argument(
        "--example-dtype",
        choices=DTYPE_NAMES,
        default="float32",
        help="dtype of the --example-shape input (default float32)",
    )
    parser.add_argument(
        "--example-input",
        type=Path,
        default=None,
        help="one input sample: a .json array of numbers or a .safetensors file with one tensor",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=1024,
        help="largest batch of the exported dynamic batch dimension (default 1024)",
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance of the check (default 1e-4)")
    parser.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance of the check (default 1e-4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random example inputs (default 0)")
    parser.add_argument(
        "--model-file", default=None, help="Python file with the model class, when the manifest names no modelFile"
    )
    parser.add_argument(
        "--model-class", default=None, help="the nn.Module class to build, when the model file defines several"
    )
    parser.add_argument(
        "--select-output",
        default=None,
        help="keep one part of a structured output (logits, out, 0): the 'default' handler answers one tensor",
    )
    parser.add_argument(
        "--handler",
        default=None,
        help="handler name for the output's manifest (default: the archive's standard handler, else 'default')",
    )
    args = parser.parse_args(argv)
    try:
        shape = parse_shape(args.example_shape) if args.example_shape is not None else None
    except ConvertError as exc:
        parser.error(exc.message)
    if args.max_batch < 2:
        parser.error("--max-batch must be at least 2")
    if args.atol < 0 or args.rtol < 0:
        parser.error("--atol and --rtol must not be negative")
    return ConvertSettings(
        source=args.source,
        output=args.output,
        force=args.force,
        method=args.method,
        example_shape=shape,
        example_dtype=args.example_dtype,
        example_input=args.example_input,
        max_batch=args.max_batch,
        atol=args.atol,
        rtol=args.rtol,
        seed=args.seed,
        model_file=args.model_file,
        model_class=args.model_class,
        select_output=args.select_output,
        handler=args.handler,
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse(argv)
    from .pipeline import convert  # imports torch: after the flags are known to be usable
    from .report import render

    try:
        report = convert(settings, Progress())
    except ConvertError as exc:
        print(f"modelfleet-convert: {exc.message}", file=sys.stderr)
        return exc.status
    print(render(report), flush=True)
    return 0 if report.ok else FAILED


if __name__ == "__main__":
    sys.exit(main())
