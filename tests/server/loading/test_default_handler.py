"""The built-in default handler: JSON, safetensors and raw tensors in and out, batched across requests."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.handlers import ModelState
from modelfleet.server.models.handlers.tensor import TensorRunner


def js(value: Any) -> dict[str, bytes]:
    return {"data": json.dumps(value).encode()}


class Counting(torch.nn.Module):
    """Wraps a module and records the batch shape of every forward pass."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        out: torch.Tensor = self.inner(x)
        return out


class Affine(torch.nn.Module):
    """Elementwise, so any sample shape works: y = 2x + 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 + 1


@pytest.fixture
def mlp(models: Any, load: Any) -> tuple[Any, torch.nn.Module]:
    eager = models.eager("mlp")
    return load(models.torchscript("mlp.pt", eager)).make_runner("cpu"), eager


def eager_rows(module: torch.nn.Module, rows: list[list[float]]) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = module(torch.tensor(rows, dtype=torch.float32))
        return out


def test_json_sample_and_json_batch_match_the_eager_model(mlp: tuple[Any, torch.nn.Module]) -> None:
    runner, eager = mlp
    gen = torch.Generator().manual_seed(1)
    one = torch.randn(256, generator=gen).tolist()
    three = torch.randn(3, 256, generator=gen).tolist()
    single, batch = runner.run_batch([js(one), js(three)])
    assert torch.allclose(torch.tensor(json.loads(single)), eager_rows(eager, [one])[0], atol=1e-5)
    assert torch.tensor(json.loads(batch)).shape == (3, 10)
    assert torch.allclose(torch.tensor(json.loads(batch)), eager_rows(eager, three), atol=1e-5)


def test_batched_results_equal_unbatched_forward_passes(mlp: tuple[Any, torch.nn.Module]) -> None:
    runner, eager = mlp
    gen = torch.Generator().manual_seed(2)
    requests = [torch.randn(256, generator=gen).tolist() for _ in range(5)]
    requests.append(torch.randn(2, 256, generator=gen).tolist())
    results = runner.run_batch([js(r) for r in requests])
    for request, result in zip(requests, results):
        rows = request if isinstance(request[0], list) else [request]
        alone = eager_rows(eager, rows)
        got = torch.tensor(json.loads(result))
        assert torch.allclose(got, alone if isinstance(request[0], list) else alone[0], atol=1e-5)


def test_requests_of_one_shape_run_as_one_forward_pass() -> None:
    counting = Counting(Affine())
    runner = TensorRunner(counting, device="cpu", state=ModelState(sample_ndim=1))
    results = runner.run_batch([js([1.0, 2.0]), js([[3.0, 4.0], [5.0, 6.0]]), js([7.0, 8.0])])
    assert counting.calls == [(4, 2)]
    assert [json.loads(r) for r in results] == [[3.0, 5.0], [[7.0, 9.0], [11.0, 13.0]], [15.0, 17.0]]


def test_different_shapes_in_one_batch_form_separate_groups() -> None:
    counting = Counting(Affine())
    runner = TensorRunner(counting, device="cpu", state=ModelState(sample_ndim=1))
    results = runner.run_batch([js([1.0]), js([1.0, 2.0, 3.0]), js([2.0]), js([[0.0, 1.0, 2.0]])])
    assert sorted(counting.calls) == [(2, 1), (2, 3)]
    assert [json.loads(r) for r in results] == [[3.0], [3.0, 5.0, 7.0], [5.0], [[1.0, 3.0, 5.0]]]


class RejectsNegatives(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x < 0).any()):
            raise ValueError("negative input")
        return x * 2 + 1


def test_a_failing_group_is_retried_one_by_one_so_only_the_bad_request_fails() -> None:
    counting = Counting(RejectsNegatives())
    runner = TensorRunner(counting, device="cpu", state=ModelState(sample_ndim=1))
    results = runner.run_batch([js([1.0]), js([-1.0]), js([2.0])])
    assert counting.calls == [(3, 1), (1, 1), (1, 1), (1, 1)]
    assert json.loads(results[0]) == [3.0] and json.loads(results[2]) == [5.0]
    error = results[1]
    assert isinstance(error, ModelFleetError) and error.reason is Reason.BAD_INPUT
    assert "negative input" in error.message


BAD_INPUTS = {
    "invalid utf-8": {"data": b"[1.0, \xff]"},
    "bad json": {"data": b"[1.0, 2"},
    "not numbers": js(["a"] * 256),
    "ragged": js([[1.0] * 256, [1.0] * 255]),
    "wrong width": js([1.0] * 7),
    "a json object": js({"x": 1}),
    "no data key": {"input": b"[1]"},
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_one_bad_input_fails_alone_and_neighbours_succeed(mlp: tuple[Any, torch.nn.Module], case: str) -> None:
    runner, eager = mlp
    good = [0.5] * 256
    results = runner.run_batch([js(good), BAD_INPUTS[case], js(good)])
    bad = results[1]
    assert isinstance(bad, ModelFleetError)
    assert (bad.kind, bad.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)
    assert bad.message and "Traceback" not in bad.message
    for result in (results[0], results[2]):
        assert torch.allclose(torch.tensor(json.loads(result)), eager_rows(eager, [good])[0], atol=1e-5)
    # The model keeps serving afterwards.
    assert isinstance(runner.run_batch([js(good)])[0], bytes)


def test_missing_data_names_the_accepted_keys(mlp: tuple[Any, torch.nn.Module]) -> None:
    runner, _ = mlp
    [error] = runner.run_batch([{}])
    assert isinstance(error, ModelFleetError) and "'data'" in error.message and "'body'" in error.message


def test_body_is_accepted_like_data(mlp: tuple[Any, torch.nn.Module]) -> None:
    runner, _ = mlp
    a, b = runner.run_batch([{"body": json.dumps([0.25] * 256).encode()}, js([0.25] * 256)])
    assert a == b


def test_safetensors_in_safetensors_out(mlp: tuple[Any, torch.nn.Module]) -> None:
    runner, eager = mlp
    gen = torch.Generator().manual_seed(3)
    sample, batch = torch.randn(256, generator=gen), torch.randn(4, 256, generator=gen)
    one, four, as_json = runner.run_batch(
        [{"data": st_save({"x": sample})}, {"data": st_save({"input": batch})}, js(sample.tolist())]
    )
    out_one, out_four = st_load(one)["output"], st_load(four)["output"]
    assert out_one.shape == (10,) and out_four.shape == (4, 10)
    assert torch.allclose(out_one, eager_rows(eager, [sample.tolist()])[0], atol=1e-5)
    assert torch.allclose(out_four, eager_rows(eager, batch.tolist()), atol=1e-5)
    assert torch.allclose(torch.tensor(json.loads(as_json)), out_one, atol=1e-6)


def test_safetensors_with_two_tensors_is_bad_input(mlp: tuple[Any, torch.nn.Module]) -> None:
    runner, _ = mlp
    [error] = runner.run_batch([{"data": st_save({"a": torch.ones(256), "b": torch.ones(256)})}])
    assert isinstance(error, ModelFleetError) and error.reason is Reason.BAD_INPUT


@pytest.mark.parametrize("shape_entry", [b"[2, 256]", b"2,256"])
def test_raw_bytes_with_dtype_and_shape_answer_raw_bytes(mlp: tuple[Any, torch.nn.Module], shape_entry: bytes) -> None:
    runner, eager = mlp
    rows = np.random.default_rng(4).standard_normal((2, 256)).astype("<f4")
    [result] = runner.run_batch([{"data": rows.tobytes(), "dtype": b"float32", "shape": shape_entry}])
    assert isinstance(result, bytes) and len(result) == 2 * 10 * 4
    got = torch.from_numpy(np.frombuffer(result, dtype="<f4").reshape(2, 10).copy())
    assert torch.allclose(got, eager_rows(eager, rows.tolist()), atol=1e-5)


def test_raw_input_keeps_its_dtype() -> None:
    runner = TensorRunner(Affine(), device="cpu", state=ModelState())
    data = np.array([1, 2, 3], dtype="<i8").tobytes()
    [result] = runner.run_batch([{"data": data, "dtype": b"int64", "shape": b"[3]"}])
    assert np.frombuffer(result, dtype="<i8").tolist() == [3, 5, 7]


@pytest.mark.parametrize(
    "entries",
    [
        {"dtype": b"float32", "shape": b"[3, 256]"},  # too few bytes for the shape
        {"dtype": b"complex7", "shape": b"[2, 256]"},
        {"dtype": b"float32", "shape": b"[2, -256]"},
        {"dtype": b"float32", "shape": b"two"},
        {"dtype": b"float32"},
    ],
)
def test_malformed_raw_tensors_are_bad_input(mlp: tuple[Any, torch.nn.Module], entries: dict[str, bytes]) -> None:
    runner, _ = mlp
    data = np.zeros((2, 256), dtype="<f4").tobytes()
    [error] = runner.run_batch([{"data": data, **entries}])
    assert isinstance(error, ModelFleetError) and error.reason is Reason.BAD_INPUT


def test_sample_rank_is_learned_for_image_shaped_inputs(models: Any, load: Any) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten()).eval()
    runner = load(models.torchscript("conv.pt", conv)).make_runner("cpu")
    image = torch.randn(3, 8, 8)
    images = torch.randn(2, 3, 8, 8)
    [one] = runner.run_batch([js(image.tolist())])
    [two] = runner.run_batch([js(images.tolist())])
    with torch.no_grad():
        assert torch.allclose(torch.tensor(json.loads(one)), conv(image[None])[0], atol=1e-5)
        assert torch.allclose(torch.tensor(json.loads(two)), conv(images), atol=1e-5)


def test_export_programs_know_their_sample_rank(models: Any, load: Any) -> None:
    loaded = load(models.export("tiny.pt2"))
    runner = loaded.make_runner("cpu")
    results = runner.run_batch([js([1.0] * 16), js([[1.0] * 16, [2.0] * 16])])
    assert torch.tensor(json.loads(results[0])).shape == (4,)
    assert torch.tensor(json.loads(results[1])).shape == (2, 4)


def test_model_returning_a_tuple_is_an_internal_error() -> None:
    class Pair(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    runner = TensorRunner(Pair(), device="cpu", state=ModelState(sample_ndim=1))
    [error] = runner.run_batch([js([1.0])])
    assert isinstance(error, ModelFleetError) and error.kind is ErrorKind.INTERNAL


def test_a_wrong_output_type_fails_the_whole_batch_after_one_forward_pass() -> None:
    """Not the inputs' fault, so no one-by-one retry: one forward pass, every caller INTERNAL."""

    class CountingPair(torch.nn.Module):
        calls = 0

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            CountingPair.calls += 1
            return x, x

    runner = TensorRunner(CountingPair(), device="cpu", state=ModelState(sample_ndim=1))
    errors = runner.run_batch([js([1.0]), js([2.0]), js([3.0])])
    assert CountingPair.calls == 1
    assert all(isinstance(e, ModelFleetError) and e.kind is ErrorKind.INTERNAL for e in errors)


