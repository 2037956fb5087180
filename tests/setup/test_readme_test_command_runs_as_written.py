"""The README's test command works as typed: CI runs it word for word right after setup, with no
activated venv and no .tools/bin on PATH, and no test looks a program up on PATH (mf_tools instead).

Before this, .ci/run activated the venv and put .tools/bin on PATH, so CI passed while the same
command failed for a user (FileNotFoundError: modelfleet-operator).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
# Programs that live in .venv/bin or .tools/bin, never on a user's PATH by default.
INSTALLED = re.compile(r"(kubectl|helm|grpcurl|hadolint|kubernetes-validate|lint-imports|mypy|modelfleet-[\w-]+)")
SPAWNERS = {"run", "Popen", "check_output", "check_call", "call", "create_subprocess_exec"}


def readme_test_command() -> str:
    quick_start = ROOT.joinpath("README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick_start, re.S)
    assert block, "README's Quick start has a bash block"
    (line,) = [line for line in block.group(1).splitlines() if "pytest" in line]
    return line.split("#", 1)[0].strip()


def test_ci_runs_the_readme_test_command_word_for_word_right_after_setup() -> None:
    command = readme_test_command()
    assert command == ".venv/bin/python -m pytest -q"
    lines = [line.strip() for line in ROOT.joinpath(".ci", "run").read_text().splitlines()]
    steps = [line for line in lines if line and not line.startswith("#")]
    setup = steps.index("bash scripts/setup.sh")
    (test,) = [i for i, line in enumerate(steps) if line == command or line.startswith(command + " ")]
    assert steps[setup + 1 : test] in ([], ["rc=0"]), steps[setup:test]
    for line in steps[:test]:
        assert "activate" not in line and "PATH" not in line, (
            f".ci/run changes the environment before the tests: {line}"
        )


def _spawned_program(call: ast.Call) -> str | None:
    """The program name literally written as a spawn call's first argument (`"x"` or `["x", ...]`)."""
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
    if name not in SPAWNERS or not call.args:
        return None
    first = call.args[0]
    if isinstance(first, ast.List) and first.elts:
        first = first.elts[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def test_no_test_looks_a_program_up_on_path() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if isinstance(node.func, ast.Attribute) and node.func.attr == "which":
                found.append(f"{where}: shutil.which")
            program = _spawned_program(node)
            if program is not None and INSTALLED.fullmatch(program):
                found.append(f"{where}: runs {program!r} from PATH")
    assert found == [], "use mf_tools.tool_path / console_script instead:\n" + "\n".join(found)
