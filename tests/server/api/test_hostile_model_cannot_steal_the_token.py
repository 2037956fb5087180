"""The attack the trust review found, over the real API: a TorchScript model whose __setstate__ reads the
server's management-token file (for forward to hand it out through Predictions) is refused at
RegisterModel, so the token never leaves the server and the model is never listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch

from modelfleet.protos import management_pb2
from modelfleet.server.settings import AuthSettings

from mf_hostile_models import FORWARD_LINE, SETSTATE_LINE, VICTIM, Victim, rewrite

MANAGEMENT_TOKEN = "mgmt-" + "s3cret" * 4
INFERENCE_TOKEN = "inference-token-1"


def token_stealer(model_store: Path, token_file: Path) -> Path:
    benign = model_store / "benign.pt"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(Victim()).save(str(benign))
    size = token_file.stat().st_size
    return rewrite(
        benign,
        model_store / "stealer.pt",
        {
            VICTIM: (SETSTATE_LINE, f'    self.weight = torch.from_file("{token_file}", False, {size}, dtype=0)\n'),
            f"{VICTIM}#2": (FORWARD_LINE, "    return weight\n"),
        },
    )


@pytest.mark.parametrize("mode", ["torchserve", "conventional"])
async def test_a_model_that_reads_the_token_file_is_refused_and_never_served(
    start_api: Any, model_store: Path, tmp_path: Path, mode: str
) -> None:
    management_file, inference_file = tmp_path / "mgmt", tmp_path / "inf"
    management_file.write_text(MANAGEMENT_TOKEN + "\n")
    inference_file.write_text(INFERENCE_TOKEN + "\n")
    stealer = token_stealer(model_store, management_file)
    # Control: torch itself would hand the token over to this model's forward.
    leaked = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            f"import torch; m = torch.jit.load({str(stealer)!r}); print(bytes(m(torch.zeros(1)).tolist()).decode())",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert MANAGEMENT_TOKEN in leaked

    auth = AuthSettings(
        enabled=True,
        enable_model_api=True,
        management_token_file=management_file,
        inference_token_file=inference_file,
        key_file=tmp_path / "key_file.json",
    )
    async with start_api(auth=auth, status_mode=mode) as api:
        management = [("authorization", f"Bearer {MANAGEMENT_TOKEN}")]
        failure = await api.failure(
            api.management.RegisterModel(
                management_pb2.RegisterModelRequest(url="stealer.pt", model_name="stealer", synchronous=True),
                metadata=management,
            )
        )
        assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
        assert failure.reason == "UNSUPPORTED_FORMAT"
        assert "__setstate__ uses torch.from_file (aten::from_file)" in failure.details
        assert MANAGEMENT_TOKEN not in failure.details

        listing = await api.management.ListModels(management_pb2.ListModelsRequest(), metadata=management)
        assert "stealer" not in listing.msg
