"""The one Dockerfile is hadolint-clean and keeps the image rules the packaging promises.

Building and running the images needs buildah and root (scripts/build-images.sh does that, in CI);
this checks the file itself: both targets, a digest-pinned overridable base, a non-root numeric
USER and exec-form ENTRYPOINT in each final stage, torch only in the server, offline installs from
the wheelhouse, and a build context that holds nothing but the wheelhouse.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
FINAL_STAGES = ("server", "operator", "server-torchvision")


def _stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current = "<global>"
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(2)
        stages.setdefault(current, []).append(line)
    return stages


def _instruction(stage: list[str], keyword: str) -> list[str]:
    return [line[len(keyword) :].strip() for line in stage if line.upper().startswith(keyword + " ")]


def test_hadolint_finds_nothing(hadolint_binary: str) -> None:
    result = subprocess.run(
        [hadolint_binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ignored_hadolint_rules_carry_a_reason() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        if "hadolint ignore" in line:
            assert re.search(r"ignore=\S+\s+\S", line), f"ignore without a reason: {line}"


def test_base_image_is_pinned_by_digest_and_overridable() -> None:
    (base,) = _instruction(_stages()["<global>"], "ARG")
    name, _, default = base.partition("=")
    assert name == "BASE_IMAGE"
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", default), default
    earlier: list[str] = []  # a stage may build on one defined above it, which is pinned in turn
    for stage, lines in _stages().items():
        if stage != "<global>":
            parent = re.fullmatch(r"FROM (\S+) AS \S+", lines[0])
            assert parent and parent.group(1) in ("${BASE_IMAGE}", *earlier), f"{stage}: {lines[0]}"
            earlier.append(stage)


def test_final_stages_run_as_a_numeric_non_root_user_through_an_exec_form_entrypoint() -> None:
    stages = _stages()
    for target in FINAL_STAGES:
        (user,) = _instruction(stages[target], "USER")
        uid = user.split(":")[0]
        assert uid.isdigit() and int(uid) != 0, f"{target}: USER {user}"
        (entrypoint,) = _instruction(stages[target], "ENTRYPOINT")
        argv = json.loads(entrypoint)  # exec form is a JSON array; shell form would not parse
        assert isinstance(argv, list) and argv[0].startswith("/")
        # Only what runs: the venv is copied from its build stage, nothing is installed here.
        assert not _instruction(stages[target], "RUN"), f"{target} runs commands in its final stage"
        assert _instruction(stages[target], "COPY") == [f"--from={target}-build /opt/venv /opt/venv"]


def test_only_the_server_gets_torch_and_every_install_is_offline_from_the_wheelhouse() -> None:
    stages = _stages()
    server_build = " ".join(stages["server-build"])
    operator_build = " ".join(stages["operator-build"])
    assert "torch==" in server_build and "torch" not in operator_build
    for build in (server_build, operator_build):
        installs = re.findall(r"pip install ([^&;]*)", build)
        assert installs
        for args in installs:
            # The only networked install is the CUDA torch build, chosen by TORCH_INDEX_URL.
            assert "--no-index --find-links /wheels" in args or '--index-url "$TORCH_INDEX_URL"' in args, args
        assert "pip uninstall --yes pip" in build, "pip must not reach the final image"


def test_build_context_is_only_the_wheelhouse() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines == ["*", "!.image-build/wheels/"]
