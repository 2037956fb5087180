"""A .pt2 that would make torch.export.load run code is refused before torch reads it.

Each attack is shown to work against torch.export itself (so the test can fail if the vetting is
removed), then shown to be refused by the loader with the marker never written.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason


def rewrite(src: Path, dst: Path, change: Callable[[str, bytes], bytes], add: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        root = old.namelist()[0].split("/", 1)[0]
        for info in old.infolist():
            new.writestr(info.filename, change(info.filename, old.read(info)))
        for name, data in (add or {}).items():
            new.writestr(f"{root}/{name}", data)
    return dst


def edit_program(edit: Callable[[dict[str, Any]], None]) -> Callable[[str, bytes], bytes]:
    def change(name: str, data: bytes) -> bytes:
        if "/models/" in name and name.endswith(".json"):
            program = json.loads(data)
            edit(program)
            return json.dumps(program).encode()
        return data

    return change


TORCH_ALONE = """
import sys, warnings
warnings.simplefilter("ignore")
import torch
try:
    torch.export.load(sys.argv[1]).module()(torch.ones(2, 16))
except Exception:
    pass
"""


def torch_alone_writes(path: Path, marker: Path) -> bool:
    """Load `path` with plain torch.export in a child process: it runs the attacker's code."""
    subprocess.run([sys.executable, "-c", TORCH_ALONE, str(path)], timeout=100, capture_output=True, check=False)
    return marker.exists()


def assert_refused(load: Any, path: Path, marker: Path) -> ModelFleetError:
    with pytest.raises(ModelFleetError) as caught:
        loaded = load(path)
        loaded.make_runner("cpu").run_batch([{"data": json.dumps([1.0] * 16).encode()}])
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)
    assert not marker.exists()
    return caught.value


def test_guard_code_is_not_executed(models: Any, load: Any, tmp_path: Path) -> None:
    marker = tmp_path / "guard-marker"

    def inject(program: dict[str, Any]) -> None:
        program["guards_code"] = [f"__import__('pathlib').Path({str(marker)!r}).touch() is None"]

    evil = rewrite(models.export(), models.root / "guard.pt2", edit_program(inject))
    assert "guard" in assert_refused(load, evil, marker).message
    assert torch_alone_writes(evil, marker)


def test_shape_expression_is_not_evaluated(models: Any, load: Any, tmp_path: Path) -> None:
    marker = tmp_path / "sympy-marker"

    def change(name: str, data: bytes) -> bytes:
        if "/models/" in name:
            text = data.decode()
            start = text.index('"expr_str": "') + len('"expr_str": "')
            end = text.index('"', start)
            return (text[:start] + f"__import__('pathlib').Path('{marker}').touch()" + text[end:]).encode()
        return data

    evil = rewrite(models.export(), models.root / "sympy.pt2", change)
    assert_refused(load, evil, marker)
    assert torch_alone_writes(evil, marker)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (self.marker,))


def test_pickled_sample_inputs_are_not_unpickled(models: Any, load: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pickle-marker"
    payload = io.BytesIO()
    torch.save(((_Evil(marker),), {}), payload)

    def change(name: str, data: bytes) -> bytes:
        return payload.getvalue() if "/sample_inputs/" in name else data

    evil = rewrite(models.export(), models.root / "pickle.pt2", change)
    assert "sample inputs" in assert_refused(load, evil, marker).message
    assert torch_alone_writes(evil, marker)


def test_pickled_weights_are_refused(models: Any, load: Any, tmp_path: Path) -> None:
    def change(name: str, data: bytes) -> bytes:
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            for meta in config["config"].values():
                meta["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    evil = rewrite(models.export(), models.root / "weights.pt2", change)
    assert "pickled" in assert_refused(load, evil, tmp_path / "none").message


def test_compiled_native_code_is_refused(models: Any, load: Any, tmp_path: Path) -> None:
    evil = rewrite(
        models.export(), models.root / "aoti.pt2", lambda _n, d: d, add={"data/aotinductor/model/model.so": b"\x7fELF"}
    )
    assert "aotinductor" in assert_refused(load, evil, tmp_path / "none").message


@pytest.mark.parametrize(
    "target",
    [
        "builtins.exec",
        "_operator.attrgetter",
        "torch.ops.load_library",
        "torch.load",
        "os.system",
        # torch.ops targets go through the same operator allow-list as TorchScript:
        "torch.ops.aten.from_file.default",
        "torch.ops.aten.save.default",
        "torch.ops.aten.set_.source_Storage",
        "torch.ops.aten.as_strided.default",
        "torch.ops.c10d.broadcast_.default",
        "torch.ops.torchvision.nms.default",
    ],
)
def test_operators_outside_the_allow_list_are_refused(models: Any, load: Any, tmp_path: Path, target: str) -> None:
    def swap(program: dict[str, Any]) -> None:
        program["graph_module"]["graph"]["nodes"][0]["target"] = target

    evil = rewrite(models.export(), models.root / "op.pt2", edit_program(swap))
    assert target in assert_refused(load, evil, tmp_path / "none").message


def test_argument_names_that_are_not_identifiers_are_refused(models: Any, load: Any, tmp_path: Path) -> None:
    def rename(program: dict[str, Any]) -> None:
        program["graph_module"]["graph"]["nodes"][0]["inputs"][0]["name"] = "x=__import__('os')"

    evil = rewrite(models.export(), models.root / "name.pt2", edit_program(rename))
    assert_refused(load, evil, tmp_path / "none")


def test_a_plain_export_with_dynamic_shapes_and_guards_loads(models: Any, load: Any) -> None:
    class Guarded(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :4] * 2 + x.shape[0] // 2

    batch = torch.export.Dim("batch", min=3, max=64)
    program = models.quietly(
        lambda: torch.export.export(Guarded(), (torch.randn(5, 16),), dynamic_shapes={"x": {0: batch}})
    )
    path = models.root / "guarded.pt2"
    models.quietly(lambda: torch.export.save(program, str(path)))
    runner = load(path).make_runner("cpu")
    rows = [[float(i)] * 16 for i in range(4)]
    [result] = runner.run_batch([{"data": json.dumps(rows).encode()}])
    assert json.loads(result) == [[float(i) * 2 + 2] * 4 for i in range(4)]
