"""What one conversion is asked to do: parsed from the command line by __main__, passed down explicitly.

Read by the pipeline and its steps; nothing here reads the environment or touches torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConvertError

METHODS = ("auto", "export", "script", "trace")
"""`auto` tries torch.export, then TorchScript scripting, then tracing, and keeps the first that passes."""
DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool")
"""dtypes an example built from --example-shape may have (examples.DTYPES maps them to torch's)."""


@dataclass(frozen=True)
class ConvertSettings:
    """One conversion: the source archive, where the result goes, and how it is built and checked."""

    source: Path
    """A TorchServe `.mar` (zip or tgz) or an unpacked model folder (MAR-INF/MANIFEST.json)."""
    output: Path | None = None
    """Where the ModelFleet archive is written: a `.mar` file, or any other name for a model folder;
    None = `<modelName>-modelfleet.mar` in the current folder."""
    force: bool = False
    """Replace an existing output (otherwise refused, so a typo never overwrites a model)."""
    method: str = "auto"
    """One of METHODS: pin a path instead of trying them in order."""
    example_shape: tuple[int, ...] | None = None
    """Shape of one input sample, without the batch dimension (e.g. 3,224,224); overrides the archive's kind."""
    example_dtype: str = "float32"
    """dtype of the example built from example_shape (float32, float16, bfloat16, int64, int32, uint8, bool)."""
    example_input: Path | None = None
    """A `.json` (nested numbers, float32) or `.safetensors` (one tensor) file holding one input sample."""
    max_batch: int = 1024
    """Upper bound of the exported dynamic batch dimension (samples per forward pass)."""
    atol: float = 1e-4
    """Absolute tolerance of the eager-vs-converted comparison (fp32: 1e-4)."""
    rtol: float = 1e-4
    """Relative tolerance of the same comparison."""
    seed: int = 0
    """Seed of the random example inputs, so a run can be repeated exactly."""
    model_file: str | None = None
    """Python file holding the model class, when the archive has no modelFile (e.g. an HF handler
    that builds the model itself); a path, or a file name inside the archive."""
    model_class: str | None = None
    """Class to build when the model file defines several nn.Module classes (TorchServe wants one)."""
    select_output: str | None = None
    """Keep one tensor of a structured output (`logits`, `0`, `out`): ModelFleet's `default` handler
    answers one tensor per sample; standard handlers want the structure, so it stays by default."""
    handler: str | None = None
    """Handler name written to the output's manifest instead of the archive's (e.g. your trusted module)."""


def parse_shape(text: str) -> tuple[int, ...]:
    """`3,224,224` or `3x224x224` -> (3, 224, 224); every dimension at least 1."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ConvertError(f"--example-shape {text!r}: expected integers such as 3,224,224") from None
    if not shape or any(dim < 1 for dim in shape):
        raise ConvertError(f"--example-shape {text!r}: every dimension must be at least 1")
    return shape
