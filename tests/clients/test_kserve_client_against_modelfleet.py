"""KServe's own gRPC client (kserve.InferenceGRPCClient, grpc.aio) works against ModelFleet unchanged.

tests/clients/kserve_calls.py runs in .venv-clients (kserve 0.21, protobuf 6.x) against a real server
with token auth; it sends tensors both binary (raw_input_contents) and typed (InferTensorContents).
"""

from __future__ import annotations

from pathlib import Path

from mf_client_fleet import Fleet


def test_kserve_grpc_client_checks_health_infers_and_gets_clear_errors(fleet: Fleet, clients_python: Path) -> None:
    result = fleet.run(clients_python, "kserve_calls.py")
    assert (result["live"], result["ready"], result["model_ready"]) == (True, True, True)
    expected = {"FP32": ([1, 3], [[3.0, -4.0, 0.5]]), "INT64": ([1, 2], [[2**41, -6]])}
    for name, answer in result["infer"].items():
        datatype, form = name.split("-")
        shape, values = expected[datatype]
        assert answer == {
            "sent_raw": 1 if form == "binary" else 0,
            "id": name,
            "model_version": "1.0",
            "name": "output__0",
            "datatype": datatype,
            "shape": shape,
            "values": values,
        }, name
    assert sorted(result["infer"]) == ["FP32-binary", "FP32-typed", "INT64-binary", "INT64-typed"]
    assert result["bad"] == {
        "ready_unknown_model": "NOT_FOUND",
        "infer_unknown_model": "NOT_FOUND",
        "infer_wrong_feature_count": "INVALID_ARGUMENT",
        "live_without_token": "UNAUTHENTICATED",
    }
    assert result["after"] is True