def test_stream_yields_the_single_result_or_raises(mlp: tuple[Any, torch.nn.Module]) -> None:
    runner, _ = mlp
    [batch_result] = runner.run_batch([js([0.5] * 256)])
    assert list(runner.stream(js([0.5] * 256))) == [batch_result]
    with pytest.raises(ModelFleetError) as caught:
        list(runner.stream(js([0.5] * 3)))
    assert caught.value.reason is Reason.BAD_INPUT


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"[1.5, -0.0, 1e-50, 3]", [1.5, -0.0, 0.0, 3.0]),  # the fast parser's path
        (b"[NaN, Infinity, -Infinity, 2]", [float("nan"), float("inf"), float("-inf"), 2.0]),  # json's extensions
        (b" [1e400, 7] ", [float("inf"), 7.0]),
    ],
)
def test_json_numbers_read_as_python_json_reads_them(text: bytes, expected: list[float]) -> None:
    """Both JSON parsers (fast path and json fallback) give float32 values equal to json.loads'."""
    runner = TensorRunner(torch.jit.script(Affine()), device="cpu", state=ModelState(sample_ndim=1))
    (answer,) = runner.run_batch([{"data": text}])
    assert isinstance(answer, bytes)
    got = np.array(json.loads(answer), dtype=np.float32)
    want = np.array(expected, dtype=np.float32) * 2 + 1
    assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize(
    "text, words",
    [
        (b"[1.0, 2", "input is not valid JSON: Expecting"),
        (b"[1] x", "input is not valid JSON: Extra data"),
        (b"\xef\xbb\xbf[1]", "input is not valid JSON: Unexpected UTF-8 BOM"),
        (b"[1.0, \xff]", "input is not valid UTF-8"),
        (b"[null, 1]", "found null, text or out-of-range values"),
    ],
)
def test_malformed_json_gets_json_module_error_messages(text: bytes, words: str) -> None:
    runner = TensorRunner(torch.jit.script(Affine()), device="cpu", state=ModelState(sample_ndim=1))
    (answer,) = runner.run_batch([{"data": text}])
    assert isinstance(answer, ModelFleetError) and answer.reason is Reason.BAD_INPUT
    assert words in answer.message
