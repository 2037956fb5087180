"""JSON answers are written by orjson (tensor.py `_json_answer`): a client reads back exactly the
floats the model returned, and NaN / ±inf stay NaN / Infinity / -Infinity (orjson alone would
write `null`, which a client reads as a missing value), in a batch and alone."""

from __future__ import annotations

import json
import math

import torch

from modelfleet.server.models.handlers import ModelState
from modelfleet.server.models.handlers.tensor import TensorRunner


class _Log(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


def _runner() -> TensorRunner:
    return TensorRunner(torch.jit.script(_Log().eval()), device="cpu", state=ModelState(sample_ndim=1))


def test_a_json_answer_reads_back_as_the_exact_floats_of_the_output() -> None:
    values = [0.1, 1e-5, 3.0, 12345.678, 1e30]
    answer = _runner().run_batch([{"data": json.dumps(values).encode()}])[0]
    assert isinstance(answer, bytes)
    assert json.loads(answer) == torch.log(torch.tensor(values)).tolist()  # bit-exact, not approximately


def test_non_finite_outputs_stay_nan_and_infinity_not_null_in_a_batch_and_alone() -> None:
    runner = _runner()
    finite, odd = b"[1.0, 2.0, 4.0]", b"[0.0, -1.0, 1.0]"  # log: -inf, nan, 0
    together = runner.run_batch(  # one forward pass: equal widths
        [{"data": finite}, {"data": b"[[0.0, -1.0, 1.0], [1.0, 0.0, 0.0]]"}]
    )
    alone = runner.run_batch([{"data": odd}])[0]
    assert isinstance(alone, bytes) and b"null" not in alone
    low, nan, zero = json.loads(alone)
    assert low == -math.inf and math.isnan(nan) and zero == 0.0
    assert (
        isinstance(together[0], bytes) and json.loads(together[0]) == torch.log(torch.tensor([1.0, 2.0, 4.0])).tolist()
    )
    assert b"null" not in together[0] and isinstance(together[1], bytes) and b"null" not in together[1]
    rows = json.loads(together[1])
    assert rows[0][0] == -math.inf and math.isnan(rows[0][1]) and rows[1][1] == -math.inf
