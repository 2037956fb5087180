"""Pod volumes as folders on this machine, ConfigMaps and Secrets in Kubernetes' `..data` layout.

The kubelet (kubelet.py) calls materialize() before starting a pod's containers and refresh() when a
ConfigMap or Secret changes. Like the real kubelet's AtomicWriter, a ConfigMap/Secret/projected volume
is a folder holding `..<timestamp>/` with the files, a `..data` symlink to it, and one symlink per
top-level name into `..data/`; an update writes a new timestamped folder and swaps `..data` with one
rename, so a reader never sees a half-written set (servers that watch token files rely on this).
Volume kinds: configMap, secret, projected (configMap/secret/downwardAPI sources), downwardAPI,
emptyDir (a per-pod folder), hostPath (the path itself: this machine is the node), and
persistentVolumeClaim (`<state>/persistentvolumes/<namespace>/<claimName>`, shared by every pod).
Must not start processes.
"""

from __future__ import annotations

import base64
import datetime
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelfleet.local.apitypes import JSON

Lookup = Callable[[str, str, str], JSON | None]  # (plural, namespace, name) -> object or None


class VolumeError(Exception):
    """A volume cannot be set up yet (missing ConfigMap/Secret/claim): the pod waits (FailedMount)."""


@dataclass(frozen=True)
class Payload:
    """Files of one atomic volume: relative path -> (bytes, mode)."""

    files: Mapping[str, tuple[bytes, int]]


def _items(data: Mapping[str, bytes], source: JSON, *, what: str) -> dict[str, tuple[bytes, int]]:
    default_mode = int(source.get("defaultMode", 0o644))
    items = source.get("items")
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f'{what}: key "{item["key"]}" not found')
        files[item["path"]] = (data[item["key"]], int(item.get("mode", default_mode)))
    return files


def _configmap_data(obj: JSON) -> dict[str, bytes]:
    data = {key: str(value).encode() for key, value in (obj.get("data") or {}).items()}
    data.update({key: base64.b64decode(value) for key, value in (obj.get("binaryData") or {}).items()})
    return data


def _secret_data(obj: JSON) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}


def _field(pod: JSON, path: str) -> str:
    if path.startswith("metadata.labels[") or path.startswith("metadata.annotations["):
        field, key = path[len("metadata.") :].split("[", 1)
        return str((pod["metadata"].get(field) or {}).get(key.strip("]'\""), ""))
    current: Any = pod
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    if isinstance(current, dict):
        return "\n".join(f'{k}="{v}"' for k, v in sorted(current.items()))
    return "" if current is None else str(current)


def payload_of(pod: JSON, volume: JSON, lookup: Lookup) -> Payload | None:
    """The files of an atomic volume (None for folder volumes: emptyDir, hostPath, claims)."""
    namespace = pod["metadata"]["namespace"]
    if "configMap" in volume or "secret" in volume:
        volume = {
            "projected": {
                "defaultMode": (volume.get("configMap") or volume.get("secret") or {}).get("defaultMode", 0o644),
                "sources": [volume],
            }
        }
    if "downwardAPI" in volume:
        volume = {
            "projected": {
                "defaultMode": volume["downwardAPI"].get("defaultMode", 0o644),
                "sources": [{"downwardAPI": volume["downwardAPI"]}],
            }
        }
    if "projected" not in volume:
        return None
    projected = volume["projected"] or {}
    files: dict[str, tuple[bytes, int]] = {}
    for source in projected.get("sources") or []:
        if "configMap" in source or "secret" in source:
            kind = "configMap" if "configMap" in source else "secret"
            spec = dict(source[kind])
            spec.setdefault("defaultMode", projected.get("defaultMode", 0o644))
            name = spec.get("name") or spec.get("secretName", "")
            obj = lookup("configmaps" if kind == "configMap" else "secrets", namespace, name)
            if obj is None:
                if spec.get("optional"):
                    continue
                raise VolumeError(f'{kind} "{name}" not found')
            data = _configmap_data(obj) if kind == "configMap" else _secret_data(obj)
            files.update(_items(data, spec, what=f'{kind} "{name}"'))
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                value = _field(pod, (item.get("fieldRef") or {}).get("fieldPath", ""))
                files[item["path"]] = (value.encode(), int(item.get("mode", projected.get("defaultMode", 0o644))))
    return Payload(files)


