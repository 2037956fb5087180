"""Vet a TorchScript `.pt` archive before torch.jit.load may read it.

Called by loading.py. torch.jit.load compiles the archive's `code/` (TorchScript source) and runs its
`__setstate__` methods while unpickling `data.pkl`; `forward` and every other method run later. Any of
them can call any registered operator, including ones that read or write files (`aten::from_file`).
So before torch sees the file, its code is parsed as a Python syntax tree (never executed) and every
operator, builtin, attribute and class it can reach is resolved the way TorchScript's importer resolves
it and checked against the allow-list (operators.py); the pickles are read opcode by opcode (never
unpickled) and may only name tensors, containers and the archive's own classes. Anything else is
refused with UNSUPPORTED_FORMAT naming the method and the operator. docs/model-safety.md has the design.
"""

from __future__ import annotations

import ast
import pickletools  # a disassembler: reads opcodes, never unpickles (see _check_pickle)
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import NoReturn

from ..errors import ErrorKind, ModelFleetError, Reason
from .operators import OperatorAllowList, default_allow_list, registered_short_names

MAX_CODE_BYTES = 16 * 1024**2
"""Most TorchScript source an archive may carry (all code/ files together, uncompressed)."""
MAX_PICKLE_BYTES = 256 * 1024**2
"""Most bytes of one pickle (data.pkl, constants.pkl, debug info) read for vetting."""

_FIXED_ENTRIES = frozenset(
    {"data.pkl", "constants.pkl", "version", ".data/version", "byteorder", ".data/serialization_id"}
)
_OPTIONAL_PICKLES = frozenset({"bytecode.pkl", "traced_inputs.pkl"})
_INFO_ENTRIES = frozenset({"mobile_info.json", "producer_info.json", "extra/mobile_info.json"})
_STORAGE_ENTRY = re.compile(r"(data|constants|traced_inputs)/\d+")

BUILTIN_OPERATORS: dict[str, str | None] = {
    # TorchScript's global builtins (ir_emitter.cpp) and the importer's special forms, with the
    # operator each becomes; None: a special form that calls nothing by itself (its arguments are vetted).
    "print": "prim::Print",
    "fork": "prim::fork",
    "awaitable": "prim::awaitable",
    "tuple": None,
    "list": None,
    "dict": None,
    "float": "aten::Float",
    "int": "aten::Int",
    "bool": "aten::Bool",
    "str": "aten::str",
    "complex": "aten::Complex",
    "getattr": None,
    "hasattr": None,
    "isinstance": None,
    "len": "aten::len",
    "hex": "aten::hex",
    "oct": "aten::oct",
    "bin": "aten::bin",
    "round": "aten::round",
    "hash": "aten::hash",
    "id": "prim::id",
    "min": "prim::min",
    "max": "prim::max",
    "abs": "prim::abs",
    "all": "aten::all",
    "any": "aten::any",
    "divmod": "aten::divmod",
    "sum": "aten::sum",
    "ord": "aten::ord",
    "chr": "aten::chr",
    "pow": "aten::pow",
    "range": None,
    "zip": None,
    "enumerate": None,
    "rangelist": "prim::rangelist",
    "sorted": "aten::sorted",
    "annotate": None,
    "unchecked_cast": None,
    "uninitialized": None,
    "_to_tensor": "prim::NumToTensor",
    "AssertionError": None,
    "Exception": None,
}
TYPE_NAMES = frozenset(
    "Tensor Optional List Dict Tuple NoneType Final int float bool str complex Device Any Union number Scalar "
    "Layout ScalarType MemoryFormat Enum NamedTuple Module Interface object inf nan infj nanj self".split()
)
"""Names that are types or constants in TorchScript source, never calls."""
_ENV_ROOTS = frozenset({"torch", "ops", "__torch__", "CONSTANTS", "math"})
_CLASS_BASES = frozenset({"Module", "Interface", "Enum", "NamedTuple", "object"})

_NODES: tuple[type[ast.AST], ...] = (
    ast.Module,
    ast.ClassDef,
    ast.FunctionDef,
    ast.arguments,
    ast.arg,
    ast.Return,
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.For,
    ast.While,
    ast.If,
    ast.With,
    ast.withitem,
    ast.Raise,
    ast.Assert,
    ast.Expr,
    ast.Pass,
    ast.Break,
    ast.Continue,
    ast.Delete,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.IfExp,
    ast.Dict,
    ast.List,
    ast.Tuple,
    ast.ListComp,
    ast.DictComp,
    ast.comprehension,
    ast.Compare,
    ast.Call,
    ast.keyword,
    ast.Constant,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.Name,
    ast.Starred,
    ast.expr_context,
    ast.operator,
    ast.unaryop,
    ast.cmpop,
    ast.boolop,
)
"""Syntax TorchScript's printer writes; anything else (lambda, import, global, yield, ...) is refused."""

