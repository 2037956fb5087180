"""Identify and load one model version from a resolved source, without running code from it.

Called by the registry: identify() (cheap, manifest only) then load() (blocking, in a thread).
Formats: TorchScript `.pt` (torch.jit.load), torch.export `.pt2` (vetted by export_safety, then
torch.export.load), TorchServe `.mar` and model folders whose serializedFile is one of those, and
`.safetensors` weights with a trusted handler's build_model(). Never unpickles, never imports or
executes anything from an archive; eager-mode archives are refused with how to convert them.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .. import names
from ..echo import clip
from ..errors import ErrorKind, ModelFleetError, Reason, bad_input, load_failed
from ..settings import DEFAULT_MAX_MESSAGE_BYTES, ModelSettings
from . import archive, handlers, signature
from .contracts import (
    LoadedModel,
    LoadInfo,
    ModelContext,
    ModelFiles,
    ModelSignature,
    ModelState,
    RegisterSpec,
    ResolvedSource,
)
from .export_safety import check_export_archive
from .model_files import FolderFiles, MarFiles, NoFiles
from .torchscript_safety import check_loaded_module, check_torchscript_archive

TORCHSCRIPT = "torchscript"
EXPORT = "export"
SAFETENSORS = "safetensors"
FORMATS = {".pt": TORCHSCRIPT, ".pt2": EXPORT, ".safetensors": SAFETENSORS}
"""Serialized-file suffix -> format; the only files loaded, bare or inside a .mar / model folder."""
EAGER_SUFFIXES = frozenset({".pth", ".bin", ".ckpt", ".pkl", ".pickle"})
DEFAULT_MAX_EXTRACT_BYTES = 16 * 1024**3
"""Server-wide ceiling on a serialized file copied out of a .mar (counted while copying); each
archive is also held to its own zip-bomb limits (archive.ZipLimits: ratio, 4 x its size + 64 MiB)."""

FILE, MAR, FOLDER = "file", "mar", "folder"


@dataclass(frozen=True)
class ModelIdentity:
    """What a source is, read without loading it: the registry checks names and versions on it."""

    name: str
    version: str
    handler_name: str
    """Canonical: `default`, `generation` or a trusted module name."""
    serialized_format: str
    """TORCHSCRIPT, EXPORT or SAFETENSORS."""
    layout: str = FILE
    """FILE (bare .pt/.pt2/.safetensors), MAR or FOLDER."""
    serialized_file: str = ""
    """The file loaded: the manifest's serializedFile, or the bare file's name."""
    runtime: str = "python"
    """The manifest's runtime (reported by DescribeModel)."""
    manifest: archive.Manifest | None = None
    """The archive's manifest (MAR, FOLDER); handed to the handler at load."""


