"""The operator and the server agree on the wire contract in modelfleet.protos.contract.

Each test reads both sides (tests may import both; the packages may not import each other), so a
reason, document key, name rule or flag changed on one side only fails here.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from modelfleet.operator import children, podclient, podidentity
from modelfleet.operator import spec as operator_spec
from modelfleet.operator.plan import desired_document
from modelfleet.protos import contract
from modelfleet.protos.contract import Reason, RetryClass
from modelfleet.server import cli, errors, names
from modelfleet.server.models.desired_state import DesiredModel, DesiredVersion, parse_desired_state
from modelfleet.server.rpc import error_details, health


def _body(**model: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "demo", "namespace": "default", "uid": "uid-demo", "generation": 1},
        "spec": {"replicas": 1, "image": "ghcr.io/modelfleet/server:0.1.0", "models": [model]},
    }


def test_the_server_raises_the_contracts_reasons() -> None:
    assert errors.Reason is contract.Reason


def test_every_reason_has_exactly_one_retry_class() -> None:
    assert set(contract.RETRY_CLASS) == set(Reason)
    classes = [contract.reasons_of(c) for c in RetryClass]
    assert sum(len(c) for c in classes) == len(Reason)
    assert frozenset().union(*classes) == {r.value for r in Reason}


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_the_operator_treats_each_reason_as_its_retry_class(reason: Reason) -> None:
    error = podclient.PodCallError("RegisterModel", grpc.StatusCode.UNKNOWN, "m", reason.value)
    decided = (error.permanent, error.transient, error.stale, error.unverified)
    expected = {
        RetryClass.PERMANENT: (True, False, False, False),
        RetryClass.TRANSIENT: (False, True, False, False),
        RetryClass.STALE: (False, False, True, False),
        RetryClass.LATER: (False, False, False, False),
    }[contract.RETRY_CLASS[reason]]
    assert decided == expected


def test_the_operators_own_reasons_do_not_collide_with_the_servers() -> None:
    assert not podidentity.REASONS & {r.value for r in Reason}


def test_both_sides_use_the_same_error_domain_and_pod_uid_header() -> None:
    assert error_details.DOMAIN == podclient.DOMAIN == contract.ERROR_DOMAIN
    assert health.POD_UID_METADATA == podidentity.POD_UID_METADATA == contract.POD_UID_METADATA


@pytest.mark.parametrize("name", ["a", "tiny-1.0_x", "A" * 63, "A" * 64, "-a", "a/b", "a\n", "all", "1.0+cu121"])
def test_a_name_or_version_the_operator_accepts_the_server_accepts(name: str) -> None:
    def server_accepts(check: Any) -> bool:
        try:
            check(name)
        except errors.ModelFleetError:
            return False
        return True

    model_ok = bool(operator_spec.NAME_PATTERN.fullmatch(name))
    version_ok = bool(operator_spec.VERSION_PATTERN.fullmatch(name)) and name not in operator_spec.RESERVED_VERSIONS
    assert (model_ok, version_ok) == (server_accepts(names.check_model_name), server_accepts(names.check_version))


SIGNATURE = {
    "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 3, 8, 8]}],
    "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 10]}],
}


def test_the_document_the_operator_writes_is_the_one_the_server_reads() -> None:
    """Every per-model field set away from its default, so a key spelled differently on one side shows."""
    spec = operator_spec.parse_spec(
        _body(
            name="tiny",
            versions=[{"version": "1.0", "url": "tiny.pt#version=1.0"}, {"version": "2.0", "url": "tiny2.pt"}],
            defaultVersion="2.0",
            minWorkers=2,
            maxWorkers=3,
            batchSize=4,
            maxBatchDelayMs=5,
            responseTimeoutS=6,
            handler="my_handler.Handle",
            signature=SIGNATURE,
        )
    )
    document = desired_document(spec, [], failures={}, previous_document=None)
    written = set(document["models"][0])
    assert written == set(contract.DesiredModelEntry.__annotations__)
    assert set(contract.DESIRED_INT_FIELDS) <= written

    parsed = parse_desired_state(json.loads(json.dumps(document)))

    signature = parsed.models[0].signature
    assert signature is not None
    assert [(t.name, t.datatype, list(t.shape)) for t in signature.inputs] == [("pixels", "FP32", [-1, 3, 8, 8])]
    assert [(t.name, t.datatype, list(t.shape)) for t in signature.outputs] == [("scores", "FP32", [-1, 10])]
    assert parsed.models == (
        DesiredModel(
            name="tiny",
            versions=(DesiredVersion("tiny.pt#version=1.0", "1.0"), DesiredVersion("tiny2.pt", "2.0")),
            default_version="2.0",
            min_workers=2,
            max_workers=3,
            batch_size=4,
            max_batch_delay_ms=5,
            response_timeout_s=6,
            handler="my_handler.Handle",
            signature=signature,
        ),
    )


def test_the_server_has_every_flag_the_operator_passes() -> None:
    spec = operator_spec.parse_spec(_body(name="tiny", versions=[{"version": "1.0", "url": "tiny.pt"}]))
    passed = {arg.removeprefix("--").partition("=")[0] for arg in children.server_args(spec)}
    flags = {flag.name for flag in cli.FLAGS}
    assert passed <= flags, passed - flags
    assert children.POD_UID_ENV.removeprefix("MODELFLEET_").lower().replace("_", "-") in flags
