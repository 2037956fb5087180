"""NVIDIA's tritonclient (gRPC) works against ModelFleet as against Triton: health, metadata, inference in
every common dtype (raw and typed), versions, requested outputs, streaming, token auth, and the status
code Triton would give for each bad request, with the server serving on after each.

tests/clients/triton_calls.py runs in .venv-clients (tritonclient 2.73, protobuf 6.x) against a real
server started with token auth; it prints what it saw and these tests assert it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modelfleet.server.demo import build_module

from mf_client_fleet import Fleet

SAMPLES: dict[str, np.ndarray[Any, Any]] = {  # the script's inputs; the model doubles numbers and negates BOOL
    "FP32": np.array([[1.5, -2.0, 0.25]], dtype=np.float32),
    "FP64": np.array([[1e300, -0.5]], dtype=np.float64),
    "INT64": np.array([[2**40, -3], [7, 0]], dtype=np.int64),
    "INT32": np.array([[2**20, -3, 5]], dtype=np.int32),
    "UINT8": np.array([[1, 2, 127]], dtype=np.uint8),
    "BOOL": np.array([[True, False, True]], dtype=np.bool_),
    "FP16": np.array([[0.5, -1.25, 3.0]], dtype=np.float16),
}
FEATURES = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)


def _twice(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    doubled: np.ndarray[Any, Any] = np.logical_not(array) if array.dtype == np.bool_ else array + array
    return doubled


@pytest.fixture(scope="module")
def seen(fleet: Fleet, clients_python: Path) -> dict[str, Any]:
    result: dict[str, Any] = fleet.run(clients_python, "triton_calls.py")
    return result


def test_health_and_readiness(seen: dict[str, Any]) -> None:
    assert (seen["live"], seen["ready"], seen["model_ready"], seen["model_version_ready"]) == (True,) * 4


def test_server_and_model_metadata(seen: dict[str, Any]) -> None:
    assert seen["server_metadata"]["name"] == "modelfleet"
    assert not seen["server_metadata"].get("extensions")  # no shared memory, statistics, repository, ...
    for key in ("model_metadata", "model_metadata_v1"):
        assert seen[key] == {
            "name": "tiny",
            "versions": ["1", "2"],
            "platform": "pytorch_torchscript",
            "inputs": [{"name": "features", "datatype": "FP32", "shape": ["-1", "16"]}],
            "outputs": [{"name": "scores", "datatype": "FP32", "shape": ["-1", "4"]}],
        }, key


def test_every_dtype_round_trips_raw_through_set_data_from_numpy(seen: dict[str, Any]) -> None:
    assert sorted(seen["raw"]) == sorted(SAMPLES)
    for datatype, array in SAMPLES.items():
        answer = seen["raw"][datatype]
        assert answer == {
            "datatype": datatype,
            "shape": list(array.shape),
            "values": _twice(array).tolist(),
            "numpy": str(array.dtype),
            "id": datatype,
            "raw": 1,
        }, datatype


def test_every_typed_dtype_round_trips_in_typed_contents(seen: dict[str, Any]) -> None:
    assert sorted(seen["typed"]) == sorted(set(SAMPLES) - {"FP16"})  # FP16 has no contents field
    for datatype, answer in seen["typed"].items():
        array = SAMPLES[datatype]
        assert answer == {
            "datatype": datatype,
            "shape": list(array.shape),
            "values": _twice(array).ravel().tolist(),
            "raw": 0,  # asked typed, answered typed
        }, datatype


def test_model_version_picks_the_version_and_requested_outputs_are_named(seen: dict[str, Any]) -> None:
    expected = {}
    for version, seed in (("1", 0), ("2", 1)):
        with torch.no_grad():
            expected[version] = build_module("tiny", seed=seed)(torch.from_numpy(FEATURES)).numpy()
    versions = seen["versions"]
    assert {k: v["model_version"] for k, v in versions.items()} == {"default": "2", "1": "1", "2": "2"}
    for key, version in (("default", "2"), ("1", "1"), ("2", "2")):
        assert versions[key]["outputs"] == ["scores"]
        np.testing.assert_allclose(versions[key]["scores"], expected[version], rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected["1"], expected["2"])


def test_one_stream_answers_every_request_and_reports_a_bad_one_in_band(seen: dict[str, Any]) -> None:
    assert seen["stream"] == [
        ["error", "Model not found: no-such-model"],
        ["s0", [[0.0, 0.0]]],
        ["s1", [[2.0, 2.0]]],
        ["s3", [[6.0, 6.0]]],
        ["s4", [[8.0, 8.0]]],
    ]


def test_each_bad_request_gets_the_status_triton_would_give(seen: dict[str, Any]) -> None:
    assert seen["bad"] == {
        "live_without_token": "UNAUTHENTICATED",
        "live_with_wrong_token": "UNAUTHENTICATED",
        "infer_without_token": "UNAUTHENTICATED",
        "server_metadata_without_token": "UNAUTHENTICATED",
        "ready_without_token": "UNAUTHENTICATED",
        "ready_unknown_model": "NOT_FOUND",
        "ready_unknown_version": "NOT_FOUND",
        "ready_no_name": "INVALID_ARGUMENT",
        "metadata_unknown_model": "NOT_FOUND",
        "metadata_unknown_version": "NOT_FOUND",
        "infer_unknown_model": "NOT_FOUND",
        "infer_unknown_version": "NOT_FOUND",
        "infer_unknown_output": "INVALID_ARGUMENT",
        "infer_two_inputs_one_input_model": "INVALID_ARGUMENT",
        "infer_wrong_feature_count": "INVALID_ARGUMENT",
        "infer_bytes_to_tensor_model": "INVALID_ARGUMENT",
        "infer_shape_bigger_than_data": "INVALID_ARGUMENT",
        "infer_shape_smaller_than_data": "INVALID_ARGUMENT",
        "infer_negative_dimension": "INVALID_ARGUMENT",
        "infer_unknown_datatype": "INVALID_ARGUMENT",
        "infer_typed_count_not_shape": "INVALID_ARGUMENT",
        "infer_no_inputs": "INVALID_ARGUMENT",
        "infer_two_inputs_built_by_hand": "INVALID_ARGUMENT",
        "infer_no_model_name": "INVALID_ARGUMENT",
    }


def test_the_extensions_modelfleet_does_not_serve_are_unimplemented(seen: dict[str, Any]) -> None:
    assert seen["not_served"] == dict.fromkeys(
        ("model_config", "statistics", "repository_index", "shared_memory"), "UNIMPLEMENTED"
    )


def test_the_server_serves_on_after_every_bad_request(seen: dict[str, Any], fleet: Fleet) -> None:
    assert seen["after"] == {"live": True, "answer": [[42.0]]}
    assert "Traceback" not in fleet.log()
