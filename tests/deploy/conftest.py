"""Fixtures for the packaging tests: the real helm/kubectl/hadolint binaries, chart rendering, the CRD.

The binaries come from scripts/install-k8s-tools.sh (.tools/bin) or the venv, never from PATH
(mf_tools); a missing one fails the test with the command that installs it (CI installs them, so
nothing is skipped silently).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mf_tools import tool_path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelfleet"
CRD_SOURCE = ROOT / "operator" / "crds" / "modeldeployments.modelfleet.io.yaml"
EXAMPLES = ROOT / "examples"
MANIFESTS = ROOT / "manifests"
# Oldest and newest Kubernetes versions we support (README, Chart.yaml kubeVersion, CI).
K8S_VERSIONS = ("1.31.0", "1.37.0")


def tool(name: str) -> str:
    """.tools/bin first (kubectl there is 1.37; /usr/bin may hold an older one), then the venv."""
    try:
        return tool_path(name)
    except FileNotFoundError as missing:
        pytest.fail(str(missing))


def tool_env(tmp_home: Path) -> dict[str, str]:
    """helm and kubectl keep caches and config under $HOME: give them a scratch one."""
    return {**os.environ, "HOME": str(tmp_home), "KUBECONFIG": str(tmp_home / "kubeconfig")}


@pytest.fixture(scope="session")
def tools_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def helm_binary() -> str:
    return tool("helm")


@pytest.fixture(scope="session")
def hadolint_binary() -> str:
    return tool("hadolint")


@pytest.fixture(scope="session")
def kubectl_binary() -> str:
    return tool("kubectl")


@pytest.fixture(scope="session")
def helm(tools_home: Path, helm_binary: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run helm with the given arguments; returns the finished process (check it yourself)."""
    binary = helm_binary

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, *args], capture_output=True, text=True, env=tool_env(tools_home), timeout=60)

    return run


@pytest.fixture(scope="session")
def render(helm: Callable[..., subprocess.CompletedProcess[str]]) -> Callable[..., list[dict[str, Any]]]:
    """`helm template` of the chart → its objects; extra args such as "--set", "k=v"; fails on error."""

    def run(*args: str, namespace: str = "modelfleet-system") -> list[dict[str, Any]]:
        result = helm("template", "modelfleet", str(CHART), "--namespace", namespace, *args)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return run


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking `k8s_version` runs once per supported Kubernetes version."""
    if "k8s_version" in metafunc.fixturenames:
        metafunc.parametrize("k8s_version", K8S_VERSIONS)


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_SOURCE.read_text())
    return loaded


def strict_crd_schema(schema: Any) -> Any:
    """The CRD's openAPIV3Schema as JSON Schema that also rejects unknown fields.

    The API server prunes unknown fields of a structural schema, and kubectl (field validation
    Strict, the default since 1.27) turns them into errors, so a typo in an example must fail here
    too. Objects marked x-kubernetes-preserve-unknown-fields or with free-form additionalProperties
    (maps such as nodeSelector, resources.limits) stay open.
    """
    if isinstance(schema, list):
        return [strict_crd_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_crd_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="session")
def cr_validator(crd: dict[str, Any]) -> Any:
    import jsonschema

    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    schema = strict_crd_schema(version["schema"]["openAPIV3Schema"])
    # ObjectMeta is only `type: object` in a CRD; Kubernetes checks it separately.
    return jsonschema.Draft7Validator(schema)


# The README's "Run it on Kubernetes" part: every command block in it carries an HTML comment
# naming who runs it (`helm`, `kubectl`: test_install_docs_commands.py; `fleet`:
# test_readme_fleet_commands.py; `ci`: .ci/run). Blocks outside the markers are not tested here.
README = ROOT / "README.md"
CLUSTER_DOCS = re.compile(r"<!-- cluster-docs:begin -->\n(?P<part>.*)<!-- cluster-docs:end -->", re.S)
BLOCK = re.compile(r"(?:<!-- test: (?P<tags>[\w ]+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)
SHELL_LANGS = ("bash", "sh", "shell", "console")


@dataclass(frozen=True)
class DocBlock:
    tags: frozenset[str]
    lang: str
    body: str

    @property
    def file_name(self) -> str | None:
        """A yaml/python block whose first line is `# <file name>` defines that file."""
        first = self.body.partition("\n")[0]
        if self.lang in ("yaml", "python") and first.startswith("# ") and " " not in first[2:].strip():
            return first[2:].strip()
        return None


def cluster_docs_part() -> str:
    found = CLUSTER_DOCS.findall(README.read_text())
    assert len(found) == 1, "README.md must hold exactly one <!-- cluster-docs:begin/end --> part"
    return str(found[0])


def cluster_doc_blocks() -> list[DocBlock]:
    return [
        DocBlock(frozenset((m["tags"] or "").split()), m["lang"], m["body"])
        for m in BLOCK.finditer(cluster_docs_part())
    ]


def run_doc_block(
    block: DocBlock, *, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a block verbatim with bash -euo pipefail; fail the test (with its output) unless it exits 0."""
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.body],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{block.body}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    return result


@pytest.fixture
def doc_blocks() -> list[DocBlock]:
    """The command and file blocks of README.md's "Run it on Kubernetes" part, in page order."""
    return cluster_doc_blocks()


@pytest.fixture
def run_block() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_doc_block


@pytest.fixture
def doc_bin(tmp_path: Path) -> Path:
    """A folder for PATH, empty: tests put stand-ins there only for what the local API cannot be
    (helm's release storage); kubectl is never wrapped (see doc_path)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    return folder


@pytest.fixture
def doc_path(doc_bin: Path, kubectl_binary: str) -> str:
    """PATH for the README's commands: stand-ins, then the real kubectl's folder (.tools/bin), the venv."""
    return os.pathsep.join(
        [str(doc_bin), str(Path(kubectl_binary).parent), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    )
