"""RegisterModel numbers ≤ 0: "unset" in torchserve mode (GRPCUtils.getRegisterParam), refused in conventional.

TorchServe reads batch_size, max_batch_delay, initial_workers, response_timeout and startup_timeout
≤ 0 over gRPC as "use the default". Conventional mode keeps 0 as unset (proto3 cannot tell it from
absent) but refuses a negative batch_size, max_batch_delay or initial_workers as bad input; a
negative timeout is the default in both modes, as in TorchServe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from modelfleet.server.settings import ModelSettings

C = grpc.StatusCode
DEFAULTS = ModelSettings()
"""The server defaults the `api` fixture runs with (only default_workers is changed: 1)."""


def defaults_of(described: dict[str, Any]) -> tuple[int, int, int, int]:
    return (
        described["minWorkers"],
        described["batchSize"],
        described["maxBatchDelay"],
        described["responseTimeout"],
    )


async def test_negative_numbers_mean_unset_in_torchserve_mode_and_are_refused_in_conventional_mode(
    api: Any, make_model: Callable[..., Any], mode: str
) -> None:
    make_model("tiny.pt")
    for field in ("batch_size", "max_batch_delay", "initial_workers"):
        call = api.register("tiny.pt", model_name=f"n_{field}", **{field: -1})
        if mode == "conventional":
            got = await api.failure(call)
            assert (got.code, got.reason) == (C.INVALID_ARGUMENT, "BAD_INPUT"), field
            assert "must not be negative" in got.details
        else:
            assert await call == f'Model "n_{field}" Version: 1.0 registered with 1 initial workers'
            (described,) = await api.describe(f"n_{field}")
            assert defaults_of(described) == (
                1, DEFAULTS.default_batch_size, DEFAULTS.default_max_batch_delay_ms,
                DEFAULTS.default_response_timeout_s,
            ), field  # fmt: skip
            assert len(await api.predict(f"n_{field}")) == 4
    expected = [] if mode == "conventional" else ["n_batch_size", "n_initial_workers", "n_max_batch_delay"]
    assert [m["modelName"] for m in (await api.list_models())["models"]] == expected


async def test_every_number_at_its_most_negative_is_the_default_in_torchserve_mode(
    api: Any, make_model: Callable[..., Any], mode: str
) -> None:
    make_model("tiny.pt")
    low = -(2**31)
    numbers = {"batch_size": low, "max_batch_delay": low, "initial_workers": low}
    timeouts = {"response_timeout": low, "startup_timeout": low}
    if mode == "conventional":
        got = await api.failure(api.register("tiny.pt", **numbers, **timeouts))
        assert (got.code, got.reason) == (C.INVALID_ARGUMENT, "BAD_INPUT")
        await api.register("tiny.pt", **timeouts)  # timeouts ≤ 0 are the default in both modes
    else:
        await api.register("tiny.pt", **numbers, **timeouts)
    (described,) = await api.describe("tiny")
    assert defaults_of(described) == (
        1,
        DEFAULTS.default_batch_size,
        DEFAULTS.default_max_batch_delay_ms,
        DEFAULTS.default_response_timeout_s,
    )
    assert described["startupTimeout"] == DEFAULTS.default_startup_timeout_s