_PICKLE_GLOBALS = frozenset(
    {
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("torch", "device"),
        ("torch.jit._pickle", "build_intlist"),
        ("torch.jit._pickle", "build_doublelist"),
        ("torch.jit._pickle", "build_boollist"),
        ("torch.jit._pickle", "build_tensorlist"),
        ("torch.jit._pickle", "build_tensor_from_id"),
        ("torch.jit._pickle", "restore_type_tag"),
    }
)
_STORAGE_TYPES = re.compile(
    r"(Byte|Char|Short|Int|Long|Half|Float|Double|ComplexFloat|ComplexDouble|Bool|BFloat16)"
    r"Storage|UntypedStorage"
)


def refused(origin: str, why: str) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.INVALID_ARGUMENT,
        Reason.UNSUPPORTED_FORMAT,
        f"{origin}: this TorchScript model cannot be loaded safely: {why}. A model may only use the operators "
        "listed in the server's allowed_operators.txt (see docs/model-safety.md to ask for one)",
    )


@dataclass
class _Definitions:
    """What the archive's own code defines: class and function qualified names, and member names."""

    qualnames: set[str] = field(default_factory=set)
    members: dict[str, set[str]] = field(default_factory=dict)
    """Qualified class name -> its attribute, method and enum member names."""
    all_members: set[str] = field(default_factory=set)


def check_torchscript_archive(path: Path, *, allow: OperatorAllowList | None = None, origin: str = "") -> None:
    """Raise UNSUPPORTED_FORMAT unless every method and pickle of the archive stays inside the allow-list."""
    origin = origin or path.name
    try:
        with zipfile.ZipFile(path) as archive:
            _check(archive, allow or default_allow_list(), origin)
    except zipfile.BadZipFile:
        raise refused(origin, "it is not a zip archive") from None
    except OSError as exc:
        raise refused(origin, f"cannot read it ({exc.strerror or exc})") from None


def _check(archive: zipfile.ZipFile, allow: OperatorAllowList, origin: str) -> None:
    infos = [info for info in archive.infolist() if not info.filename.endswith("/")]
    roots = {info.filename.split("/", 1)[0] for info in infos}
    if len(roots) != 1 or any("/" not in info.filename for info in infos):
        raise refused(origin, "it is not laid out as torch.jit.save writes archives")
    root = roots.pop() + "/"
    code: dict[str, zipfile.ZipInfo] = {}
    pickles: list[zipfile.ZipInfo] = []
    for info in infos:
        entry = info.filename[len(root) :]
        if entry.startswith("code/") and entry.endswith(".py"):
            code[entry] = info
        elif entry in ("data.pkl", "constants.pkl") or entry in _OPTIONAL_PICKLES or entry.endswith(".debug_pkl"):
            pickles.append(info)
        elif not (
            entry in _FIXED_ENTRIES
            or entry in _INFO_ENTRIES
            or _STORAGE_ENTRY.fullmatch(entry)
            or entry.startswith("extra/")
        ):
            raise refused(origin, f"unexpected entry {entry!r}")
    if root + "data.pkl" not in {info.filename for info in infos} or not code:
        raise refused(origin, "it has no TorchScript code and data (data.pkl, code/)")
    if sum(info.file_size for info in code.values()) > MAX_CODE_BYTES:
        raise refused(origin, "its code/ is larger than 16 MiB")

    trees = {entry: _parse(archive, info, origin) for entry, info in code.items()}
    definitions = _collect_definitions(trees)
    for entry, tree in trees.items():
        _CodeVetter(allow, definitions, origin=origin, module=_module_name(entry)).module(tree)
    for info in pickles:
        _check_pickle(archive, info, definitions, origin)


def _module_name(entry: str) -> str:
    """`code/__torch__/a/b.py` -> `__torch__.a.b`: the prefix of the qualified names it defines."""
    return ".".join(PurePosixPath(entry[len("code/") : -len(".py")]).parts)


def _parse(archive: zipfile.ZipFile, info: zipfile.ZipInfo, origin: str) -> ast.Module:
    raw = _read(archive, info, MAX_CODE_BYTES, origin)
    try:
        return ast.parse(raw.decode("utf-8"), filename=info.filename)
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError):
        raise refused(origin, f"{info.filename} is corrupt or not TorchScript source") from None


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, origin: str) -> bytes:
    """Read at most `limit` bytes, whatever the central directory claims."""
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise refused(origin, f"{info.filename} is larger than {limit} bytes")
    return data


def _collect_definitions(trees: dict[str, ast.Module]) -> _Definitions:
    found = _Definitions()
    for entry, tree in trees.items():
        prefix = _module_name(entry)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                found.qualnames.add(f"{prefix}.{node.name}")
            elif isinstance(node, ast.ClassDef):
                qualname = f"{prefix}.{node.name}"
                found.qualnames.add(qualname)
                members = found.members.setdefault(qualname, set())
                for item in ast.walk(node):
                    members.update(_member_names(item))
    for members in found.members.values():
        found.all_members.update(members)
    return found


