"""scripts/setup.sh's torch choice, read from its dry run (downloading torch here would take GBs).

By default torch comes alone from the PyTorch CPU wheel index, with a fallback to the pip
configuration's index when that index does not answer (decided within 10 s); the CUDA build only
when asked. The dry run runs in a copy of the script, so a test can see that it installs nothing;
the CPU index's probe only ever meets loopback (a proxy that refuses, a server that never answers,
one that does), so no test reaches the network.
"""

from __future__ import annotations

import http.server
import os
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH = "torch==2.13.0"


@dataclass(frozen=True)
class Command:
    argv: list[str]
    comment: str


@dataclass(frozen=True)
class DryRun:
    returncode: int
    out: str
    seconds: float

    @property
    def commands(self) -> list[Command]:
        """The `+ ` lines: what setup would run, each with its trailing `# comment`."""
        found = []
        for line in self.out.splitlines():
            if line.startswith("+ "):
                body, _, comment = line[2:].partition("   # ")
                found.append(Command(shlex.split(body), comment))
        return found

    @property
    def torch_commands(self) -> list[Command]:
        """The commands that install torch itself (alone: --no-deps)."""
        return [c for c in self.commands if TORCH in c.argv and "--no-deps" in c.argv]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A folder holding only scripts/setup.sh, so anything the dry run created would show."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    return tmp_path


def _refusing_proxy() -> str:
    """A loopback address nothing listens on: the probe through it fails at once, offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def dry_run(checkout: Path, *args: str, env: dict[str, str] | None = None, proxy: bool = True) -> DryRun:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELFLEET_TORCH", "MODELFLEET_SETUP")) and not k.lower().endswith("_proxy")
    }
    if proxy:
        base.update(https_proxy=_refusing_proxy(), HTTPS_PROXY=_refusing_proxy())
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(checkout / "scripts" / "setup.sh"), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return DryRun(result.returncode, result.stdout + result.stderr, time.monotonic() - started)


def test_by_default_torch_comes_alone_from_the_cpu_index_with_a_fallback(checkout: Path) -> None:
    run = dry_run(checkout, "--dry-run")
    assert run.returncode == 0, run.out
    first, fallback = run.torch_commands
    assert first.argv[-1] == TORCH and first.argv[first.argv.index("--index-url") + 1] == CPU_INDEX, run.out
    assert "fallback" in fallback.comment and fallback.argv[-1] == TORCH, run.out
    assert not any(flag in fallback.argv for flag in ("--index-url", "--extra-index-url")), run.out
    # Everything else (torch's dependencies included) comes from the pip configuration's index.
    others = [c for c in run.commands if c not in (first, fallback)]
    assert [c for c in others if TORCH in c.argv] and not any(CPU_INDEX in " ".join(c.argv) for c in others), run.out
    assert "installing torch 2.13.0 (cpu build)" in run.out
    assert sorted(p.name for p in checkout.iterdir()) == ["scripts"], "a dry run must create nothing"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--dry-run", "--torch", "cuda"], {}),
        (["--torch=cuda", "--dry-run"], {}),
        ([], {"MODELFLEET_TORCH": "cuda", "MODELFLEET_SETUP_DRY_RUN": "1"}),
    ],
)
def test_the_cuda_build_only_when_asked(checkout: Path, args: list[str], env: dict[str, str]) -> None:
    run = dry_run(checkout, *args, env=env)
    assert run.returncode == 0, run.out
    (torch,) = run.torch_commands
    assert torch.argv[-1] == TORCH and "--index-url" not in torch.argv, run.out
    assert CPU_INDEX not in run.out and "installing torch 2.13.0 (cuda build)" in run.out
    assert not (checkout / ".venv").exists()


def test_an_unknown_build_is_refused(checkout: Path) -> None:
    run = dry_run(checkout, "--dry-run", "--torch", "rocm")
    assert run.returncode == 2 and "must be cpu or cuda, not 'rocm'" in run.out
    assert run.commands == []


@pytest.fixture
def silent_index() -> Iterator[str]:
    """An index that accepts the connection and never answers (a black-holed proxy, a stalled mirror)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/whl/cpu"


def test_a_silent_cpu_index_fails_over_to_the_pip_configuration_within_10_seconds(
    checkout: Path, silent_index: str
) -> None:
    run = dry_run(checkout, "--dry-run", env={"MODELFLEET_TORCH_CPU_INDEX": silent_index}, proxy=False)
    assert run.returncode == 0, run.out
    assert f"{silent_index} did not answer" in run.out and "would run the fallback command" in run.out, run.out
    assert run.seconds < 10, f"fail-over took {run.seconds:.1f} s"


@pytest.fixture
def answering_index() -> Iterator[str]:
    """An index whose torch page answers 200, as the PyTorch CPU index does."""

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/whl/cpu/torch/" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_an_answering_cpu_index_is_used(checkout: Path, answering_index: str) -> None:
    run = dry_run(checkout, "--dry-run", env={"MODELFLEET_TORCH_CPU_INDEX": answering_index}, proxy=False)
    assert run.returncode == 0, run.out
    first, _ = run.torch_commands
    assert first.argv[first.argv.index("--index-url") + 1] == answering_index.rstrip("/"), run.out
    assert "would run the cpu-index command" in run.out, run.out
