"""What the converter refuses or fails on: a clear reason on the terminal, a non-zero exit, nothing written."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelfleet.convert.__main__ import main


def test_a_converted_model_that_differs_from_the_eager_one_fails_with_the_difference(
    zoo: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = zoo("branchy")
    output = tmp_path / "branchy.mar"
    status = main([str(original.mar), "-o", str(output), "--method", "trace", "--example-shape", "4"])
    report = capsys.readouterr().out
    assert status == 1
    assert "not taken   TorchScript (trace): batch 3: output output: max |eager - converted| = " in report
    assert "beyond atol 0.0001 / rtol 0.0001" in report and "FAILED" in report
    assert not output.exists()


def test_auto_mode_moves_past_a_method_whose_output_differs(
    zoo: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = zoo("branchy")
    assert main([str(original.mar), "-o", str(tmp_path / "b.mar"), "--example-shape", "4"]) == 0
    # torch.export refuses to specialise the dynamic batch on the branch; scripting keeps both branches.
    report = capsys.readouterr().out
    assert "not taken   torch.export: " in report
    assert "PATH TAKEN  TorchScript (script)" in report


def test_a_model_the_server_would_refuse_fails_here_with_the_servers_reason(
    zoo: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = zoo("printing")
    output = tmp_path / "printing.mar"
    status = main([str(original.mar), "-o", str(output), "--method", "script", "--example-shape", "4"])
    report = capsys.readouterr().out
    assert status == 1
    assert "not taken   TorchScript (script): ModelFleet's loader refuses it: " in report
    assert "prim::Print" in report
    assert not output.exists()


def test_an_archive_without_model_code_is_refused_with_how_to_supply_it(
    zoo: Callable[..., Any], tmp_path: Path
) -> None:
    original = zoo("hf", with_model_file=False)
    script = Path(sys.executable).parent / "modelfleet-convert"
    done = subprocess.run(
        [str(script), str(original.mar), "-o", str(tmp_path / "x.mar")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "names no modelFile" in done.stderr and "--model-file" in done.stderr
    assert not (tmp_path / "x.mar").exists()


def test_an_existing_output_is_kept_unless_force_is_given(
    zoo: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = zoo("text")
    output = tmp_path / "text.mar"
    output.write_bytes(b"precious")
    assert main([str(original.mar), "-o", str(output)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert main([str(original.mar), "-o", str(output), "--force"]) == 0
    assert output.read_bytes()[:2] == b"PK"