def _member_names(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.FunctionDef):
        yield node.name
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        yield node.target.id
    elif isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Name):
                yield target.id
            elif _is_annotation_entry(target):
                # `__annotations__["0"] = <type>`: how the printer declares a submodule named "0".
                yield target.slice.value  # type: ignore[attr-defined]
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                yield target.attr
        if any(isinstance(t, ast.Name) and t.id in ("__parameters__", "__buffers__") for t in node.targets):
            if isinstance(node.value, (ast.List, ast.Tuple)):
                yield from (
                    e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
                )


def _is_annotation_entry(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == "__annotations__"
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    )


class _CodeVetter:
    """Walks one code/ file: every reference must resolve to the allow-list or to the archive's own code."""

    def __init__(self, allow: OperatorAllowList, definitions: _Definitions, *, origin: str, module: str) -> None:
        self._allow = allow
        self._defs = definitions
        self._origin = origin
        self._module = module
        self._where = module

    def module(self, tree: ast.Module) -> None:
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                self._class(node)
            elif isinstance(node, ast.FunctionDef):
                self._function(node, owner=self._module)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.Expr, ast.Pass)):
                self._where = self._module
                self._expressions(node, local_names=set())
            else:
                self._refuse(f"uses Python syntax {type(node).__name__} at module level")

    def _class(self, node: ast.ClassDef) -> None:
        qualname = f"{self._module}.{node.name}"
        self._where = qualname
        if node.decorator_list or node.keywords:
            self._refuse("decorates a class")
        for base in node.bases:
            if not (isinstance(base, ast.Name) and base.id in _CLASS_BASES):
                self._expressions(base, local_names=set())
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                self._function(item, owner=qualname)
            elif isinstance(item, (ast.Assign, ast.AnnAssign, ast.Expr, ast.Pass)):
                self._where = qualname
                self._expressions(item, local_names={"__annotations__"})
            else:
                self._refuse(f"uses Python syntax {type(item).__name__} in a class body")

    def _function(self, node: ast.FunctionDef, *, owner: str) -> None:
        self._where = f"{owner}.{node.name}"
        if node.decorator_list:
            self._refuse("decorates a method")
        local_names = {a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)}
        for extra in (node.args.vararg, node.args.kwarg):
            if extra is not None:
                local_names.add(extra.arg)
        for item in ast.walk(node):
            if isinstance(item, ast.Name) and isinstance(item.ctx, (ast.Store, ast.Del)):
                local_names.add(item.id)
            elif isinstance(item, ast.FunctionDef) and item is not node:
                self._refuse("defines a nested function")
        self._expressions(node, local_names=local_names)

    def _expressions(self, root: ast.AST, *, local_names: set[str]) -> None:
        inner: set[int] = set()  # Attribute/Name nodes that are part of a longer dotted chain
        for node in ast.walk(root):
            if not isinstance(node, _NODES):
                self._refuse(f"uses Python syntax {type(node).__name__}")
            if isinstance(node, ast.Attribute):
                inner.add(id(node.value))
        for node in ast.walk(root):
            if isinstance(node, ast.Call):
                self._call(node, local_names)
            elif isinstance(node, ast.Attribute) and id(node) not in inner:
                self._reference(node, local_names)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and id(node) not in inner:
                self._name(node.id, local_names)

    def _call(self, node: ast.Call, local_names: set[str]) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id not in local_names and func.id in ("getattr", "hasattr"):
            # getattr(x, "name") is x.name: the name must be a literal and pass the same checks.
            name_arg = node.args[1] if len(node.args) >= 2 else None
            if not (isinstance(name_arg, ast.Constant) and isinstance(name_arg.value, str)):
                self._refuse(f"calls {func.id}() with a computed attribute name")
            target = ast.Attribute(value=node.args[0], attr=name_arg.value, ctx=ast.Load())
            self._reference(target, local_names)

    def _name(self, name: str, local_names: set[str]) -> None:
        if name in local_names or name in TYPE_NAMES:
            return
        if name in BUILTIN_OPERATORS:
            operator = BUILTIN_OPERATORS[name]
            if operator is not None and not self._allow.allows(operator):
                self._refuse(f"calls {name}() ({operator})")
            return
        if name in _ENV_ROOTS:
            self._refuse(f"uses {name!r} as a value")
        self._refuse(f"refers to unknown name {name!r}")

    def _reference(self, node: ast.Attribute, local_names: set[str]) -> None:
        chain = _dotted(node)
        if chain is None or chain[0] in local_names or chain[0] not in _ENV_ROOTS:
            # A member of a value (x.size, self.linear, (s).forward): TorchScript resolves a method it
            # does not know on the value's class to `aten::<name>`, so the name itself must be safe.
            self._member(node.attr)
            if chain is not None and chain[0] not in local_names:
                self._name(chain[0], local_names)
            return
        head, rest = chain[0], chain[1:]
        if head == "CONSTANTS":
            if len(rest) != 1 or not re.fullmatch(r"c\d+", rest[0]):
                self._refuse(f"refers to {'.'.join(chain)}")
        elif head in ("torch", "math"):
            if len(rest) != 1:
                self._refuse(f"refers to {'.'.join(chain)}")
            self._operator(f"aten::{rest[0]}", shown=".".join(chain))
        elif head == "ops":
            if len(rest) != 2:
                self._refuse(f"refers to {'.'.join(chain)}")
            self._operator(f"{rest[0]}::{rest[1]}", shown=".".join(chain))
        else:
            self._archive_name(chain)

    def _operator(self, qualified: str, *, shown: str) -> None:
        if not self._allow.allows(qualified):
            self._refuse(f"uses {shown} ({qualified}), which is not an allowed operator")

    def _member(self, name: str) -> None:
        if self._allow.allows_method(name):
            return
        if name in self._defs.all_members and name not in registered_short_names():
            return
        self._refuse(f"uses .{name}, which is neither an allowed operator nor defined by the model")

    def _archive_name(self, chain: tuple[str, ...]) -> None:
        full = ".".join(chain)
        if full.startswith("__torch__.torch.classes.") or full == "__torch__.torch.classes":
            self._refuse(f"uses the custom class {full}")
        for cut in range(len(chain), 1, -1):
            prefix = ".".join(chain[:cut])
            if prefix in self._defs.qualnames:
                rest = chain[cut:]
                members = self._defs.members.get(prefix, set()) | {"__new__"}
                if len(rest) > 1 or (rest and rest[0] not in members):
                    self._refuse(f"refers to {full}")
                return
        self._refuse(f"refers to {full}, which the model does not define")

    def _refuse(self, why: str) -> NoReturn:
        raise refused(self._origin, f"{self._where} {why}")