class ModelLoader:
    """Turns a ResolvedSource + RegisterSpec into a LoadedModel; holds no per-model state."""

    def __init__(
        self,
        settings: ModelSettings,
        *,
        shared_devices: Collection[str] = ("cpu",),
        work_dir: Path | None = None,
        max_extract_bytes: int = DEFAULT_MAX_EXTRACT_BYTES,
        zip_limits: archive.ZipLimits | None = None,
        max_request_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_response_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._settings = settings
        self._shared_devices = frozenset(shared_devices)
        """Devices whose runners all share the loaded module; others get one moved copy per device."""
        self._work_dir = work_dir
        """Parent of the private temporary folders .mar members are extracted to; None = system temp."""
        self._max_extract_bytes = max_extract_bytes
        self._zip_limits = zip_limits if zip_limits is not None else archive.ZipLimits()
        """Checked on a .mar's central directory before its member is inflated (zip bombs)."""
        self._max_request_bytes = max_request_bytes
        """The server's request limit: bounds the elements a tensor's shape may name (handlers.ModelState)."""
        self._max_response_bytes = max_response_bytes
        """The server's response limit: a bigger answer is refused before it is built."""

    def identify(self, source: ResolvedSource, spec: RegisterSpec) -> ModelIdentity:
        path = source.path
        origin = path.name
        if not path.exists():
            raise ModelFleetError(ErrorKind.NOT_FOUND, Reason.SOURCE_NOT_FOUND, f"model source not found: {source.url}")
        suffix = path.suffix.lower()
        if path.is_dir():
            layout, manifest = FOLDER, archive.read_folder_manifest(path)
        elif suffix == ".mar" or (suffix not in FORMATS and archive.is_mar_zip(path)):
            layout, manifest = MAR, archive.read_mar_manifest(path)
        else:
            layout, manifest = FILE, None

        if manifest is not None:
            if manifest.model_file:
                raise eager_refused(origin, f"its manifest names model code {manifest.model_file!r} (eager mode)")
            if not manifest.serialized_file:
                raise archive.unsupported(f"{origin}: the manifest names no serializedFile")
            serialized = archive.check_member_name(manifest.serialized_file, origin=origin)
            fmt = format_of(serialized, origin=origin)
            version = manifest.model_version or names.DEFAULT_VERSION
            default_name = manifest.model_name
            manifest_handler = manifest.handler or ""
            runtime = manifest.runtime or "python"
        else:
            serialized = path.name
            fmt = format_of(serialized, origin=origin)
            if fmt == TORCHSCRIPT:
                check_torchscript_file(path, origin=origin)
            version = source.version_hint or names.DEFAULT_VERSION
            default_name = path.name[: -len(suffix)] if suffix else path.name
            manifest_handler = ""
            runtime = "python"

        version = names.check_version(version)
        if spec.expected_version is not None and spec.expected_version != version:
            raise ModelFleetError(
                ErrorKind.INVALID_ARGUMENT,
                Reason.VERSION_MISMATCH,
                f"{origin} has version {version!r} but version {spec.expected_version!r} was expected",
                metadata={"expected": spec.expected_version, "actual": version},
            )
        name = self._name(spec, default_name, origin=origin)
        handler_origin = "requested" if spec.handler else "named in the archive's manifest"
        handler_name = handlers.check_allowed(
            spec.handler or manifest_handler, trusted=self._settings.trusted_handlers, origin=handler_origin
        )
        if fmt == SAFETENSORS and handler_name in handlers.BUILTIN_NAMES:
            raise archive.unsupported(
                f"{origin}: .safetensors holds weights only; the model class must come from a trusted handler "
                "module with build_model(): install it in the server image, list it with --trusted-handlers "
                "and name it as the handler"
            )
        return ModelIdentity(
            name=name,
            version=version,
            handler_name=handler_name,
            serialized_format=fmt,
            layout=layout,
            serialized_file=serialized,
            runtime=runtime,
            manifest=manifest,
        )

    @staticmethod
    def _name(spec: RegisterSpec, default_name: str | None, *, origin: str) -> str:
        if spec.model_name:
            return names.check_model_name(spec.model_name)
        if not default_name:
            raise ModelFleetError(
                ErrorKind.INVALID_ARGUMENT,
                Reason.INVALID_NAME,
                f"{origin} names no model; pass model_name",
                metadata={"field": "model_name"},
            )
        try:
            return names.check_model_name(default_name)
        except ModelFleetError as exc:
            raise ModelFleetError(
                exc.kind,
                exc.reason,
                f"{exc.message} (taken from {origin}); pass model_name to choose one",
                metadata=exc.metadata,
            ) from None

    def load(self, source: ResolvedSource, spec: RegisterSpec, identity: ModelIdentity) -> LoadedModel:
        handler = handlers.load_handler(identity.handler_name, trusted=self._settings.trusted_handlers)
        files = _model_files(source.path, identity)
        declared = _declared_signature(spec, files, identity)  # before the model: a bad one fails fast
        with self._local_file(source.path, identity) as model_path:
            module, sample_ndim, program_signature = _load_module(
                model_path, identity, handler, origin=source.path.name, zip_limits=self._zip_limits
            )
        state = ModelState(
            sample_ndim=sample_ndim,
            max_request_bytes=self._max_request_bytes,
            max_response_bytes=self._max_response_bytes,
        )
        placement = DevicePlacement(module, shared_devices=self._shared_devices)
        context = ModelContext(
            name=identity.name,
            version=identity.version,
            handler_name=identity.handler_name,
            serialized_format=identity.serialized_format,
            module=module,
            place=placement.module_for,
            state=state,
            files=files,
            manifest=identity.manifest,
            settings=self._settings,
        )
        # Every handler, built in or trusted, becomes a ModelHandler the same way: no special case here.
        model_handler = _guarded(source.path.name, f"handler {handler.name!r}", lambda: handler.create(context))
        # The program knows its tensors best, but only the tensor handler puts them on the wire.
        tensors_on_wire = identity.handler_name == signature.TENSOR_HANDLER
        return LoadedModel(
            name=identity.name,
            version=identity.version,
            handler_name=identity.handler_name,
            serialized_format=identity.serialized_format,
            handler=model_handler,
            info=LoadInfo(
                engine=identity.serialized_format,
                runtime=identity.runtime,
                handler_kind=handler.kind,
                layout=identity.layout,
                serialized_file=identity.serialized_file,
            ),
            signature=program_signature if program_signature is not None and tensors_on_wire else declared,
            state=state,
        )

    @contextlib.contextmanager
    def _local_file(self, path: Path, identity: ModelIdentity) -> Iterator[Path]:
        """The serialized file as a local path; a .mar member lives in a private temp folder meanwhile."""
        if identity.layout == FILE:
            yield path
        elif identity.layout == FOLDER:
            yield archive.folder_member(path, identity.serialized_file)
        else:
            folder = Path(tempfile.mkdtemp(prefix="modelfleet-mar-", dir=self._work_dir))  # mode 0700
            try:
                # Our own file name, never the archive's: nothing can land outside `folder`.
                suffix = PurePosixPath(identity.serialized_file).suffix.lower()
                yield archive.extract_member(
                    path,
                    identity.serialized_file,
                    folder / f"model{suffix}",
                    max_bytes=self._max_extract_bytes,
                    limits=self._zip_limits,
                )
            finally:
                archive.remove_tree(folder)


class DevicePlacement:
    """The loaded module per device: the module itself on shared devices (cpu), else one copy per device.

    Runners on the same device share that device's module (inference only reads it).
    """

    def __init__(self, module: Any, *, shared_devices: Collection[str]) -> None:
        self.module = module
        self._shared = frozenset(shared_devices)
        self._copies: dict[str, Any] = {}
        self._lock = threading.Lock()

    def module_for(self, device: str) -> Any:
        if device in self._shared:
            return self.module
        with self._lock:
            placed = self._copies.get(device)
            if placed is None:
                placed = self._copies[device] = _copy_to(self.module, device)
            return placed


def _copy_to(module: Any, device: str) -> Any:
    import torch

    try:
        with _quiet_torch():
            if isinstance(module, torch.jit.ScriptModule):
                # TorchScript's own round trip, straight onto the device (deepcopy trips over its tensors).
                buffer = io.BytesIO()
                torch.jit.save(module, buffer)
                buffer.seek(0)
                jit_load: Callable[..., Any] = torch.jit.load
                return jit_load(buffer, map_location=device)
            # deepcopy then move: Module.to() moves in place, and the original must stay where it is.
            return copy.deepcopy(module).to(device)
    except Exception as exc:
        raise load_failed(f"could not place the model on {device}: {_summary(exc)}") from None


def _model_files(path: Path, identity: ModelIdentity) -> ModelFiles:
    """The source's extra files for its handler (index_to_name.json and the like)."""
    if identity.layout == MAR:
        return MarFiles(path, skip=identity.serialized_file)
    if identity.layout == FOLDER:
        return FolderFiles(path, skip=identity.serialized_file)
    return NoFiles(path.name)


MAX_SIGNATURE_BYTES = 1024 * 1024
"""A signature.json bigger than this is refused (a real one is a few hundred bytes)."""


def _declared_signature(spec: RegisterSpec, files: ModelFiles, identity: ModelIdentity) -> ModelSignature | None:
    """The desired state's signature, else the archive's signature.json; both checked for the handler.

    The archive's file is validated even when the desired state overrides it, so a broken archive
    fails wherever it is registered.
    """
    member = str(PurePosixPath(identity.serialized_file).parent / signature.SIGNATURE_FILE)
    packaged = None
    if member in files.names():
        raw = files.read(member)
        where = f"{member} of the model"
        if len(raw) > MAX_SIGNATURE_BYTES:
            raise bad_input(f"signature: {where} has {len(raw)} bytes; at most {MAX_SIGNATURE_BYTES} are allowed")
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise bad_input(clip(f"signature: {where} is not valid JSON: {exc}")) from None
        packaged = signature.parse(document, where=where, origin=signature.ARCHIVE)
        signature.check_for_handler(packaged, identity.handler_name, where=where)
    if spec.signature is not None:
        signature.check_for_handler(spec.signature, identity.handler_name, where="the desired state's signature")
        return spec.signature
    return packaged


def format_of(file_name: str, *, origin: str) -> str:
    lowered = file_name.lower()
    suffix = PurePosixPath(lowered).suffix
    if suffix in FORMATS:
        return FORMATS[suffix]
    if suffix in EAGER_SUFFIXES:
        raise eager_refused(origin, f"{file_name!r} is a pickled checkpoint (eager mode)")
    if lowered.endswith((".tar.gz", ".tgz")):
        raise archive.unsupported(
            f"{origin}: tgz model archives are not supported; unpack it into a model folder "
            "(TorchServe's no-archive format, with MAR-INF/MANIFEST.json) or use a .mar"
        )
    raise archive.unsupported(
        f"{origin}: unsupported model file {file_name!r}; supported are .pt (TorchScript), .pt2 "
        "(torch.export), .mar archives and model folders (MAR-INF/MANIFEST.json) holding one of those, "
        "and .safetensors weights with a trusted handler"
    )


def eager_refused(origin: str, detail: str) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.INVALID_ARGUMENT,
        Reason.UNSUPPORTED_FORMAT,
        f"{origin}: {detail}. Eager-mode models (Python model code plus pickled weights) are not loaded, "
        "because that would run code from the model. Convert it: torch.jit.script(model) (or "
        "torch.jit.trace(model, example)) and .save('model.pt'), or "
        "torch.export.save(torch.export.export(model, (example,)), 'model.pt2'); then register that file, "
        "or a .mar whose serializedFile it is (handler 'default').",
    )


