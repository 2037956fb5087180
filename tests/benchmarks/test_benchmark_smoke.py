"""Smoke of the serving benchmark (benchmarks/serving.py): the one command runs and prints its table.

A tiny duration on ModelFleet and the bare echo server only: TorchServe is left out here because
its JVM start and warm-up take longer than a test should (run it by hand, see benchmarks/README.md).
Also checks that the load generator really checks replies: wrong answers are counted as errors.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mf_net import free_port
from mf_polling import eventually_sync

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


def wait_listening(address: str, *, timeout_s: float) -> None:
    host, port = address.rsplit(":", 1)

    def accepts() -> bool:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return True
        except OSError:
            return False

    eventually_sync(accepts, timeout=timeout_s, what=f"{address} to accept connections")


@pytest.mark.slow
def test_one_command_prints_the_side_by_side_table_with_no_errors(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    command = [
        sys.executable,
        str(BENCH / "serving.py"),
        "--runs",
        "1",
        "--duration",
        "0.3",
        "--warmup",
        "0.2",
        "--start-warmup",
        "0.2",
        "--systems",
        "modelfleet,echo",
        "--concurrency",
        "1,8",
        "--workdir",
        str(tmp_path / "work"),
        "--json-out",
        str(results),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) as bench:
        try:
            stdout, stderr = bench.communicate(timeout=100)
        except subprocess.TimeoutExpired:
            bench.terminate()  # SIGTERM: the benchmark stops its servers before it exits
            stdout, stderr = bench.communicate(timeout=60)
            pytest.fail(f"benchmark smoke ran past 100 s\n{stderr[-3000:]}")
    assert bench.returncode == 0, stdout + stderr[-3000:]
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("model "))
    assert "req/s" in header and "p99 ms" in header and "srv CPU ms/req" in header and "srv RSS MB" in header
    rows = [line.split() for line in lines if line.split()[:1] in (["tiny"], ["mlp"])]
    # One row per (model, c, system): 2 models x 2 concurrencies x 2 systems.
    assert len(rows) == 8, stdout
    for row in rows:
        assert "failed" not in row and "unavailable" not in row, row
    assert "Targets (issue 6)" in stdout and "Lifecycle" in stdout
    data = json.loads(results.read_text())
    assert {p["system"] for p in data["points"]} == {"modelfleet", "echo"}
    for point in data["points"]:
        assert point["errors"] == 0 and point["ok"] > 0, point
        assert point["server_cpu_ms_per_req"] > 0 and point["server_rss_bytes"] > 0, point
    modelfleet = next(r for r in data["lifecycle"] if r["system"] == "modelfleet")
    assert set(modelfleet["register_s"]) == {"tiny", "mlp"} and modelfleet["scale_up_s"] > 0


def test_load_generator_counts_wrong_replies_as_errors(tmp_path: Path) -> None:
    # The echo server answers zeros; checked against the real model's outputs, every reply is wrong.
    sys.path.insert(0, str(BENCH))
    try:
        import payloads
    finally:
        sys.path.remove(str(BENCH))
    model = payloads.write_models(tmp_path)["tiny"]
    pool = payloads.write_pool(model, "tiny", tmp_path / "pool.json", size=8)
    address = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "echo_server.py"), "--address", address, "--reply", "tiny=4"],
        start_new_session=True,
    )
    try:
        wait_listening(address, timeout_s=30)
        done = subprocess.run(
            [
                sys.executable,
                str(BENCH / "loadgen.py"),
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
            ],
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
    assert "differs from the expected" in result["error_samples"][0]