def _dotted(node: ast.Attribute) -> tuple[str, ...] | None:
    parts: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.Attribute):
        parts.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return None
    parts.append(current.id)
    return tuple(reversed(parts))


def _check_pickle(archive: zipfile.ZipFile, info: zipfile.ZipInfo, definitions: _Definitions, origin: str) -> None:
    """Read the pickle's opcodes (never unpickle): it may only build tensors, containers and the model's classes."""
    raw = _read(archive, info, MAX_PICKLE_BYTES, origin)
    try:
        for opcode, arg, _ in _ops(raw):
            if opcode.name in ("STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"):
                raise refused(origin, f"{info.filename} uses the pickle opcode {opcode.name}")
            if opcode.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                _check_global(module, name, definitions, origin=origin, entry=info.filename)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise refused(origin, f"{info.filename} is not a valid pickle ({exc})") from None


def _ops(raw: bytes) -> Iterable[tuple[pickletools.OpcodeInfo, object, int | None]]:
    return pickletools.genops(raw)


def _check_global(module: str, name: str, definitions: _Definitions, *, origin: str, entry: str) -> None:
    if (module, name) in _PICKLE_GLOBALS:
        return
    if module == "torch" and _STORAGE_TYPES.fullmatch(name):
        return
    if module == "__torch__" or module.startswith("__torch__."):
        qualname = f"{module}.{name}"
        if qualname.startswith("__torch__.torch.classes."):
            raise refused(origin, f"{entry} creates the custom class {qualname}")
        if qualname in definitions.qualnames:
            return
    raise refused(origin, f"{entry} refers to {module}.{name}")


def check_loaded_module(module: object, *, allow: OperatorAllowList | None = None, origin: str) -> None:
    """Second line of defence after torch.jit.load: every node of every method's inlined graph is allowed.

    The source check above is what keeps `__setstate__` from running anything unlisted; this one
    confirms, on torch's own compiled graphs, that forward and the other methods agree with it.
    """
    allow = allow or default_allow_list()
    modules = getattr(module, "modules", None)
    for sub in modules() if callable(modules) else ():
        cpp = getattr(sub, "_c", None)
        if cpp is None:
            continue
        for name in cpp._method_names():
            graph = cpp._get_method(name).inlined_graph
            for kind in _node_kinds(graph.nodes()):
                if not allow.allows(kind):
                    raise refused(origin, f"method {name} of {sub.original_name} uses {kind}")


def _node_kinds(nodes: Iterable[object]) -> Iterator[str]:
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node.kind()  # type: ignore[attr-defined]
        for block in node.blocks():  # type: ignore[attr-defined]
            stack.extend(block.nodes())