def check_torchscript_file(path: Path, *, origin: str) -> None:
    """Tell a TorchScript archive from a torch.save() pickle with the same suffix, from its zip listing."""
    try:
        with zipfile.ZipFile(path) as archive_zip:
            entries = archive_zip.namelist()
    except zipfile.BadZipFile:
        raise _not_a_zip(path, origin) from None
    except OSError as exc:
        raise load_failed(f"{origin}: cannot read the model file ({exc.strerror or exc})") from None
    if any(e.endswith("/constants.pkl") or "/code/" in e for e in entries):
        return
    if any(e.endswith("/data.pkl") for e in entries):
        raise eager_refused(origin, "it is a torch.save() checkpoint, not a TorchScript archive")
    raise archive.unsupported(f"{origin}: not a TorchScript archive")


def _not_a_zip(path: Path, origin: str) -> ModelFleetError:
    """A pickle (torch.save's legacy format) gets the conversion advice; anything else is called corrupt."""
    try:
        with path.open("rb") as file:
            head = file.read(2)
    except OSError as exc:
        return load_failed(f"{origin}: cannot read the model file ({exc.strerror or exc})")
    if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return eager_refused(origin, "it is not a TorchScript archive but a pickled checkpoint")
    what = "a truncated or corrupt zip archive" if head == b"PK" else "corrupt, or not a model file at all"
    return archive.unsupported(f"{origin}: not a TorchScript archive: the file is {what}")


