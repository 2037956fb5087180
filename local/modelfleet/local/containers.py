"""A pod template's container turned into a local process: argv, environment, working folder.

The kubelet (kubelet.py) calls build() for each container start. Everything comes from the pod:
`command` + `args` in exec form (with Kubernetes' `$(VAR)` expansion; `$$` escapes), `env` and
`envFrom` (values, secretKeyRef, configMapKeyRef, fieldRef incl. status.podIP, resourceFieldRef).
Processes cannot chroot, so mounted paths are mapped: every arg, command word and env value that
starts with a volumeMount's mountPath (or is `--flag=<such a path>`) is rewritten to the volume's
folder on this machine (longest mountPath first; subPath appended). Files that contain absolute
paths are NOT rewritten. A container without `command` runs its image's entrypoint, which locally
is this table (IMAGE_ENTRYPOINTS), matched on the image's repository name:

    ...modelfleet-server, ...modelfleet/server     -> python -m modelfleet.server
    ...modelfleet-operator, ...modelfleet/operator -> python -m modelfleet.operator

Any other image without a command cannot run locally (the pod reports it and retries).
The process environment holds only what the pod defines plus PATH (this Python's bin folder first),
HOME, HOSTNAME, LANG, PYTHONUNBUFFERED, TMPDIR, and PYTHONPATH/VIRTUAL_ENV passed through.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelfleet.local.apitypes import JSON
from modelfleet.local.volumes import Lookup

IMAGE_ENTRYPOINTS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("modelfleet-server", "modelfleet/server"), ("python", "-m", "modelfleet.server")),
    (("modelfleet-operator", "modelfleet/operator"), ("python", "-m", "modelfleet.operator")),
)
_PASS_THROUGH = ("PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH")
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ContainerConfigError(Exception):
    """The container cannot be started as configured (missing key, unknown image): the pod waits."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ProcessSpec:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: unknown references stay as written; `$$` is a literal `$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return variables.get(match.group(1), match.group(0))

    return _VAR.sub(replace, text)


def image_entrypoint(image: str) -> tuple[str, ...] | None:
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: len(repository) - len(last)] + last.split(":", 1)[0]
    for suffixes, argv in IMAGE_ENTRYPOINTS:
        if any(
            repository == suffix or repository.endswith("/" + suffix) or repository.endswith(suffix)
            for suffix in suffixes
        ):
            return argv
    return None


class PathMapper:
    """mountPath prefixes -> folders on this machine (see the module docstring)."""

    def __init__(self, mounts: list[tuple[str, Path]]) -> None:
        self._mounts = sorted(
            ((mount.rstrip("/") or "/", path) for mount, path in mounts), key=lambda item: len(item[0]), reverse=True
        )

    def _path(self, value: str) -> str | None:
        for mount, path in self._mounts:
            if value == mount or value.startswith(mount + "/"):
                return str(path) + value[len(mount) :]
        return None

    def rewrite(self, value: str) -> str:
        mapped = self._path(value)
        if mapped is not None:
            return mapped
        if value.startswith("-") and "=" in value:
            flag, rest = value.split("=", 1)
            mapped = self._path(rest)
            if mapped is not None:
                return f"{flag}={mapped}"
        return value

    def mapped(self, mount_path: str) -> Path | None:
        found = self._path(mount_path)
        return None if found is None else Path(found)


