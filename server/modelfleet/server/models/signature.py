"""Model signatures: what tensors a version takes and gives, for the Open Inference ModelMetadata RPC.

The loader calls from_export() on a .pt2 program and parse() on a declared signature (an archive's
`signature.json`, a desired-state entry's `signature`), refusing a malformed one at register time;
effective() gives ModelMetadata's answer, falling back to documented defaults. Datatypes are the
OIP names (FP32, INT64, BYTES, ...). No torch import at module level, no I/O, no protobuf.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import bad_input
from .contracts import LoadedModel, ModelSignature, TensorSpec

DATATYPES = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
    | {"FP16", "FP32", "FP64", "BF16", "BYTES"}
)
"""The Open Inference Protocol's tensor datatypes."""

_FROM_TORCH = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "bfloat16": "BF16",
}

MAX_TENSORS = 64
"""Inputs or outputs a declared signature may list."""
MAX_DIMS = 32
"""Dimensions a declared tensor may have (the default handler's decoder allows fewer)."""
MAX_NAME = 128

MODEL, DESIRED_STATE, ARCHIVE, DEFAULT = "model", "desired-state", "archive", "default"
"""Where a signature came from, in the order the loader prefers them (a .pt2 program knows best)."""

SIGNATURE_FILE = "signature.json"
"""The archive member (or file next to the model in a folder) holding a declared signature."""

TENSOR_HANDLER = "default"
"""The one handler whose ModelInfer carries tensors; every other handler takes and gives BYTES."""

DEFAULT_INPUT, DEFAULT_OUTPUT = "input__0", "output__0"
"""Tensor names when nothing says better (Triton's PyTorch backend convention)."""
BYTES_INPUT, BYTES_OUTPUT = "data", "output"
"""Tensor names of a non-tensor handler when nothing is declared."""


def parse(document: Any, *, where: str, origin: str) -> ModelSignature:
    """A declared signature `{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}`, strictly.

    INVALID_ARGUMENT (BAD_INPUT) naming the offending path; nothing unknown is ignored, so a typo
    fails the register instead of turning into a wrong ModelMetadata answer.
    """
    if not isinstance(document, Mapping):
        raise _invalid(where, 'must be an object with "inputs" and "outputs" arrays')
    unknown = set(document) - {"inputs", "outputs"}
    if unknown:
        raise _invalid(where, f"has unknown key(s) {sorted(unknown)[:5]}; expected inputs and outputs")
    inputs = _tensors(document.get("inputs"), where=f"{where}.inputs")
    outputs = _tensors(document.get("outputs"), where=f"{where}.outputs")
    return ModelSignature(inputs, outputs, origin)


