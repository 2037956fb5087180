"""ModelStreamInfer (Triton's bidi stream, decoupled chunks, in-band errors) and one queue for both APIs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch

from modelfleet.protos import inference_pb2
from modelfleet.server.demo import write_torchscript
from modelfleet.server.settings import Settings

from mf_oip_harness import PACKAGES, Oip, connected, write_scripted

pb = PACKAGES["inference"]
SAMPLE = [float(i) / 16 for i in range(16)]


def tiny_request(request_id: str, model: str = "tiny", values: list[float] = SAMPLE) -> Any:
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    request.inputs.add(name="input__0", datatype="FP32", shape=[len(values)]).contents.fp32_contents.extend(values)
    return request


class CountingUp(torch.nn.Module):
    """Next token = last token + 1 (mod 50), so a generation's tokens are known without the model."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot((tokens[:, -1] + 1) % 50, 50).to(torch.float32)


def prompt(request_id: str, tokens: list[int], count: int, *, empty_final: bool = False) -> Any:
    request = pb.ModelInferRequest(model_name="counter", id=request_id)
    body = json.dumps({"tokens": tokens, "max_new_tokens": count}).encode()
    request.inputs.add(name="data", datatype="BYTES", shape=[1]).contents.bytes_contents.append(body)
    if empty_final:
        request.parameters["triton_enable_empty_final_response"].bool_param = True
    return request


async def test_each_request_is_answered_with_its_id_and_a_failure_does_not_end_the_stream(
    served: Oip, model_store: Path
) -> None:
    write_torchscript("tiny", model_store / "tiny.pt")
    await served.register("tiny.pt")
    requests = [
        tiny_request("a"),
        tiny_request("b"),
        tiny_request("lost", model="nope"),
        tiny_request("bad", values=[1.0, 2.0]),  # 2 features for a 16-feature model
        tiny_request("c"),
    ]
    call = served.oip.ModelStreamInfer(iter(requests), timeout=30)
    replies = {reply.infer_response.id: reply async for reply in call}
    assert await call.code() == grpc.StatusCode.OK
    assert sorted(replies) == ["a", "b", "bad", "c", "lost"]
    for good in ("a", "b", "c"):
        assert replies[good].error_message == ""
        response = replies[good].infer_response
        assert (response.model_name, response.model_version, list(response.outputs[0].shape)) == ("tiny", "1.0", [4])
        assert response.parameters["triton_final_response"].bool_param is True
    assert "nope" in replies["lost"].error_message
    assert replies["lost"].infer_response.model_name == "nope"
    assert "model rejected" in replies["bad"].error_message


async def test_more_requests_than_the_window_are_all_answered(served: Oip, model_store: Path) -> None:
    write_torchscript("tiny", model_store / "tiny.pt")
    await served.register("tiny.pt", batch_size=8, max_batch_delay=5)
    count = 150  # over two windows of 64
    call = served.oip.ModelStreamInfer(iter([tiny_request(str(i)) for i in range(count)]), timeout=60)
    ids = [reply.infer_response.id async for reply in call if not reply.error_message]
    assert sorted(ids, key=int) == [str(i) for i in range(count)]


async def test_a_streaming_handler_sends_each_chunk_as_its_own_response(served: Oip, model_store: Path) -> None:
    write_scripted(CountingUp(), model_store / "counter.pt")
    await served.register("counter.pt", handler="generation")
    requests = [prompt("p", [3, 4], 3), prompt("q", [10], 2, empty_final=True)]
    call = served.oip.ModelStreamInfer(iter(requests), timeout=30)
    replies = [reply async for reply in call]
    assert all(reply.error_message == "" for reply in replies)
    by_id: dict[str, list[Any]] = {}
    for reply in replies:
        by_id.setdefault(reply.infer_response.id, []).append(reply.infer_response)

    def tokens(responses: list[Any]) -> list[int]:
        return [json.loads(r.outputs[0].contents.bytes_contents[0])["token"] for r in responses if r.outputs]

    def finals(responses: list[Any]) -> list[bool]:
        return [r.parameters["triton_final_response"].bool_param for r in responses]

    assert tokens(by_id["p"]) == [5, 6, 7]
    assert finals(by_id["p"]) == [False, False, True]
    assert tokens(by_id["q"]) == [11, 12]
    assert finals(by_id["q"]) == [False, False, True]  # the opt-in empty response ends it
    assert not by_id["q"][-1].outputs
    (output,) = by_id["p"][0].outputs
    assert (output.name, output.datatype, list(output.shape)) == ("output", "BYTES", [1])

    reply = await served.oip.ModelInfer(prompt("whole", [1], 3), timeout=30)  # unary: the whole answer at once
    assert json.loads(reply.outputs[0].contents.bytes_contents[0])["tokens"] == [2, 3, 4]


async def test_bytes_inputs_for_a_non_tensor_handler_are_checked(served: Oip, model_store: Path) -> None:
    write_scripted(CountingUp(), model_store / "counter.pt")
    await served.register("counter.pt", handler="generation")
    two = pb.ModelInferRequest(model_name="counter")
    two.inputs.add(name="data", datatype="BYTES", shape=[2]).contents.bytes_contents.extend([b"[1]", b"[2]"])
    numeric = pb.ModelInferRequest(model_name="counter")
    numeric.inputs.add(name="data", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    unknown_output = prompt("x", [1], 1)
    unknown_output.outputs.add(name="logits")
    for request, said in ((two, "exactly one element"), (numeric, "FP32"), (unknown_output, "logits")):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await served.oip.ModelInfer(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert said in (raised.value.details() or "")
    raw = pb.ModelInferRequest(model_name="counter")  # raw BYTES: a 4-byte length, then the element
    raw.inputs.add(name="data", datatype="BYTES", shape=[1])
    body = b'{"tokens": [7], "max_new_tokens": 1}'
    raw.raw_input_contents.append(len(body).to_bytes(4, "little") + body)
    reply = await served.oip.ModelInfer(raw, timeout=30)
    answer = reply.raw_output_contents[0]
    assert json.loads(answer[4:])["tokens"] == [8] and int.from_bytes(answer[:4], "little") == len(answer) - 4


async def test_open_inference_and_torchserve_requests_share_one_batch(
    settings_for: Callable[..., Settings], model_store: Path
) -> None:
    settings = settings_for()
    settings = dataclasses.replace(settings, models=dataclasses.replace(settings.models, adaptive_batching=False))
    write_torchscript("tiny", model_store / "tiny.pt")
    async with connected(settings) as running:
        # A batch of 8 with a 20 s delay: it goes when it is full, so one batch means the two APIs' requests met.
        await running.register("tiny.pt", batch_size=8, max_batch_delay=20_000)
        pool = running.app.registry.get("tiny").pool
        before = pool.stats()
        torchserve = [
            running.inference.Predictions(
                inference_pb2.PredictionsRequest(model_name="tiny", input={"data": json.dumps(SAMPLE).encode()}),
                timeout=30,
            )
            for _ in range(4)
        ]
        oip = [running.oip.ModelInfer(tiny_request(str(i)), timeout=30) for i in range(4)]
        replies = await asyncio.gather(*torchserve, *oip)
        after = pool.stats()
    assert (after.batches - before.batches, after.batch_size_sum - before.batch_size_sum) == (1, 8)
    first = json.loads(replies[0].prediction)
    assert list(replies[-1].outputs[0].contents.fp32_contents) == pytest.approx(first, rel=1e-6)
