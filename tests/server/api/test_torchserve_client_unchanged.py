"""A client generated from TorchServe 0.12's own .proto files, in its own process, works unchanged."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc_tools
import pytest
import torch

from modelfleet.server.demo import build_module
from modelfleet.server.settings import AuthSettings

HERE = Path(__file__).parent / "torchserve_protos"


async def run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a child process without blocking the loop the in-process server runs on."""
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
async def torchserve_client(tmp_path: Path) -> Path:
    """TorchServe's protos compiled with grpc_tools into a folder of their own, plus the client script."""
    folder = tmp_path / "ts_client"
    folder.mkdir()
    for name in ("inference.proto", "management.proto", "torchserve_client.py"):
        shutil.copy(HERE / name, folder / name)
    site_packages = str(Path(grpc_tools.__file__).parent.parent)
    await run(
        sys.executable, "-m", "grpc_tools.protoc", "-I.", f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
        f"-I{site_packages}", "--python_out=.", "--grpc_python_out=.", "inference.proto", "management.proto",
        cwd=folder,
    )  # fmt: skip
    return folder


async def test_a_torchserve_client_registers_predicts_describes_lists_and_unregisters(
    start_api: Callable[..., Any], make_model: Callable[..., Any], torchserve_client: Path, tmp_path: Path
) -> None:
    make_model("tiny.pt")
    key_file = tmp_path / "key_file.json"
    async with start_api(auth=AuthSettings(enable_model_api=True, key_file=key_file)) as api:
        # Only the client's folder on the path: it must not see modelfleet's generated modules.
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(torchserve_client)}
        out = await run(
            sys.executable, "-B", "torchserve_client.py",
            api.app.inference_address, api.app.management_address, str(key_file),
            cwd=torchserve_client, env=env,
        )  # fmt: skip
    seen = json.loads(out)
    assert seen["modelfleet_imported"] == []
    assert seen["proto_files"] == ["inference.proto", "management.proto"]  # TorchServe's files, not ours
    with torch.no_grad():
        expected = build_module("tiny")(torch.tensor([0.25] * 16)).tolist()
    assert seen["register"] == 'Model "tiny" Version: 1.0 registered with 1 initial workers'
    assert seen["ping"] == '{\n  "status": "Healthy"\n}'
    assert seen["predict"] == pytest.approx(expected, rel=1e-5)
    assert seen["stream"] == [pytest.approx(expected, rel=1e-5)]
    assert seen["stream2"] == [pytest.approx(expected, rel=1e-5)]
    (described,) = seen["describe"]
    assert (described["modelName"], described["modelVersion"], len(described["workers"])) == ("tiny", "1.0", 1)
    assert seen["list"] == {"models": [{"modelName": "tiny", "modelUrl": "tiny.pt"}]}
    assert seen["scale"] == "Workers scaled to 2 for model: tiny"
    assert seen["set_default"] == 'Default version successfully updated for model "tiny" to "1.0"'
    assert seen["unknown_model"] == ["INTERNAL", "Model not found: nope"]
    assert seen["no_token"][0] == "PERMISSION_DENIED"
    assert seen["no_token"][1].startswith("Token Authorization failed")
    assert seen["unregister"] == 'Model "tiny" unregistered'
