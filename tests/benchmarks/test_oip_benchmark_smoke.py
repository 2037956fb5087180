"""Smoke of the OIP benchmark (benchmarks/oip.py): the one command runs and prints its side-by-side table.

ModelFleet (over OIP and over its Predictions JSON API) and the OIP echo run everywhere with a tiny
window. MLServer and KServe run from their own venvs (benchmarks/setup-competitors.sh), which CI
does not make: that test is skipped, saying so, when they are absent. Also checks that the load
generator really checks OIP replies: a reply of the wrong shape is counted as an error.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mf_net import free_port
from mf_polling import eventually_sync

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
VENVS = {
    "mlserver": REPO / ".venv-bench-mlserver" / "bin" / "mlserver",
    "kserve": REPO / ".venv-bench-kserve" / "bin" / "python",
}
TIMEOUT_S = 150


def run_oip(tmp_path: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    """Run the one command with a tiny window; its stdout and the JSON it saved (exit 0 asserted)."""
    results = tmp_path / "results.json"
    command = [
        sys.executable, str(BENCH / "oip.py"), "--runs", "1", "--duration", "0.3", "--warmup", "0.2",
        "--start-warmup", "0.2", "--workdir", str(tmp_path / "work"), "--json-out", str(results), *extra,
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) as bench:
        try:
            stdout, stderr = bench.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            bench.terminate()  # SIGTERM: the benchmark stops its servers before it exits
            stdout, stderr = bench.communicate(timeout=60)
            pytest.fail(f"OIP benchmark smoke ran past {TIMEOUT_S} s\n{stderr[-3000:]}")
    assert bench.returncode == 0, stdout + stderr[-3000:]
    return stdout, json.loads(results.read_text())


def table_rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model "))
    end = lines.index("", start)
    return [line.split() for line in lines[start + 2 : end]]


def assert_clean_points(data: dict[str, Any], systems: set[str]) -> None:
    assert {p["system"] for p in data["points"]} == systems
    for point in data["points"]:
        assert "failed" not in point, point
        assert point["errors"] == 0 and point["ok"] > 0, point
        assert point["server_cpu_ms_per_req"] > 0 and point["server_rss_bytes"] > 0, point


@pytest.mark.slow
def test_modelfleet_over_oip_and_json_and_the_echo_floor_side_by_side(tmp_path: Path) -> None:
    stdout, data = run_oip(tmp_path, "--systems", "modelfleet,echo", "--concurrency", "1,8")
    header = next(line for line in stdout.splitlines() if line.startswith("model "))
    assert "req/s" in header and "p99 ms" in header and "srv CPU ms/req" in header and "other cores" in header
    rows = table_rows(stdout)
    # 2 models x 2 concurrencies x 3 rows (ModelFleet OIP, ModelFleet JSON, echo).
    assert len(rows) == 12, stdout
    assert sum(1 for row in rows if row[3:5] == ["JSON", "b32/5ms"]) == 4, stdout
    assert "Ratios (ModelFleet OIP" in stdout and "ModelFleet JSON (same process)" in stdout
    assert "c=1 p50 mlp: OIP raw ≤ 1.0× ModelFleet's JSON path" in stdout
    assert_clean_points(data, {"modelfleet", "modelfleet-json", "echo"})
    assert {p["protocol"] for p in data["points"] if p["system"] == "modelfleet"} == {"oip"}
    assert {p["protocol"] for p in data["points"] if p["system"] == "modelfleet-json"} == {"predictions"}
    if data["pinning"]:  # 2+ CPUs: the server's whole tree runs on the server CPUs only
        server = ",".join(map(str, data["pinning"]["server"]))
        assert all(r["affinity"] == [server] for r in data["lifecycle"]), data["lifecycle"]


@pytest.mark.slow
def test_mlserver_and_kserve_run_beside_modelfleet_when_their_venvs_exist(tmp_path: Path) -> None:
    missing = [str(path.relative_to(REPO)) for path in VENVS.values() if not path.exists()]
    if missing:
        pytest.skip(
            f"competitor venvs absent ({', '.join(missing)}); make them with bash benchmarks/setup-competitors.sh"
        )
    stdout, data = run_oip(tmp_path, "--models", "tiny,mlp", "--concurrency", "8", "--no-json")
    labels = {row[2] for row in table_rows(stdout)}
    assert {"ModelFleet", "MLServer", "KServe", "grpc.aio"} <= labels, stdout
    assert_clean_points(data, {"modelfleet", "mlserver", "kserve", "echo"})
    assert "[n/a ]" not in stdout.split("Targets (OIP issue)")[1].split("JSON path")[0], stdout


def test_oip_load_generator_counts_wrong_replies_as_errors(tmp_path: Path) -> None:
    # The OIP echo answers the input (16 floats for tiny); checked as tiny's 4 outputs, every reply is wrong.
    sys.path.insert(0, str(BENCH))
    try:
        import payloads
    finally:
        sys.path.remove(str(BENCH))
    model = payloads.write_models(tmp_path)["tiny"]
    pool = payloads.write_pool(model, "tiny", tmp_path / "pool.json", size=8)
    address = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "oip_echo_server.py"), "--address", address], start_new_session=True
    )
    try:
        host, port = address.rsplit(":", 1)

        def accepts() -> bool:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return True
            except OSError:
                return False

        eventually_sync(accepts, timeout=30, what=f"{address} to accept connections")
        done = subprocess.run(
            [
                sys.executable,
                str(BENCH / "loadgen.py"),
                "--protocol",
                "oip",
                "--target",
                address,
                "--model",
                "tiny",
                "--pool",
                str(pool),
                "--concurrency",
                "2",
                "--warmup",
                "0",
                "--duration",
                "0.2",
                "--check",
                "exact",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["calls"] > 0 and result["errors"] == result["calls"] and result["ok"] == 0
    assert "want FP32 [1, 4]" in result["error_samples"][0]
