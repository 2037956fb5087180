"""The operator allow-list admits the models users serve and the ones this project builds, and no operator
that touches files, storage, threads or global state; it is the file its generator writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from modelfleet.server.models.operators import default_allow_list, is_registered
from modelfleet.server.models.torchscript_safety import _node_kinds

import mf_model_gallery

REPO = Path(__file__).resolve().parents[3]
GALLERY = mf_model_gallery.gallery()


@pytest.mark.parametrize("name", sorted(GALLERY))
def test_every_gallery_model_passes_the_check_loads_and_answers_like_the_original(
    models: Any, load: Any, name: str
) -> None:
    entry = GALLERY[name]
    path = models.root / f"{name}{entry.suffix}"
    entry.write(path)

    runner = load(path).make_runner("cpu")

    # Float tensor in, one tensor out: the default handler's form. (A .pt carries no sample rank, so a
    # sequence sample of the scripted encoder would read as a batch of rows; its .pt2 twin is compared.)
    comparable = name.split("-")[0] in ("demo", "resnet", "encoder", "mlp") and name != "encoder-scripted"
    if comparable:
        [reply] = runner.run_batch([{"data": json.dumps(entry.example[0].tolist()).encode()}])
        assert isinstance(reply, bytes), reply
        with torch.no_grad():
            expected = entry.module(entry.example)[0]
        assert torch.allclose(torch.tensor(json.loads(reply)), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(n for n in GALLERY if GALLERY[n].suffix == ".pt"))
def test_every_operator_in_the_gallery_graphs_is_on_the_list(models: Any, name: str) -> None:
    path = models.root / f"{name}.pt"
    GALLERY[name].write(path)
    module = mf_model_gallery.quietly(lambda: torch.jit.load(str(path)))
    kinds = {
        kind
        for sub in module.modules()
        for method in sub._c._method_names()
        for kind in _node_kinds(sub._c._get_method(method).inlined_graph.nodes())
    }
    assert "aten::linear" in kinds or "aten::conv2d" in kinds or "aten::_convolution" in kinds or len(kinds) > 5
    assert sorted(k for k in kinds if not default_allow_list().allows(k)) == []


def test_refused_operator_families_are_not_on_the_list() -> None:
    allow = default_allow_list()
    refused = [
        "aten::from_file",
        "aten::save",
        "aten::set_",
        "aten::as_strided",
        "aten::_unsafe_view",
        "aten::record_stream",
        "aten::pin_memory",
        "aten::wait",
        "aten::manual_seed",
        "aten::seed",
        "aten::resize_",
        "aten::_print",
        "prim::Print",
        "prim::fork",
        "prim::rpc_async",
        "prim::PythonOp",
        "aten::sparse_coo_tensor",
        "aten::quantize_per_tensor",
        "c10d::broadcast_",
        "profiler::_record_function_enter",
        "aten::_cufft_set_plan_cache_max_size",
        "aten::storage_offset",
    ]
    assert [op for op in refused if allow.allows(op)] == []


def test_every_listed_core_operator_exists_in_this_torch() -> None:
    """A stale entry would hide a torch upgrade that renamed an operator: regenerate and review instead."""
    structural = {
        f"prim::{k}"
        for k in (
            "Constant GetAttr SetAttr If Loop ListConstruct ListUnpack TupleConstruct TupleSlice DictConstruct "
            "DictIndex CreateObject CallMethod CallFunction isinstance Enter Exit ListIndex shape"
        ).split()
    }
    missing = [
        name
        for name in sorted(default_allow_list().names)
        if name.split("::")[0] in ("aten",) and name not in structural and not is_registered(name)
    ]
    assert missing == []


def test_extension_operators_count_only_where_their_library_is_installed() -> None:
    allow = default_allow_list()
    assert "torchvision::nms" in allow.names
    assert allow.allows("torchvision::nms") == is_registered("torchvision::nms")
    assert not allow.allows("torchvision::not_an_operator")


def test_the_committed_list_is_what_the_generator_writes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/generate-operator-allowlist.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