class AtomicVolume:
    """Writes payloads into a folder the way the kubelet's AtomicWriter does (see module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._current: Mapping[str, tuple[bytes, int]] | None = None

    def write(self, payload: Payload) -> bool:
        """Write if the files differ from the last write; True when something changed."""
        if self._current == payload.files:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
        target = self.folder / stamp
        target.mkdir()
        for relative, (content, mode) in payload.files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(mode & 0o777)
        data = self.folder / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        temporary = self.folder / "..data_tmp"
        if temporary.is_symlink():
            temporary.unlink()
        temporary.symlink_to(stamp)
        temporary.rename(data)  # the atomic swap readers rely on
        top = {relative.split("/", 1)[0] for relative in payload.files}
        for name in top:
            link = self.folder / name
            if not link.is_symlink():
                link.symlink_to(f"..data/{name}")
        for entry in self.folder.iterdir():
            if not entry.name.startswith("..") and entry.name not in top and entry.is_symlink():
                entry.unlink()
        if old and old != stamp:
            shutil.rmtree(self.folder / old, ignore_errors=True)
        self._current = dict(payload.files)
        return True


def folder_volume(volume: JSON, *, pod_dir: Path, state_dir: Path, namespace: str, lookup: Lookup) -> Path | None:
    """The host folder of a folder volume (emptyDir, hostPath, PVC); None for atomic volumes."""
    name = volume["name"]
    path: Path
    if "emptyDir" in volume:
        path = pod_dir / "volumes" / name
    elif "hostPath" in volume:
        path = Path(volume["hostPath"]["path"])
        kind = volume["hostPath"].get("type", "")
        if kind in ("", "DirectoryOrCreate"):
            path.mkdir(parents=True, exist_ok=True)  # the container runtime creates it, as in a cluster
        elif kind == "FileOrCreate":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        elif not path.exists():
            raise VolumeError(f"hostPath type check failed: {path} is not a {kind}")
        return path
    elif "persistentVolumeClaim" in volume:
        claim = volume["persistentVolumeClaim"]["claimName"]
        if lookup("persistentvolumeclaims", namespace, claim) is None:
            raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
        path = state_dir / "persistentvolumes" / namespace / claim
    else:
        return None
    path.mkdir(parents=True, exist_ok=True)
    return path


class PodVolumes:
    """All volumes of one pod: their host folders, refreshed on ConfigMap/Secret changes."""

    def __init__(self, pod: JSON, *, pod_dir: Path, state_dir: Path) -> None:
        self.pod = pod
        self.pod_dir = pod_dir
        self.state_dir = state_dir
        self.paths: dict[str, Path] = {}
        self._atomic: dict[str, AtomicVolume] = {}

    def materialize(self, lookup: Lookup) -> None:
        """Set up every volume; raises VolumeError when one cannot be set up yet."""
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            try:
                self._materialize(volume, lookup)
            except VolumeError as exc:  # the kubelet's words, which `kubectl describe pod` shows
                raise VolumeError(f'MountVolume.SetUp failed for volume "{volume["name"]}" : {exc}') from None

    def _materialize(self, volume: JSON, lookup: Lookup) -> None:
        folder = folder_volume(
            volume,
            pod_dir=self.pod_dir,
            state_dir=self.state_dir,
            namespace=self.pod["metadata"]["namespace"],
            lookup=lookup,
        )
        if folder is not None:
            self.paths[volume["name"]] = folder
            return
        payload = payload_of(self.pod, volume, lookup)
        if payload is None:
            return  # an unsupported volume kind: nothing to mount (documented)
        writer = self._atomic.setdefault(volume["name"], AtomicVolume(self.pod_dir / "volumes" / volume["name"]))
        writer.write(payload)
        self.paths[volume["name"]] = writer.folder

    def refresh(self, lookup: Lookup) -> bool:
        """Rewrite ConfigMap/Secret volumes whose data changed; True when any did."""
        changed = False
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            writer = self._atomic.get(volume["name"])
            if writer is None:
                continue
            try:
                payload = payload_of(self.pod, volume, lookup)
            except VolumeError:
                continue  # the kubelet keeps the last files when the source disappears
            if payload is not None:
                changed = writer.write(payload) or changed
        return changed