def _load_module(
    path: Path, identity: ModelIdentity, handler: handlers.Handler, *, origin: str, zip_limits: archive.ZipLimits
) -> tuple[Any, int | None, ModelSignature | None]:
    """The module on the CPU, and the sample rank and signature when the file says them."""
    fmt = identity.serialized_format
    if fmt in (TORCHSCRIPT, EXPORT):
        # torch inflates deflated members in memory: a small file could make it allocate gigabytes.
        _check_zip_limits(path, zip_limits, origin=origin)
    if fmt == TORCHSCRIPT:
        check_torchscript_file(path, origin=origin)
        # Before torch.jit.load: loading runs the archive's __setstate__ methods.
        check_torchscript_archive(path, origin=origin)
        return _guarded(origin, "TorchScript model", lambda: _load_torchscript(path, origin)), None, None
    if fmt == EXPORT:
        check_export_archive(path)
        loaded: tuple[Any, int | None, ModelSignature | None] = _guarded(
            origin, "torch.export program", lambda: _load_export(path)
        )
        return loaded
    build_model = handler.hooks.build_model if handler.hooks else None
    if build_model is None:
        raise archive.unsupported(
            f"{origin}: trusted handler {handler.name!r} has no build_model(), which .safetensors weights need"
        )
    return _guarded(origin, "safetensors weights", lambda: _load_safetensors(path, build_model)), None, None