def field_value(pod: JSON, path: str, *, pod_ip: str, host_ip: str) -> str:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    match = re.match(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ContainerConfigError("CreateContainerConfigError", f"unsupported fieldRef {path!r}")


def _key_ref(kind: str, ref: JSON, namespace: str, lookup: Lookup) -> str | None:
    obj = lookup("secrets" if kind == "secret" else "configmaps", namespace, ref.get("name", ""))
    if obj is None:
        if ref.get("optional"):
            return None
        raise ContainerConfigError("CreateContainerConfigError", f'{kind} "{ref.get("name")}" not found')
    if kind == "secret":
        data = obj.get("data") or {}
        value = data.get(ref["key"])
        decoded = None if value is None else base64.b64decode(value).decode("utf-8", "replace")
    else:
        decoded = (obj.get("data") or {}).get(ref["key"])
    if decoded is None and not ref.get("optional"):
        raise ContainerConfigError(
            "CreateContainerConfigError", f"couldn't find key {ref['key']} in {kind} {namespace}/{ref.get('name')}"
        )
    return decoded


def container_env(pod: JSON, container: JSON, *, pod_ip: str, host_ip: str, lookup: Lookup) -> dict[str, str]:
    """The variables the pod defines for this container, in Kubernetes' order and precedence."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind in ("configMapRef", "secretRef"):
            ref = source.get(kind)
            if ref is None:
                continue
            obj = lookup("configmaps" if kind == "configMapRef" else "secrets", namespace, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError("CreateContainerConfigError", f'{kind} "{ref.get("name")}" not found')
            for key, raw in (obj.get("data") or {}).items():
                env[prefix + key] = (
                    base64.b64decode(raw).decode("utf-8", "replace") if kind == "secretRef" else str(raw)
                )
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            value: str | None = field_value(pod, source["fieldRef"]["fieldPath"], pod_ip=pod_ip, host_ip=host_ip)
        elif "secretKeyRef" in source:
            value = _key_ref("secret", source["secretKeyRef"], namespace, lookup)
        elif "configMapKeyRef" in source:
            value = _key_ref("configMap", source["configMapKeyRef"], namespace, lookup)
        elif "resourceFieldRef" in source:
            resource = source["resourceFieldRef"]["resource"]
            section, _, key = resource.partition(".")
            value = str(((container.get("resources") or {}).get(section) or {}).get(key, "0"))
        else:
            value = None
        if value is not None:
            env[name] = value
    return env


def build(
    pod: JSON, container: JSON, *, volumes: Mapping[str, Path], pod_dir: Path, pod_ip: str, host_ip: str, lookup: Lookup
) -> ProcessSpec:
    """The process for one container start (see the module docstring)."""
    mounts = []
    for mount in container.get("volumeMounts") or []:
        folder = volumes.get(mount["name"])
        if folder is None:
            raise ContainerConfigError("CreateContainerConfigError", f'volume "{mount["name"]}" is not defined')
        mounts.append((mount["mountPath"], folder / mount["subPath"] if mount.get("subPath") else folder))
    mapper = PathMapper(mounts)
    defined = container_env(pod, container, pod_ip=pod_ip, host_ip=host_ip, lookup=lookup)
    home = pod_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    tmp = mapper.mapped("/tmp") or pod_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {key: os.environ[key] for key in _PASS_THROUGH if key in os.environ}
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]),
        HOME=str(home),
        HOSTNAME=pod["metadata"]["name"],
        LANG="C.UTF-8",
        PYTHONUNBUFFERED="1",
        TMPDIR=str(tmp),
    )
    env.update({key: mapper.rewrite(value) for key, value in defined.items()})
    command = [expand(word, defined) for word in container.get("command") or []]
    args = [expand(word, defined) for word in container.get("args") or []]
    if not command:
        entrypoint = image_entrypoint(str(container.get("image", "")))
        if entrypoint is None:
            raise ContainerConfigError(
                "ErrImageNeverPull",
                f'image "{container.get("image")}" has no local entrypoint: give the '
                "container a command (see modelfleet.local.containers.IMAGE_ENTRYPOINTS)",
            )
        command = list(entrypoint)
    argv = [mapper.rewrite(word) for word in command + args]
    executable = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env["PATH"])
    if executable is None or not os.access(executable, os.X_OK):
        raise ContainerConfigError("StartError", f'exec: "{argv[0]}": executable file not found in $PATH')
    working = container.get("workingDir")
    cwd = Path(mapper.rewrite(working)) if working else pod_dir / "rootfs"
    cwd.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(argv=(executable, *argv[1:]), env=env, cwd=cwd)
