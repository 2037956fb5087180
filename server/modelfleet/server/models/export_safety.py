"""Vet a torch.export `.pt2` archive before torch.export.load may read it.

Called by loading.py. torch.export.load is not safe on untrusted files: it unpickles (weights_only=False)
payloads flagged `use_pickle`, legacy weight files and sample inputs that fail the weights_only loader,
loads AOTInductor shared libraries, sympify()s (eval) shape expressions and exec()s `guards_code`.
So only what torch.export.save writes for a plain tensor program is accepted: an allow-list of entries,
no pickled payloads, operator targets from torch.ops/operator/math, and shape expressions and guards
that parse to a small allow-listed syntax. Everything else is refused with UNSUPPORTED_FORMAT.
"""

from __future__ import annotations

import ast
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ErrorKind, ModelFleetError, Reason
from .operators import default_allow_list

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FQN = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_FIXED_ENTRIES = frozenset(
    {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
)
_ENTRY_DIRS = ("models/", "data/weights/", "data/constants/", "data/sample_inputs/", "extra/")
_TENSOR_CONSTANT_PREFIX = "tensor_"

# Targets the deserializer resolves by getattr on `operator`, `math` or `torch`: only pure ones.
_OPERATOR_FUNCTIONS = frozenset(
    "getitem add sub mul truediv floordiv mod pow neg pos abs eq ne lt le gt ge and_ or_ xor not_ "
    "invert lshift rshift matmul truth".split()
)
_TORCH_FUNCTIONS = frozenset(
    "sym_int sym_float sym_max sym_min sym_not sym_ite sym_sum sym_sqrt _sym_sqrt sym_fresh_size".split()
)

# Names a shape expression (sympy srepr, fed to sympify = eval) may call or mention.
_SYMPY_NAMES = frozenset(
    (
        "Symbol Integer Float Rational Add Mul Pow Mod Max Min Abs floor ceiling Eq Ne Lt Le Gt Ge "
        "StrictLessThan StrictGreaterThan LessThan GreaterThan Equality Unequality And Or Not "
        "oo zoo nan true false True False Infinity NegativeInfinity NaN Zero One NegativeOne Half "
        "FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt FloorToInt CeilDiv LShift RShift "
        "PowByNatural FloatPow FloatTrueDiv IntTrueDiv IsNonOverlappingAndDenseIndicator TruncToFloat "
        "TruncToInt RoundToInt RoundDecimal ToFloat Identity"
    ).split()
)
# Calls a guard (exec()ed by ExportedProgram.module()) may make: tensor size queries and min/max.
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_GUARD_FUNCTIONS = frozenset({"Max", "Min", "sym_max", "sym_min"})


def refused(path: Path, why: str) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.INVALID_ARGUMENT,
        Reason.UNSUPPORTED_FORMAT,
        f"{path.name}: this torch.export archive cannot be loaded safely ({why}); ModelFleet accepts "
        "plain tensor programs saved with torch.export.save, without pickled objects, custom objects "
        "or AOTInductor code",
    )


def check_export_archive(path: Path) -> None:
    """Raise UNSUPPORTED_FORMAT unless loading `path` with torch.export.load runs no code from it."""
    try:
        with zipfile.ZipFile(path) as archive:
            _check_archive(path, archive)
    except zipfile.BadZipFile:
        raise refused(path, "not a zip archive") from None
    except OSError as exc:
        raise refused(path, f"cannot read it: {exc.strerror or exc}") from None


def _check_archive(path: Path, archive: zipfile.ZipFile) -> None:
    names = [name for name in archive.namelist() if not name.endswith("/")]
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or any("/" not in name for name in names):
        # A top-level `version` file is the pre-2.7 format, whose weights are unpickled.
        raise refused(path, "not the current .pt2 layout")
    root = roots.pop() + "/"
    entries = {name[len(root) :]: name for name in names}
    for entry in entries:
        if entry not in _FIXED_ENTRIES and not entry.startswith(_ENTRY_DIRS):
            raise refused(path, f"unexpected entry {entry!r}")
    if "archive_format" not in entries or archive.read(entries["archive_format"]).strip() != b"pt2":
        raise refused(path, "missing archive_format 'pt2'")
    models = [e[len("models/") : -len(".json")] for e in entries if e.startswith("models/") and e.endswith(".json")]
    if not models:
        raise refused(path, "no exported program in models/")
    for model in models:
        for legacy in (f"data/weights/{model}.pt", f"data/constants/{model}.pt"):
            if legacy in entries:
                raise refused(path, f"legacy pickled payload {legacy!r}")
        weights = _read_json(path, archive, entries, f"data/weights/{model}_weights_config.json")
        for fqn, meta in _payloads(path, weights):
            if meta.get("use_pickle"):
                raise refused(path, f"weight {fqn!r} is pickled")
        constants = _read_json(path, archive, entries, f"data/constants/{model}_constants_config.json")
        for fqn, meta in _payloads(path, constants):
            path_name = meta.get("path_name")
            if (
                meta.get("use_pickle")
                or not isinstance(path_name, str)
                or not path_name.startswith(_TENSOR_CONSTANT_PREFIX)
            ):
                raise refused(path, f"constant {fqn!r} is a pickled or custom object")
        sample = entries.get(f"data/sample_inputs/{model}.pt")
        if sample is not None:
            _check_sample_inputs(path, archive.read(sample))
        _check_program(path, _read_json(path, archive, entries, f"models/{model}.json"))