def _tensors(value: Any, *, where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(value, list) or not value:
        raise _invalid(where, "must be a non-empty array")
    if len(value) > MAX_TENSORS:
        raise _invalid(where, f"lists {len(value)} tensors; at most {MAX_TENSORS} are allowed")
    specs = tuple(_tensor(entry, where=f"{where}[{index}]") for index, entry in enumerate(value))
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise _invalid(where, "names a tensor twice")
    return specs


def _tensor(entry: Any, *, where: str) -> TensorSpec:
    if not isinstance(entry, Mapping):
        raise _invalid(where, 'must be an object with "name", "datatype" and "shape"')
    unknown = set(entry) - {"name", "datatype", "shape"}
    if unknown:
        raise _invalid(where, f"has unknown key(s) {sorted(unknown)[:5]}; expected name, datatype and shape")
    name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or not name.isprintable():
        raise _invalid(where, f".name must be a printable string of 1 to {MAX_NAME} characters")
    if datatype not in DATATYPES:
        shown = datatype if isinstance(datatype, str) and len(datatype) <= 20 else type(datatype).__name__
        raise _invalid(where, f".datatype {shown!r} is not one of {', '.join(sorted(DATATYPES))}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(size, int) and not isinstance(size, bool) and size >= -1 for size in shape)
    ):
        raise _invalid(where, f".shape must be an array of at most {MAX_DIMS} integers >= -1 (-1: any size)")
    return TensorSpec(name, datatype, tuple(shape))


def _invalid(where: str, problem: str) -> Exception:
    return bad_input(f"signature: {where} {problem}")


def check_for_handler(signature: ModelSignature, handler_name: str, *, where: str) -> None:
    """The default handler takes one tensor and gives one: a declaration saying otherwise is wrong."""
    if handler_name == TENSOR_HANDLER and (len(signature.inputs) != 1 or len(signature.outputs) != 1):
        raise _invalid(
            where,
            f"declares {len(signature.inputs)} input(s) and {len(signature.outputs)} output(s); "
            "the 'default' handler takes exactly one tensor and gives one",
        )


def datatype_of(dtype: Any) -> str | None:
    """The OIP datatype of a torch dtype, or None when OIP has none (complex, float8, ...)."""
    return _FROM_TORCH.get(str(dtype).removeprefix("torch."))


def from_export(program: Any) -> ModelSignature | None:
    """A torch.export program's user inputs and outputs: names (inputs), dtypes, -1 for symbolic sizes.

    Outputs are named `output__<i>`: torch.export names them after the graph node that made them
    (`linear`, `relu_3`), which changes with any edit to the model. None when an input or output is
    not a plain tensor (the defaults apply then).
    """
    import torch
    from torch.export.graph_signature import InputKind, OutputKind

    graph_signature = program.graph_signature
    nodes = {node.name: node for node in program.graph.nodes}
    inputs: list[TensorSpec] = []
    for spec in graph_signature.input_specs:
        if spec.kind != InputKind.USER_INPUT:
            continue
        node = nodes.get(getattr(spec.arg, "name", ""))
        value = None if node is None else node.meta.get("val")
        tensor = _spec_of(value, spec.arg.name, torch)
        if tensor is None:
            return None
        inputs.append(tensor)
    output_node = next((node for node in program.graph.nodes if node.op == "output"), None)
    values = output_node.meta.get("val") if output_node is not None else None
    user = [index for index, spec in enumerate(graph_signature.output_specs) if spec.kind == OutputKind.USER_OUTPUT]
    if not isinstance(values, (tuple, list)) or len(values) != len(graph_signature.output_specs):
        return None
    outputs: list[TensorSpec] = []
    for position, index in enumerate(user):
        tensor = _spec_of(values[index], f"output__{position}", torch)
        if tensor is None:
            return None
        outputs.append(tensor)
    if not inputs or not outputs:
        return None
    return ModelSignature(tuple(inputs), tuple(outputs), MODEL)


def _spec_of(value: Any, name: str, torch: Any) -> TensorSpec | None:
    if not isinstance(value, torch.Tensor):
        return None
    datatype = datatype_of(value.dtype)
    if datatype is None:
        return None
    return TensorSpec(name, datatype, tuple(size if isinstance(size, int) else -1 for size in value.shape))


def effective(loaded: LoadedModel) -> ModelSignature:
    """What ModelMetadata reports: the loaded signature, else the defaults for the handler.

    Default handler: `input__0` FP32 and `output__0` FP32; the input's shape is all -1 with the
    sample rank plus a batch dimension once the model knows its rank (from its first request),
    `[-1]` (rank unknown) before; the output's is `[-1]` (unknown). Other handlers: `data` and
    `output`, BYTES of shape [1].
    """
    if loaded.signature is not None:
        return loaded.signature
    if loaded.handler_name != TENSOR_HANDLER:
        return ModelSignature(
            (TensorSpec(BYTES_INPUT, "BYTES", (1,)),), (TensorSpec(BYTES_OUTPUT, "BYTES", (1,)),), DEFAULT
        )
    rank = loaded.state.sample_ndim if loaded.state is not None else None
    shape = (-1,) * (rank + 1) if rank is not None else (-1,)
    return ModelSignature(
        (TensorSpec(DEFAULT_INPUT, "FP32", shape),), (TensorSpec(DEFAULT_OUTPUT, "FP32", (-1,)),), DEFAULT
    )


def output_name(loaded: LoadedModel) -> str:
    """The name ModelInfer gives the answer (effective()'s first output, without building it)."""
    if loaded.signature is not None:
        return loaded.signature.outputs[0].name
    return DEFAULT_OUTPUT if loaded.handler_name == TENSOR_HANDLER else BYTES_OUTPUT


def platform_of(serialized_format: str) -> str:
    """ModelMetadata.platform: `pytorch_torchscript`, `pytorch_export` or `pytorch_safetensors`."""
    return {"torchscript": "pytorch_torchscript", "export": "pytorch_export"}.get(
        serialized_format, f"pytorch_{serialized_format}"
    )
