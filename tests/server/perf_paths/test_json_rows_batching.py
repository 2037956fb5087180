"""JSON inputs are joined in numpy and other forms in torch (tensor.py): a batch that mixes JSON,
raw and safetensors requests of one shape, single samples and batches, answers each exactly as if
it had run alone (to float rounding), and a bad JSON request in the batch fails only itself."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save as safetensors_save

from modelfleet.server.errors import ModelFleetError, Reason
from modelfleet.server.models.handlers import ModelState
from modelfleet.server.models.handlers.tensor import TensorRunner

import mf_domain_harness as h


def test_a_mixed_batch_answers_every_request_as_if_it_ran_alone(tiny_model: object) -> None:
    from modelfleet.server.demo import build_module

    module = torch.jit.script(build_module("tiny", seed=0).eval())
    runner = TensorRunner(module, device="cpu", state=ModelState(sample_ndim=1))
    rows = h.seeded_rows(6, seed=7)
    requests = [
        {"data": h.rows_json(rows[0])},  # one JSON sample
        {"data": h.rows_json(rows[1:3])},  # a JSON batch
        {"data": rows[3].numpy().tobytes(), "dtype": b"float32", "shape": b"16"},  # raw sample
        {"data": b"[1, 2, 3]"},  # wrong width: only this one fails
        {"data": safetensors_save({"x": rows[4:6].contiguous()})},  # safetensors batch
        {"data": h.rows_json(rows[5])},
    ]
    together = runner.run_batch(requests)
    alone = [runner.run_batch([request])[0] for request in requests]

    assert isinstance(together[3], ModelFleetError) and together[3].reason == Reason.BAD_INPUT
    for index in (0, 1, 5):  # same values; the low bits of a batched matmul may differ
        assert torch.allclose(
            torch.tensor(json.loads(together[index])), torch.tensor(json.loads(alone[index])), atol=1e-6
        )
    assert len(together[2]) == len(alone[2]) == 4 * 4  # raw answer: float32 bytes of 4 outputs
    assert isinstance(together[4], bytes) and together[4][8:9] == b"{"  # safetensors answer
    expected = h.eager()(rows)
    assert torch.allclose(torch.tensor(json.loads(together[0])), expected[0], atol=1e-5)
    assert torch.allclose(torch.tensor(json.loads(together[1])), expected[1:3], atol=1e-5)
    assert torch.allclose(torch.frombuffer(bytearray(together[2]), dtype=torch.float32), expected[3], atol=1e-5)
    assert torch.allclose(torch.tensor(json.loads(together[5])), expected[5], atol=1e-5)