def _read_json(path: Path, archive: zipfile.ZipFile, entries: dict[str, str], entry: str) -> Any:
    if entry not in entries:
        raise refused(path, f"missing {entry!r}")
    try:
        return json.loads(archive.read(entries[entry]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise refused(path, f"{entry!r} is not valid JSON") from None


def _payloads(path: Path, config: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    table = config.get("config") if isinstance(config, dict) else None
    if not isinstance(table, dict):
        raise refused(path, "malformed payload config")
    for fqn, meta in table.items():
        if not isinstance(meta, dict):
            raise refused(path, "malformed payload config")
        yield fqn, meta


def _check_sample_inputs(path: Path, raw: bytes) -> None:
    """torch.export.load retries these with weights_only=False when weights_only=True fails: it must not fail.

    Strings are refused too: ExportedProgram.module() pastes string inputs into generated code.
    """
    import torch

    try:
        value = torch.load(io.BytesIO(raw), weights_only=True)
    except Exception:
        raise refused(path, "sample inputs are not plain tensors") from None
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            if not all(isinstance(k, str) and _IDENT.match(k) for k in item):
                raise refused(path, "sample input names are not identifiers")
            stack.extend(item.values())
        elif not (item is None or isinstance(item, (torch.Tensor, bool, int, float))):
            raise refused(path, f"sample inputs hold a {type(item).__name__}")


def _check_program(path: Path, program: Any) -> None:
    stack: list[Any] = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key == "metadata":
                continue  # stack traces and module paths: kept as text, never resolved to code
            if key in ("as_custom_obj", "class_fqn", "custom_obj_name"):
                raise refused(path, "it holds custom (script) objects")
            if isinstance(value, str):
                _check_string(path, key, value)
            elif key == "guards_code":
                if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
                    raise refused(path, "malformed guards_code")
                for guard in value:
                    _check_guard(path, guard)
            elif key == "range_constraints" and isinstance(value, dict):
                for bounds in value.values():
                    if not isinstance(bounds, dict) or not all(
                        b is None or (isinstance(b, int) and not isinstance(b, bool)) for b in bounds.values()
                    ):
                        raise refused(path, "malformed range_constraints")
            else:
                stack.append(value)


def _check_string(path: Path, key: str, value: str) -> None:
    if key in ("target", "as_operator"):
        _check_target(path, value)
    elif key == "expr_str":
        _check_sympy(path, value)
    elif key == "name":
        # Argument and node names end up as keyword names in code FX generates.
        if value and not _IDENT.match(value):
            raise refused(path, f"name {value!r} is not an identifier")
    elif key in ("parameter_name", "buffer_name", "tensor_constant_name", "fqn"):
        if value and (not _FQN.match(value) or any(p.startswith("__") for p in value.split("."))):
            raise refused(path, f"attribute path {value!r} is not allowed")


def _check_target(path: Path, target: str) -> None:
    parts = target.split(".")
    if any(not _IDENT.match(p) or p.startswith("__") for p in parts):
        raise refused(path, f"operator {target!r} is not allowed")
    head = parts[0]
    if head == "torch" and len(parts) in (4, 5) and parts[1] == "ops":
        # torch.ops.<namespace>.<op>[.<overload>]: the same allow-list as TorchScript (operators.py).
        qualified = f"{parts[2]}::{parts[3]}"
        if not default_allow_list().allows(qualified):
            raise refused(path, f"operator {target!r} ({qualified}) is not an allowed operator")
        return
    if head == "torch" and len(parts) == 2 and parts[1] in _TORCH_FUNCTIONS:
        return
    if head == "_operator" and len(parts) == 2 and parts[1] in _OPERATOR_FUNCTIONS:
        return
    if head == "math" and len(parts) == 2 and not parts[1].startswith("_"):
        return
    raise refused(path, f"operator {target!r} is not allowed")


def _check_sympy(path: Path, expr: str) -> None:
    tree = _parse(path, expr, "shape expression")
    symbol_names: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            # Strings reach sympify() (eval) unless they are a Symbol's name.
            if id(node) not in symbol_names:
                raise refused(path, f"shape expression {expr[:80]!r} has a string outside Symbol()")
        elif isinstance(node, ast.Call):
            func = node.func
            if not isinstance(func, ast.Name) or func.id not in _SYMPY_NAMES:
                raise refused(path, f"shape expression {expr[:80]!r} calls something not allowed")
            if func.id == "Symbol":
                # Symbol names are printed into generated guard code: identifiers only.
                if not (
                    len(node.args) == 1
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                    and _SYMBOL.match(node.args[0].value)
                    and all(
                        isinstance(k.value, ast.Constant) and isinstance(k.value.value, bool) for k in node.keywords
                    )
                ):
                    raise refused(path, f"shape expression {expr[:80]!r} has a malformed Symbol")
                symbol_names.add(id(node.args[0]))
            elif node.keywords:
                raise refused(path, f"shape expression {expr[:80]!r} passes keywords")
        elif isinstance(node, ast.Name):
            if node.id not in _SYMPY_NAMES and not _SYMBOL.match(node.id):
                raise refused(path, f"shape expression {expr[:80]!r} names {node.id!r}")
            if node.id.startswith("_"):
                raise refused(path, f"shape expression {expr[:80]!r} names {node.id!r}")
        elif not isinstance(node, _SYMPY_NODES):
            raise refused(path, f"shape expression {expr[:80]!r} uses {type(node).__name__}")


def _check_guard(path: Path, guard: str) -> None:
    tree = _parse(path, guard, "guard")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            ok = (isinstance(func, ast.Attribute) and func.attr in _GUARD_METHODS) or (
                isinstance(func, ast.Name) and func.id in _GUARD_FUNCTIONS
            )
            if not ok or node.keywords:
                raise refused(path, f"guard {guard[:80]!r} calls something not allowed")
        elif isinstance(node, ast.Attribute):
            if node.attr not in _GUARD_METHODS:
                raise refused(path, f"guard {guard[:80]!r} reads attribute {node.attr!r}")
        elif isinstance(node, ast.Name):
            if node.id != "L" and node.id not in _GUARD_FUNCTIONS:
                raise refused(path, f"guard {guard[:80]!r} names {node.id!r}")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not _IDENT.match(node.value):
                raise refused(path, f"guard {guard[:80]!r} has a string that is not an input name")
        elif not isinstance(node, _GUARD_NODES):
            raise refused(path, f"guard {guard[:80]!r} uses {type(node).__name__}")


def _parse(path: Path, text: str, what: str) -> ast.Expression:
    if len(text) > 10_000:
        raise refused(path, f"{what} too long")
    try:
        return ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        raise refused(path, f"{what} {text[:80]!r} does not parse") from None


_ARITHMETIC: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.BoolOp,
    ast.Constant,
    ast.Load,
    ast.operator,
    ast.unaryop,
    ast.cmpop,
    ast.boolop,
    ast.keyword,
)
_SYMPY_NODES = _ARITHMETIC + (ast.Tuple,)
_GUARD_NODES = _ARITHMETIC + (ast.Subscript,)
