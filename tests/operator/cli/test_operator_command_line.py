"""`python -m modelfleet.operator` / `modelfleet-operator`: flags, MODELFLEET_OPERATOR_* variables, defaults."""

from __future__ import annotations

import subprocess
import sys

from modelfleet.operator.__main__ import parse_settings

from mf_tools import console_script


def test_defaults_are_safe_and_documented() -> None:
    settings = parse_settings([], {})
    assert settings.leader.enabled and settings.leader.lease_namespace == "modelfleet-system"
    assert settings.kube.namespaces == () and settings.kube.server is None
    assert settings.reconcile.resync_interval_s == 60.0
    assert settings.fleet.default_server_image == ""  # no default: every ModelDeployment names its image


def test_default_server_image_comes_from_the_flag_or_the_environment() -> None:
    env = {"MODELFLEET_OPERATOR_DEFAULT_SERVER_IMAGE": "registry.example/modelfleet-server:0.1.0"}
    assert parse_settings([], env).fleet.default_server_image == "registry.example/modelfleet-server:0.1.0"
    flagged = parse_settings(["--default-server-image=registry.example/modelfleet-server@sha256:" + "a" * 64], env)
    assert flagged.fleet.default_server_image == "registry.example/modelfleet-server@sha256:" + "a" * 64


def test_environment_sets_and_flags_override() -> None:
    env = {
        "MODELFLEET_OPERATOR_RESYNC_INTERVAL": "5",
        "MODELFLEET_OPERATOR_NAMESPACE": "a,b",
        "MODELFLEET_OPERATOR_NO_LEADER_ELECTION": "true",
        "POD_NAMESPACE": "ops",
        "POD_NAME": "op-0",
    }
    settings = parse_settings(["--resync-interval", "7"], env)
    assert settings.reconcile.resync_interval_s == 7.0
    assert settings.kube.namespaces == ("a", "b")
    assert not settings.leader.enabled
    assert (settings.fleet.operator_namespace, settings.leader.lease_namespace, settings.leader.identity) == (
        "ops",
        "ops",
        "op-0",
    )


def test_module_and_console_script_answer_help() -> None:
    for command in (
        [sys.executable, "-m", "modelfleet.operator", "--help"],
        [console_script("modelfleet-operator"), "--help"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "--lease-duration" in result.stdout


def test_the_operator_never_imports_torch_or_the_server() -> None:
    code = (
        "import sys, modelfleet.operator.__main__, modelfleet.operator.reconcile; "
        "print([m for m in sys.modules if m == 'torch' or m.startswith('modelfleet.server')])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
