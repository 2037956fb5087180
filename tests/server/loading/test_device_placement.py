"""Runners share one module on the CPU; other devices get one moved copy each (the CUDA path, driven here
with the device string "cpu" through the same code, since no GPU is present)."""

from __future__ import annotations

import json
from typing import Any

import torch

from modelfleet.server.models.loading import DevicePlacement, ModelLoader
from modelfleet.server.settings import ModelSettings


def test_cpu_runners_share_one_module(models: Any, load: Any) -> None:
    loaded = load(models.torchscript("tiny.pt"))
    first, second = loaded.make_runner("cpu"), loaded.make_runner("cpu")
    assert first.module is second.module
    assert first.run_batch([{"data": b"[" + b",".join([b"1.0"] * 16) + b"]"}]) == second.run_batch(
        [{"data": b"[" + b",".join([b"1.0"] * 16) + b"]"}]
    )


def test_unshared_device_gets_one_moved_copy_per_device() -> None:
    module = torch.nn.Linear(4, 2)
    placement = DevicePlacement(module, shared_devices=())
    placed = placement.module_for("cpu")
    assert placed is not module and placement.module_for("cpu") is placed
    assert placement.module_for("cpu:0") is not placed
    assert placed.weight.data_ptr() != module.weight.data_ptr()
    assert torch.equal(placed.weight, module.weight) and placed.weight.device.type == "cpu"


def test_models_run_on_a_device_reached_through_the_copy_path(models: Any, load: Any) -> None:
    unshared = ModelLoader(ModelSettings(), shared_devices=())
    sample = json.dumps([0.5] * 16).encode()
    for path in (models.torchscript("tiny.pt"), models.export("tiny.pt2")):
        shared_runner = load(path).make_runner("cpu")
        loaded = load(path, loader_=unshared)
        first, second = loaded.make_runner("cpu"), loaded.make_runner("cpu")
        assert first.module is second.module
        assert first.module is not shared_runner.module
        [got] = first.run_batch([{"data": sample}])
        [want] = shared_runner.run_batch([{"data": sample}])
        assert torch.allclose(torch.tensor(json.loads(got)), torch.tensor(json.loads(want)))
