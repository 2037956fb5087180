"""Every command in README.md's "Run it on Kubernetes" part runs, on both install paths, locally.

Each ```bash block between the <!-- cluster-docs:begin/end --> markers carries an HTML comment
naming who runs it: the Helm and kubectl install paths (`helm`, `kubectl`; here, against the
in-memory API), a real local fleet (`fleet`: test_readme_fleet_commands.py) or .ci/run (`ci`). The
Helm path and the kubectl path each run top to bottom, verbatim, through bash, in a scratch folder
holding the repository's chart, manifests and examples plus the files the part defines (```yaml
blocks whose first line is `# <file name>`), with a fresh API each.

`helm install/upgrade/test/uninstall` cannot target the in-memory API (it stores releases as
protobuf Secrets and needs OpenAPI), so a `helm` wrapper on PATH turns them into `helm template`
with the same arguments and applies (or, for uninstall, deletes) the rendered objects with the real
kubectl, as `helm install` would; any other helm command runs the real helm. kubectl is the real
binary (.tools/bin), unwrapped: the local API speaks protobuf, OpenAPI and strict field validation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CLUSTER_DOCS = re.compile(r"<!-- cluster-docs:begin -->\n(?P<part>.*)<!-- cluster-docs:end -->", re.S)
TAGS = {"helm", "kubectl", "fleet", "ci"}
SHELL_LANGS = ("bash", "sh", "shell", "console")

HELM_WRAPPER = r'''#!{python}
"""helm install/upgrade/test/uninstall as helm template + kubectl; anything else: the real helm."""
import json, os, subprocess, sys
import yaml

args = sys.argv[1:]
real, kubectl, state = os.environ["REAL_HELM"], "kubectl", os.environ["HELM_WRAPPER_STATE"]
command = args[0] if args else ""
if command not in ("install", "upgrade", "test", "uninstall"):
    os.execv(real, [real, *args])


def namespace_of(rest):
    for i, a in enumerate(rest):
        if a in ("-n", "--namespace"):
            return rest[i + 1]
        if a.startswith("--namespace="):
            return a.split("=", 1)[1]
    return "default"


def render(release, chart, flags, *extra):
    out = subprocess.run([real, "template", release, chart, *flags, *extra], check=True,
                         capture_output=True, text=True)
    return out.stdout


def kubectl_run(*argv, stdin=None):
    subprocess.run([kubectl, *argv], input=stdin, text=True, check=True)


if command in ("install", "upgrade"):
    release, chart, rest = args[1], args[2], args[3:]
    flags = [a for a in rest if a not in ("--create-namespace", "--wait", "--atomic", "--install")]
    if "--create-namespace" in rest:
        ns = namespace_of(rest)
        if subprocess.run([kubectl, "get", "namespace", ns], capture_output=True).returncode != 0:
            kubectl_run("create", "namespace", ns)
    manifest = render(release, chart, flags, "--skip-tests")
    kubectl_run("apply", "-f", "-", stdin=manifest)
    with open(state, "w") as f:
        json.dump({"release": release, "chart": chart, "flags": flags}, f)
elif command == "test":
    with open(state) as f:
        saved = json.load(f)
    saved_args = (saved["release"], saved["chart"], saved["flags"])
    hook = render(*saved_args, "--show-only", "templates/tests/test-grpc-health.yaml")
    kubectl_run("apply", "-f", "-", stdin=hook)
elif command == "uninstall":
    with open(state) as f:
        saved = json.load(f)
    saved_args = (saved["release"], saved["chart"], saved["flags"])
    docs = [d for d in yaml.safe_load_all(render(*saved_args, "--skip-tests")) if d]
    kept = [d for d in docs if (d["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"]
    gone = [d for d in docs if d not in kept]
    kubectl_run("delete", "--ignore-not-found", "-f", "-", stdin=yaml.safe_dump_all(gone))
'''


def test_every_shell_block_says_who_runs_it(doc_blocks: list[Any]) -> None:
    shell = [b for b in doc_blocks if b.lang in SHELL_LANGS]
    assert len(shell) > 10, "the README's cluster part lost its commands"
    untagged = [b.body for b in shell if not b.tags or not b.tags <= TAGS]
    assert untagged == []
    assert {tag for b in shell for tag in b.tags} == TAGS


def test_every_shell_block_parses_and_cannot_hide_a_failure(doc_blocks: list[Any]) -> None:
    """Blocks run with bash -euo pipefail; `export X=$(cmd)` or `local X=$(cmd)` would still hide cmd's failure."""
    for block in doc_blocks:
        if block.lang in SHELL_LANGS:
            result = subprocess.run(["bash", "-n", "-c", block.body], capture_output=True, text=True)
            assert result.returncode == 0, f"{block.body}\n{result.stderr}"
            assert not re.search(r"\b(export|local|readonly|declare)\s+\w+=\$\(", block.body), block.body


def test_the_first_modeldeployment_shown_is_the_example_applied(doc_blocks: list[Any]) -> None:
    shown = [yaml.safe_load(b.body) for b in doc_blocks if b.lang == "yaml" and "kind: ModelDeployment" in b.body]
    assert shown == [yaml.safe_load((ROOT / "examples" / "cpu.yaml").read_text())]


def test_the_readme_has_the_cluster_sections_in_order() -> None:
    (part,) = CLUSTER_DOCS.findall(README.read_text())
    headings = [line for line in part.splitlines() if line.startswith("### ")]
    assert headings == [
        "### Supported Kubernetes versions", "### Build the images", "### Install with Helm",
        "### Install with kubectl", "### Write your first ModelDeployment",
        "### Call it with grpcurl and with a TorchServe client", "### Upgrade", "### Uninstall",
        "### Where the local API differs from a real cluster",
    ]  # fmt: skip
    outside = CLUSTER_DOCS.sub("", README.read_text())
    assert "<!-- test:" not in outside, "only the cluster part's blocks are run by these tests"