def _check_zip_limits(path: Path, limits: archive.ZipLimits, *, origin: str) -> None:
    try:
        with zipfile.ZipFile(path) as model_zip:
            limits.check(model_zip, archive_bytes=path.stat().st_size, origin=origin)
    except zipfile.BadZipFile:
        return  # not a zip: the format checks that follow say what it is
    except OSError as exc:
        raise load_failed(f"{origin}: cannot read the model file ({exc.strerror or exc})") from None


def _guarded(origin: str, what: str, load: Callable[[], Any]) -> Any:
    try:
        with _quiet_torch():
            return load()
    except ModelFleetError:
        raise
    except Exception as exc:
        raise load_failed(f"{origin}: could not load the {what}: {_summary(exc)}") from None


def _load_torchscript(path: Path, origin: str) -> Any:
    import torch

    jit_load: Callable[..., Any] = torch.jit.load  # untyped in torch's stubs
    module = jit_load(str(path), map_location="cpu")
    module.eval()
    check_loaded_module(module, origin=origin)
    return module


def _load_export(path: Path) -> tuple[Any, int | None, ModelSignature | None]:
    import torch

    program = torch.export.load(str(path))
    user_inputs = set(program.graph_signature.user_inputs)
    values = [
        node.meta.get("val") for node in program.graph.nodes if node.op == "placeholder" and node.name in user_inputs
    ]
    sample_ndim = None
    if len(values) == 1 and isinstance(values[0], torch.Tensor) and values[0].dim() >= 1:
        sample_ndim = values[0].dim() - 1
    # No .eval(): exported programs are already specialised and refuse train()/eval().
    return program.module(), sample_ndim, signature.from_export(program)


def _load_safetensors(path: Path, build_model: Callable[[], Any]) -> Any:
    from safetensors.torch import load_file

    weights = load_file(str(path), device="cpu")
    model = build_model()
    model.load_state_dict(weights, strict=True)
    model.eval()
    return model


def _summary(exc: BaseException) -> str:
    from .handlers.tensor import summarize_error

    summary = summarize_error(exc)
    return summary if len(summary) <= 500 else summary[:497] + "..."


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    # torch 2.13 deprecates torch.jit.* and warns when an exported module is deep-copied; these are
    # not the operator's to act on. (catch_warnings swaps global filters: loads are rare and short.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield
