"""TorchServe 0.12's test_gRPC_management_apis (postman management_data.json), ported, stricter.

The same calls in the same order on one server, with the zoo's squeezenet1_1.mar / resnet-18.mar /
resnet-152-batch.mar being copies of the converted densenet-shaped archive. Upstream only checks the
status code of calls that fail (and silently passes calls that fail where it expects success, or
succeed where it expects a failure); here every step states its outcome: the code, and the message
TorchServe 0.12 answers over gRPC. Steps the upstream test skips (non-integer parameters the
protobuf message refuses, fields the request does not have) are left out, and so are the mnist
steps whose outcome needs TorchServe to run an archive's handler code (docs/torchserve-suite.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from modelfleet.protos import management_pb2

OK = grpc.StatusCode.OK
STEPS: list[tuple[str, dict[str, Any], grpc.StatusCode, str]] = [
    # (RPC, request fields, code, message: the reply's msg, or the error's details; "" = not compared)
    ("RegisterModel", {"url": "squeezenet1_1.mar", "model_name": "squeezenet1_1"}, OK,
     "Processing worker updates..."),  # initial_workers 0 = the default count; not synchronous
    ("RegisterModel", {"url": "densenet161.mar", "model_name": "densenet161"}, OK, ""),
    ("RegisterModel", {"url": "{mar_files}densenet161.mar", "model_name": "densenet161"}, grpc.StatusCode.INTERNAL,
     "Model file already exists densenet161.mar"),
    ("UnregisterModel", {"model_name": "densenet161"}, OK, 'Model "densenet161" unregistered'),
    ("RegisterModel", {}, grpc.StatusCode.INVALID_ARGUMENT, "Parameter url is required."),
    ("DescribeModel", {"model_name": "squeezenet1_1", "model_version": "all"}, OK, ""),
    ("DescribeModel", {"model_name": "squeezenet1_1", "model_version": "1.0"}, OK, ""),
    ("DescribeModel", {"model_name": "squeezenet1_1"}, OK, ""),
    ("UnregisterModel", {"model_name": "squeezenet1_1"}, OK, 'Model "squeezenet1_1" unregistered'),
    ("RegisterModel", {"url": "squeezenet1_1.mar", "model_name": "squeezenet1_1", "runtime": "python4"},
     grpc.StatusCode.INVALID_ARGUMENT, ""),
    ("ListModels", {}, OK, ""),
    ("RegisterModel", {"url": "squeezenet1_1.mar", "model_name": "squeezenet1_1"}, OK, ""),
    ("ScaleWorker", {"model_name": "squeezenet1_1", "min_worker": 1}, OK, "Processing worker updates..."),
    ("ScaleWorker", {"model_name": "squeezenet1_1", "min_worker": 1, "synchronous": True}, OK, ""),
    ("ScaleWorker", {"model_name": "squeezenet1_1", "model_version": "1.0", "min_worker": 1, "synchronous": True},
     OK, ""),
    ("ScaleWorker", {"model_name": "squeezenet1_1", "model_version": "0.0", "min_worker": 1, "synchronous": True},
     grpc.StatusCode.NOT_FOUND, "Model version not found: squeezenet1_1 version 0.0"),
    ("ScaleWorker", {"model_name": "squeezenet1_1", "min_worker": 1, "number_gpu": 1}, OK, ""),
    # "models/squeezenet1_1/1.0/set-default": the upstream parser sends no version for a 4-part path.
    ("SetDefault", {"model_name": "squeezenet1_1"}, grpc.StatusCode.NOT_FOUND,
     "Model version  does not exist for model squeezenet1_1"),
    ("SetDefault", {"model_name": "squeezenet1_1", "model_version": "1.0"}, OK,
     'Default version successfully updated for model "squeezenet1_1" to "1.0"'),
    ("SetDefault", {"model_name": "squeezenet1_1", "model_version": "0.0"}, grpc.StatusCode.NOT_FOUND, ""),
    ("SetDefault", {"model_name": "squeezenet0_1", "model_version": "1.0"}, grpc.StatusCode.NOT_FOUND,
     "Model not found: squeezenet0_1"),
    ("UnregisterModel", {"model_name": "squeezenet1_1"}, OK, ""),
    # TorchServe's GRPCUtils.getRegisterParam: batch_size / initial_workers / startup_timeout <= 0 mean unset.
    ("RegisterModel", {"url": "squeezenet1_1.mar", "model_name": "squeezenet1_1", "batch_size": 3,
                       "initial_workers": 3, "startup_timeout": 0}, OK, ""),
    ("UnregisterModel", {"model_name": "squeezenet1_1"}, OK, ""),
    ("RegisterModel", {"url": "squeezenet1_1.mar", "model_name": "squeezenet1_1", "initial_workers": -1}, OK, ""),
    ("UnregisterModel", {"model_name": "squeezenet1_1"}, OK, ""),
    ("RegisterModel", {"url": "resnet-152-batch.mar", "model_name": "resnet152", "batch_size": 2}, OK, ""),
    ("UnregisterModel", {"model_name": "resnet152"}, OK, ""),
    ("RegisterModel", {"url": "resnet-18.mar", "model_name": "resnet-18", "synchronous": True}, OK,
     'Model "resnet-18" Version: 1.0 registered with 1 initial workers'),
    ("UnregisterModel", {"model_name": "resnet-18"}, OK, ""),
    ("RegisterModel", {"url": "resnet-18.mar", "model_name": "resnet-18", "synchronous": False}, OK, ""),
    ("ListModels", {"limit": 1}, OK, ""),
    ("ListModels", {"limit": -1}, OK, ""),
    ("ListModels", {"limit": 1, "next_page_token": 1}, OK, ""),
    ("ListModels", {"limit": 1, "next_page_token": -1}, OK, ""),
    ("ScaleWorker", {"model_name": "resnet-18", "number_gpu": 10}, OK, ""),
    ("ScaleWorker", {"model_name": "resnet-18", "min_worker": 1, "max_worker": 1, "synchronous": True}, OK, ""),
    ("ScaleWorker", {"model_name": "resnet-18", "timeout": -1}, OK, ""),
    ("RegisterModel", {"url": "", "model_name": "resnet-18"}, grpc.StatusCode.INVALID_ARGUMENT,
     "Parameter url is required."),
    ("DescribeModel", {"model_name": "squeezenet1_1", "model_version": "0.0"}, grpc.StatusCode.NOT_FOUND,
     "Model not found: squeezenet1_1"),
    ("ListModels", {"next_page_token": 12}, OK, ""),
    ("ScaleWorker", {"model_name": "resnet181", "min_worker": 1}, grpc.StatusCode.NOT_FOUND,
     "Model not found: resnet181"),
    ("ScaleWorker", {"model_name": "resnet-18", "min_worker": 2, "max_worker": 1}, grpc.StatusCode.INVALID_ARGUMENT,
     "max_worker cannot be less than min_worker."),
    # Over gRPC min_worker <= 0 means 1 and max_worker <= 0 means min_worker (getRegisterParam), so these
    # succeed on TorchServe too; the postman codes 13 / 3 are its HTTP API's.
    ("ScaleWorker", {"model_name": "resnet-18", "min_worker": -1}, OK, ""),
    ("ScaleWorker", {"model_name": "resnet-18", "max_worker": -1}, OK, ""),
    ("SetDefault", {"model_name": "invalid_squeezenet1_1", "model_version": "1.0"}, grpc.StatusCode.NOT_FOUND,
     "Model not found: invalid_squeezenet1_1"),
    ("UnregisterModel", {"model_name": "resnet-18"}, OK, ""),
    ("UnregisterModel", {"model_name": "squeezenet1_1", "model_version": "0.0"}, grpc.StatusCode.NOT_FOUND,
     "Model not found: squeezenet1_1"),
    ("RegisterModel", {"url": "squeezenet1_1.mar", "model_name": "squeezenet1_1"}, OK, ""),
    ("UnregisterModel", {"model_name": "squeezenet1_1"}, OK, ""),
    ("UnregisterModel", {"model_name": "invalid_squeezenet1_1"}, grpc.StatusCode.NOT_FOUND,
     "Model not found: invalid_squeezenet1_1"),
]  # fmt: skip


async def test_management_data_steps_answer_with_torchserves_codes_and_messages_in_order(
    torchserve_like: Callable[..., Any], mar_files_url: str
) -> None:
    outcomes = []
    async with torchserve_like(allowed=(mar_files_url.replace(".", r"\.") + ".*",)) as suite:
        for rpc, fields, _, _ in STEPS:
            request = {k: v.format(mar_files=mar_files_url) if isinstance(v, str) else v for k, v in fields.items()}
            try:
                reply = await getattr(suite.management, rpc)(
                    getattr(management_pb2, f"{rpc}Request")(**request), timeout=120
                )
                outcomes.append((OK, reply.msg))
            except grpc.aio.AioRpcError as error:
                outcomes.append((error.code(), error.details()))
    for (rpc, fields, code, message), (got_code, got_message) in zip(STEPS, outcomes, strict=True):
        assert (rpc, fields, got_code) == (rpc, fields, code), got_message
        if message:
            assert (rpc, fields, got_message) == (rpc, fields, message)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("{mar_files}resnet-18.mar", "Given URL {mar_files}resnet-18.mar does not match any allowed URL(s)"),
        ("{mar_files}../mar_files/densenet161.mar",
         "Relative path is not allowed in url: {mar_files}../mar_files/densenet161.mar"),
    ],
)  # fmt: skip
async def test_allowed_urls_admit_densenet161_only_and_refuse_others_in_torchserves_words(
    torchserve_like: Callable[..., Any], mar_files_url: str, url: str, message: str
) -> None:
    """test_gRPC_allowed_urls: allowed_urls names one archive's URL."""
    allowed = (mar_files_url.replace(".", r"\.") + r"densenet161\.mar",)
    async with torchserve_like(allowed=allowed, gen_mar=False) as suite:
        ok = await suite.management.RegisterModel(
            management_pb2.RegisterModelRequest(
                url=mar_files_url + "densenet161.mar", initial_workers=1, synchronous=True, model_name="densenet161-url"
            ),
            timeout=120,
        )
        assert ok.msg == 'Model "densenet161-url" Version: 1.0 registered with 1 initial workers'
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await suite.management.RegisterModel(
                management_pb2.RegisterModelRequest(
                    url=url.format(mar_files=mar_files_url), initial_workers=1, synchronous=True, model_name="other"
                ),
                timeout=60,
            )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert refused.value.details() == message.format(mar_files=mar_files_url)