def test_commands_left_to_ci_are_run_by_ci(doc_blocks: list[Any]) -> None:
    ci_run = (ROOT / ".ci" / "run").read_text()
    for block in doc_blocks:
        if "ci" in block.tags:
            for line in block.body.splitlines():
                command = line.split("#")[0].strip()
                if command:
                    script = command.split()[-1]
                    assert script in ci_run, f"README.md shows `{command}`: .ci/run must run it, or the README must not"


@pytest.fixture
def sandbox(
    tmp_path: Path, helm_binary: str, kubectl_binary: str, doc_blocks: list[Any], doc_bin: Path, doc_path: str
) -> Iterator[tuple[Path, dict[str, str], Any]]:
    from modelfleet.local.apiserver import apiserver_thread

    work = tmp_path / "work"
    work.mkdir()
    for part in ("charts", "manifests", "examples"):
        (work / part).symlink_to(ROOT / part)
    for block in doc_blocks:
        if block.lang == "yaml" and block.file_name:
            (work / block.file_name).write_text(block.body)
    (doc_bin / "helm").write_text(HELM_WRAPPER.replace("{python}", sys.executable))
    (doc_bin / "helm").chmod(0o700)
    with apiserver_thread() as api:
        (tmp_path / "kubeconfig").write_text(api.kubeconfig())
        env = {
            **os.environ,
            "PATH": doc_path,
            "HOME": str(tmp_path),
            "KUBECONFIG": str(tmp_path / "kubeconfig"),
            "REAL_KUBECTL": kubectl_binary,
            "REAL_HELM": helm_binary,
            "HELM_WRAPPER_STATE": str(tmp_path / "release.json"),
        }
        yield work, env, api


def _run_path(
    path: str, blocks: list[Any], run_block: Callable[..., Any], work: Path, env: dict[str, str], checks: dict[str, Any]
) -> list[str]:
    """Run every block of `path` in page order; after each, the matching check (by first command)."""
    ran = []
    for block in blocks:
        if path not in block.tags:
            continue
        run_block(block, cwd=work, env=env)
        first = next(line for line in block.body.splitlines() if line.strip())
        ran.append(first)
        for prefix, check in checks.items():
            if first.startswith(prefix):
                check()
    return ran


def _kubectl_json(env: dict[str, str], *args: str) -> Any:
    out = subprocess.run([env["REAL_KUBECTL"], "get", *args, "-o", "json"], env=env, capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None


def test_the_helm_path_installs_tests_upgrades_and_uninstalls(
    sandbox: tuple[Path, dict[str, str], Any], doc_blocks: list[Any], run_block: Callable[..., Any]
) -> None:
    work, env, _ = sandbox
    operator = ("deployment", "modelfleet-operator", "-n", "modelfleet-system")

    def installed() -> None:
        deployment = _kubectl_json(env, *operator)
        assert deployment["spec"]["replicas"] == 2
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "registry.example.com/modelfleet-operator:0.1.0"
        assert _kubectl_json(env, "clusterrole", "modelfleet-operator") is None, "watchNamespaces → Roles only"

    def applied() -> None:
        assert _kubectl_json(env, "mdep", "cpu-tiny", "-n", "ml-serving") is not None

    def tested() -> None:
        pod = _kubectl_json(env, "pod", "modelfleet-test-grpc-health", "-n", "modelfleet-system")
        assert pod["spec"]["containers"][0]["args"][1] == "cpu-tiny.ml-serving.svc:7070"

    def uninstalled() -> None:
        assert _kubectl_json(env, *operator) is None
        assert _kubectl_json(env, "crd", "modeldeployments.modelfleet.io") is not None, "crds.keep"

    def crd_removed() -> None:
        assert _kubectl_json(env, "crd", "modeldeployments.modelfleet.io") is None

    ran = _run_path(
        "helm",
        doc_blocks,
        run_block,
        work,
        env,
        {
            "kubectl create namespace ml-serving": installed,
            "kubectl apply --namespace ml-serving": applied,
            "helm test": tested,
            "helm uninstall": uninstalled,
            "kubectl delete -f manifests/00-crds.yaml": crd_removed,
        },
    )
    assert [r.split()[:2] for r in ran] == [
        ["kubectl", "create"], ["kubectl", "apply"], ["helm", "test"], ["helm", "upgrade"], ["kubectl", "delete"],
        ["helm", "uninstall"], ["kubectl", "delete"],
    ]  # fmt: skip


def test_the_kubectl_path_installs_upgrades_and_uninstalls(
    sandbox: tuple[Path, dict[str, str], Any], doc_blocks: list[Any], run_block: Callable[..., Any]
) -> None:
    work, env, _ = sandbox
    operator = ("deployment", "modelfleet-operator", "-n", "modelfleet-system")

    def installed() -> None:
        image = _kubectl_json(env, *operator)["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "ghcr.io/modelfleet/modelfleet-operator:0.1.0"

    def rendered() -> None:
        image = _kubectl_json(env, *operator)["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "registry.example.com/modelfleet-operator:0.1.0"

    def uninstalled() -> None:
        assert _kubectl_json(env, *operator) is None

    ran = _run_path(
        "kubectl",
        doc_blocks,
        run_block,
        work,
        env,
        {
            "kubectl apply -f manifests/": installed,
            "kubectl create namespace ml-serving": rendered,
            "kubectl delete -f manifests/10-modelfleet.yaml": uninstalled,
        },
    )
    assert len(ran) == 7
