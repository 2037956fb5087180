"""The commands `modelfleet-local` prints for you to paste: they must work as printed.

setup puts kubectl and helm into `<checkout>/.tools/bin` and grpcurl next to this Python (`.venv/bin`),
neither of which is on a fresh shell's PATH. So every printed command names its tool by absolute path,
and one `export` line puts both folders on PATH for the README's commands, which say plain `kubectl`.
A tool that is not installed is named as missing with where setup puts it, never printed as if it ran.
Called by demo.py; reads only the file system.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path


def find_tool(name: str, *, checkout: Path | None) -> Path | None:
    """The absolute path of `name`: next to this Python, in the checkout's .tools/bin, or on PATH."""
    candidates = [Path(sys.executable).parent / name]  # not resolved: .venv/bin/python is a symlink
    if checkout is not None:
        candidates.append(checkout / ".tools" / "bin" / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.absolute()
    found = shutil.which(name)
    return None if found is None else Path(found).absolute()


def tool_folders(*, checkout: Path | None) -> list[Path]:
    folders = [Path(sys.executable).parent.absolute()]
    if checkout is not None and (checkout / ".tools" / "bin").is_dir():
        folders.insert(0, (checkout / ".tools" / "bin").absolute())
    return folders


def _missing(name: str, checkout: Path | None) -> str:
    where = f"{checkout / '.tools' / 'bin'}" if name in ("kubectl", "helm") and checkout else "the venv's bin folder"
    return f"  ({name} is not installed: `bash scripts/setup.sh` puts it into {where})"


def try_lines(
    *, kubeconfig: Path, namespace: str, service: str | None, checkout: Path | None, example: Path | None
) -> list[str]:
    """What to paste next: kubectl and grpcurl by absolute path, then the PATH line for the README."""
    kubectl, grpcurl = find_tool("kubectl", checkout=checkout), find_tool("grpcurl", checkout=checkout)
    lines = ["Try (absolute paths: paste as printed):"]
    if kubectl is None:
        lines.append(_missing("kubectl", checkout))
    else:
        base = f"{shlex.quote(str(kubectl))} --kubeconfig {shlex.quote(str(kubeconfig))}"
        if example is not None:
            lines.append(f"  {base} apply --namespace {namespace} -f {shlex.quote(str(example))}")
        lines.append(f"  {base} get modeldeployments,pods,services --namespace {namespace}")
    if service is not None:
        if grpcurl is None:
            lines.append(_missing("grpcurl", checkout))
        else:
            lines.append(
                f'  {shlex.quote(str(grpcurl))} -plaintext -d \'{{"service": ""}}\' {service} '
                "grpc.health.v1.Health/Check"
            )
    path = ":".join(shlex.quote(str(folder)) for folder in tool_folders(checkout=checkout))
    lines.append("The README's commands (kubectl, grpcurl, python) against this fleet, in this shell:")
    lines.append(f'  export KUBECONFIG={shlex.quote(str(kubeconfig))} PATH={path}:"$PATH"')
    return lines
