"""Trusted handler modules: imported only when listed, their hooks run around the batched forward pass."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.loading import ModelLoader
from modelfleet.server.settings import ModelSettings

CSV_HANDLER = '''
"""Reads comma-separated numbers, answers the index of the largest output."""
import torch

def preprocess(inputs):
    text = inputs["data"].decode("ascii")
    return torch.tensor([[float(v) for v in line.split(",")] for line in text.splitlines()])

def postprocess(output):
    return ",".join(str(int(i)) for i in output.argmax(dim=-1)).encode()
'''


def test_preprocess_and_postprocess_wrap_the_model(models: Any, load: Any) -> None:
    name = models.trusted_module(CSV_HANDLER)
    loader = ModelLoader(ModelSettings(trusted_handlers=(name,)))
    loaded = load(models.torchscript("tiny.pt"), loader_=loader, handler=name)
    assert loaded.handler_name == name and loaded.load_info.handler_kind == "trusted"
    rows = torch.randn(3, 16, generator=torch.Generator().manual_seed(5))
    text = "\n".join(",".join(f"{v:.6f}" for v in row.tolist()) for row in rows)
    good, bad, good_again = loaded.make_runner("cpu").run_batch(
        [{"data": text.encode()}, {"data": b"1,x"}, {"data": text.encode()}]
    )
    with torch.no_grad():
        expected = ",".join(str(int(i)) for i in models.eager()(rows).argmax(dim=-1)).encode()
    assert good == expected == good_again
    assert isinstance(bad, ModelFleetError) and (bad.kind, bad.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)


def test_unlisted_module_is_never_imported(models: Any, identify: Any) -> None:
    name = models.trusted_module(CSV_HANDLER)
    with pytest.raises(ModelFleetError) as caught:
        identify(models.torchscript("tiny.pt"), handler=name)
    assert caught.value.reason is Reason.HANDLER_NOT_ALLOWED
    assert name not in sys.modules


class Affine(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 + 1


def test_postprocess_failure_is_internal_for_that_request_only(models: Any, load: Any) -> None:
    name = models.trusted_module("""
def postprocess(output):
    if output.max() > 100:
        raise RuntimeError("cannot encode")
    return b"ok"
""")
    loader = ModelLoader(ModelSettings(trusted_handlers=(name,)))
    runner = load(models.torchscript("affine.pt", Affine()), loader_=loader, handler=name).make_runner("cpu")
    small, large = runner.run_batch([{"data": b"[1.0]"}, {"data": b"[1000.0]"}])
    assert small == b"ok"
    assert isinstance(large, ModelFleetError) and (large.kind, large.reason) == (ErrorKind.INTERNAL, Reason.INTERNAL)
    assert "cannot encode" in large.message


def test_sample_ndim_fixes_the_one_sample_rule(models: Any, load: Any) -> None:
    name = models.trusted_module("SAMPLE_NDIM = 2\n")

    class RowSum(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum(dim=-1)

    loader = ModelLoader(ModelSettings(trusted_handlers=(name,)))
    loaded = load(models.torchscript("rowsum.pt", RowSum()), loader_=loader, handler=name)
    # A 2-D request is one 2-D sample here, not a batch of 1-D samples.
    [result] = loaded.make_runner("cpu").run_batch([{"data": json.dumps([[1.0, 2.0], [3.0, 4.0]]).encode()}])
    assert json.loads(result) == [3.0, 7.0]


def test_module_with_a_non_callable_hook_fails_to_load(models: Any, load: Any) -> None:
    name = models.trusted_module("preprocess = 3\n")
    with pytest.raises(ModelFleetError) as caught:
        load(models.torchscript("tiny.pt"), loader_=ModelLoader(ModelSettings(trusted_handlers=(name,))), handler=name)
    assert caught.value.reason is Reason.LOAD_FAILED and "preprocess" in caught.value.message
