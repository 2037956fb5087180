"""manifests/ and the chart's CRD template are derived files: they must equal what their sources render."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "render_manifests.py"
CRD_SOURCE = ROOT / "operator" / "crds" / "modeldeployments.modelfleet.io.yaml"


def _check(root: Path, helm_binary: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "PATH": f"{Path(helm_binary).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "render_manifests.py"), "--check"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip


def test_committed_manifests_and_crd_template_equal_a_fresh_render(helm_binary: str, tools_home: Path) -> None:
    result = _check(ROOT, helm_binary, tools_home)
    assert result.returncode == 0, result.stderr


def test_a_changed_crd_source_is_reported_stale(helm_binary: str, tools_home: Path, tmp_path: Path) -> None:
    for part in ("scripts", "charts", "manifests", "operator/crds"):
        shutil.copytree(ROOT / part, tmp_path / part)
    source = tmp_path / "operator" / "crds" / CRD_SOURCE.name
    source.write_text(source.read_text().replace("Number of server pods.", "How many server pods."))
    result = _check(tmp_path, helm_binary, tools_home)
    assert result.returncode == 1
    assert "charts/modelfleet/templates/crds/modeldeployments.modelfleet.io.yaml" in result.stderr
    assert "manifests/00-crds.yaml" in result.stderr
    assert "How many server pods." in result.stderr  # the diff shows what changed


def test_the_chart_installs_exactly_the_operator_crd(render: Callable[..., list[dict[str, Any]]]) -> None:
    (rendered,) = [o for o in render() if o["kind"] == "CustomResourceDefinition"]
    source = yaml.safe_load(CRD_SOURCE.read_text())
    annotations = rendered["metadata"].pop("annotations")
    assert annotations == {"helm.sh/resource-policy": "keep"}
    assert rendered == source


def test_plain_manifests_hold_the_chart_objects_plus_a_namespace(render: Callable[..., list[dict[str, Any]]]) -> None:
    manifests = [
        doc
        for path in sorted((ROOT / "manifests").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    chart = render("--skip-tests")
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, manifests)) == sorted([*map(key, chart), ("Namespace", "", "modelfleet-system")])
    # CRD first (file order is kubectl's apply order), then the Namespace before anything in it.
    assert manifests[0]["kind"] == "CustomResourceDefinition"
    assert manifests[1]["kind"] == "Namespace"
