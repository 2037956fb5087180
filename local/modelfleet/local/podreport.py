"""What failed, in words: the pods that are not Ready, their container states and log tails.

Called when the local fleet gives up (demo.py) and by test harnesses when a wait times out, because
the cause of a pod that never gets Ready (a port in use, a bad flag, a missing file) is in the pod's
own log, not the operator's. Reads only: the API objects and the log files the kubelet writes.
"""

from __future__ import annotations

from pathlib import Path

from modelfleet.local import podstatus
from modelfleet.local.apitypes import JSON
from modelfleet.local.kubelet import Kubelet
from modelfleet.local.localclient import LocalClient


def tail(path: Path, lines: int) -> str:
    if not path.is_file():
        return ""
    return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])


def _state(entry: JSON) -> str:
    state = entry.get("state") or {}
    for kind, detail in state.items():
        why = " ".join(str(detail[key]) for key in ("reason", "exitCode", "message") if detail.get(key) is not None)
        return f"{kind} {why}".strip()
    return "unknown"


def describe_pod(pod: JSON, kubelet: Kubelet, *, lines: int = 20) -> str:
    meta, status = pod["metadata"], pod.get("status") or {}
    out = [f"pod {meta['namespace']}/{meta['name']}: {status.get('phase', 'Pending')} at {status.get('podIP', '-')}"]
    worker = kubelet.workers.get(str(meta.get("uid")))
    if worker is not None and worker.mount_error:  # in a cluster: the pod's FailedMount event
        out.append(f"  FailedMount: {worker.mount_error}")
    for entry in status.get("containerStatuses") or []:
        last = (entry.get("lastState") or {}).get("terminated")
        out.append(
            f"  container {entry['name']}: {_state(entry)}; restarts {entry.get('restartCount', 0)}"
            + (f"; last exit {last.get('exitCode')} ({last.get('reason')})" if last else "")
        )
        path = kubelet.log_path(meta["namespace"], meta["name"], entry["name"])
        text = tail(path, lines) if path is not None else ""
        if text:
            out.append(f"  --- last {lines} lines of {path} ---")
            out.extend(f"  | {line}" for line in text.rstrip("\n").splitlines())
    return "\n".join(out)


def failing_pods(client: LocalClient, kubelet: Kubelet, namespace: str | None = None, *, lines: int = 20) -> str:
    """Every pod (of `namespace`, or all) that is not Ready, described with its log tails; "" if none."""
    pods = client.list(client.type("", "pods"), namespace)
    failing = [pod for pod in pods if not podstatus.is_ready(pod)]
    return "\n".join(describe_pod(pod, kubelet, lines=lines) for pod in failing)
