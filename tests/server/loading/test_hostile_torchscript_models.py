"""A TorchScript file never runs code outside the operator allow-list: hostile models are refused before
torch.jit.load reads them, whether bare, inside a .mar or a model folder, and whatever trick names the operator.

Each hostile model is a real TorchScript archive whose code/ was edited the way an attacker would; the
control test shows plain torch.jit.load really runs them (the marker file appears), so the refusals are
what keeps the server's files safe.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason

from mf_hostile_models import FORWARD_LINE, SETSTATE_LINE, VICTIM, VICTIM_GLOBAL, VICTIM_QUALNAME, Victim, rewrite


@pytest.fixture
def victim(models: Any) -> Path:
    return models.quietly(lambda: models.torchscript("victim.pt", module=Victim()))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside every allowed source: hostile models aim their files here."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def hostile_cases(marker: Path) -> dict[str, dict[str, tuple[str, str]]]:
    m = str(marker)
    setstate = VICTIM
    return {
        "from_file creates a file in __setstate__": {
            setstate: (SETSTATE_LINE, f'    self.weight = torch.from_file("{m}", True, 16)\n')
        },
        "from_file reads a secret in __setstate__ for forward to return": {
            setstate: (SETSTATE_LINE, f'    self.weight = torch.from_file("{m}", False, 4, dtype=0)\n')
        },
        "from_file in forward": {setstate: (FORWARD_LINE, f'    return torch.from_file("{m}", True, 16)\n')},
        "torch.ops alias": {setstate: (SETSTATE_LINE, f'    self.weight = ops.aten.from_file("{m}", True, 16)\n')},
        "getattr on torch": {
            setstate: (SETSTATE_LINE, f'    self.weight = getattr(torch, "from_file")("{m}", True, 16)\n')
        },
        "computed getattr": {
            setstate: (SETSTATE_LINE, f'    self.weight = getattr(torch, self.note)("{m}", True, 16)\n')
        },
        "method-call alias on a string": {
            setstate: (SETSTATE_LINE, f'    self.weight = ("{m}").from_file(True, 16)\n')
        },
        "local alias of the operator": {
            setstate: (SETSTATE_LINE, f'    f = torch.from_file\n    self.weight = f("{m}", True, 16)\n')
        },
        "torch.save writes a file": {
            setstate: (SETSTATE_LINE, f'    self.weight = (state)[0]\n    torch.save(self.weight, "{m}")\n')
        },
        "storage view past the end": {
            setstate: (SETSTATE_LINE, "    self.weight = torch.as_strided((state)[0], [1048576], [1])\n")
        },
        "untyped storage": {setstate: (SETSTATE_LINE, "    _s = ((state)[0]).untyped_storage()\n")},
        "set_ onto another tensor's storage": {
            setstate: (SETSTATE_LINE, "    self.weight = torch.set_((state)[0], torch.zeros([1]))\n")
        },
        "custom class in code": {
            setstate: (
                SETSTATE_LINE,
                "    _p = annotate(__torch__.torch.classes.quantized.LinearPackedParamsBase, uninitialized("
                "__torch__.torch.classes.quantized.LinearPackedParamsBase))\n",
            )
        },
        "fork starts a thread": {setstate: (SETSTATE_LINE, "    _f = fork(torch.zeros, [1])\n")},
        "print floods stdout": {setstate: (SETSTATE_LINE, '    print("owned")\n')},
        "operator in a submodule method": {
            setstate: (FORWARD_LINE, "    return __torch__.evil.helper.Helper.steal(x)\n"),
            "code/__torch__/evil/helper.py": (
                "",
                textwrap.dedent(f"""\
                class Helper(Module):
                  def steal(x: Tensor) -> Tensor:
                    return torch.from_file("{m}", True, 16)
                """),
            ),
        },
        "a model method named like a refused operator": {
            setstate: (
                f"  def forward(self: __torch__.{VICTIM_QUALNAME},\n",
                f"  def from_file(self: __torch__.{VICTIM_QUALNAME}, p: str) -> Tensor:\n    return torch.zeros([1])\n"
                f"  def forward(self: __torch__.{VICTIM_QUALNAME},\n",
            ),
            f"{VICTIM}#2": (SETSTATE_LINE, f'    self.weight = self.from_file("{m}")\n'),
        },
        "lambda": {setstate: (SETSTATE_LINE, "    g = lambda: 1\n")},
        "import": {setstate: (SETSTATE_LINE, "    import os\n")},
    }


HOSTILE = sorted(hostile_cases(Path("/unused")))


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("layout", ["bare", "mar", "folder"])
def test_hostile_torchscript_is_refused_before_loading_and_leaves_no_file(
    models: Any, load: Any, victim: Path, outside: Path, case: str, layout: str
) -> None:
    marker = outside / "marker"
    marker_secret = b"management-token-0123456789abcdef"
    if "reads a secret" in case:
        marker.write_bytes(marker_secret)
    hostile = rewrite(victim, models.root / "hostile.pt", hostile_cases(marker)[case])
    source = {
        "bare": lambda: hostile,
        "mar": lambda: models.mar(
            "hostile.mar",
            {
                "MAR-INF/MANIFEST.json": models.manifest(
                    modelName="hostile", serializedFile="hostile.pt", handler="default", modelVersion="1.0"
                ),
                "hostile.pt": hostile.read_bytes(),
            },
        ),
        "folder": lambda: models.folder(
            "hostile-folder",
            {
                "MAR-INF/MANIFEST.json": models.manifest(
                    modelName="hostile", serializedFile="hostile.pt", handler="default", modelVersion="1.0"
                ),
                "hostile.pt": hostile.read_bytes(),
            },
        ),
    }[layout]()

    with pytest.raises(ModelFleetError) as caught:
        load(source)

    error = caught.value
    assert (error.kind, error.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)
    assert "cannot be loaded safely" in error.message and "__torch__." in error.message
    if "reads a secret" in case:
        assert marker.read_bytes() == marker_secret
    else:
        assert not marker.exists()
    assert sorted(os.listdir(outside)) == (["marker"] if "reads a secret" in case else [])


@pytest.mark.parametrize(
    ("case", "operator"),
    [
        ("from_file creates a file in __setstate__", "torch.from_file (aten::from_file)"),
        ("torch.ops alias", "ops.aten.from_file (aten::from_file)"),
        ("getattr on torch", "torch.from_file (aten::from_file)"),
        ("method-call alias on a string", ".from_file"),
        ("torch.save writes a file", "torch.save (aten::save)"),
        ("storage view past the end", "aten::as_strided"),
        ("custom class in code", "custom class __torch__.torch.classes.quantized"),
        ("fork starts a thread", "prim::fork"),
        ("print floods stdout", "prim::Print"),
        ("operator in a submodule method", "__torch__.evil.helper.Helper.steal uses torch.from_file"),
    ],
)
def test_the_refusal_names_the_method_and_the_operator(
    models: Any, load: Any, victim: Path, outside: Path, case: str, operator: str
) -> None:
    hostile = rewrite(victim, models.root / "hostile.pt", hostile_cases(outside / "marker")[case])
    with pytest.raises(ModelFleetError) as caught:
        load(hostile)
    assert operator in caught.value.message
    if "submodule" not in case:
        assert ".Victim." in caught.value.message


@pytest.mark.parametrize(
    "case",
    [
        "from_file creates a file in __setstate__",
        "torch.ops alias",
        "getattr on torch",
        "torch.save writes a file",
    ],
)
def test_control_plain_torch_jit_load_really_runs_the_hostile_code(
    models: Any, victim: Path, outside: Path, case: str
) -> None:
    """Without ModelFleet's check the gallery is not harmless: torch.jit.load writes the marker."""
    marker = outside / "marker"
    hostile = rewrite(victim, models.root / "hostile.pt", hostile_cases(marker)[case])
    subprocess.run(
        [sys.executable, "-W", "ignore", "-c", f"import torch; torch.jit.load({str(hostile)!r})"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert marker.exists()


def test_a_pickle_that_names_other_globals_is_refused(models: Any, load: Any, victim: Path, outside: Path) -> None:
    with zipfile.ZipFile(victim) as src:
        data_pkl = next(n for n in src.namelist() if n.endswith("/data.pkl"))
        raw = src.read(data_pkl)
    evil = raw.replace(VICTIM_GLOBAL, b"cos\nsystem\n")
    assert evil != raw
    hostile = models.root / "pickled.pt"
    with zipfile.ZipFile(victim) as src, zipfile.ZipFile(hostile, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, evil if name == data_pkl else src.read(name))
    with pytest.raises(ModelFleetError) as caught:
        load(hostile)
    assert "data.pkl refers to os.system" in caught.value.message


def test_a_custom_class_in_the_pickle_is_refused(models: Any, load: Any, victim: Path) -> None:
    with zipfile.ZipFile(victim) as src:
        data_pkl = next(n for n in src.namelist() if n.endswith("/data.pkl"))
        raw = src.read(data_pkl)
    evil = raw.replace(VICTIM_GLOBAL, b"c__torch__.torch.classes.quantized\nLinearPackedParamsBase\n")
    hostile = models.root / "custom.pt"
    with zipfile.ZipFile(victim) as src, zipfile.ZipFile(hostile, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, evil if name == data_pkl else src.read(name))
    with pytest.raises(ModelFleetError) as caught:
        load(hostile)
    assert "custom class __torch__.torch.classes.quantized.LinearPackedParamsBase" in caught.value.message


def test_the_benign_victim_itself_loads_and_answers(load: Any, victim: Path) -> None:
    """The edits above are what gets refused, not the model they start from."""
    loaded = load(victim)
    [result] = loaded.make_runner("cpu").run_batch([{"data": b"[" + b",".join([b"2.0"] * 16) + b"]"}])
    assert isinstance(result, bytes) and result.count(b"2.0") == 16


class Zeros(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.zeros(2 * 1024 * 1024)  # 8 MiB of zeros: deflates about 1,000:1

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (the name models.export() expects)
        return input + self.weight[:16]


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_a_deflated_model_file_that_inflates_past_the_ratio_limit_is_refused_before_torch_reads_it(
    models: Any, load: Any, suffix: str
) -> None:
    plain = (
        models.torchscript("zeros.pt", module=Zeros())
        if suffix == ".pt"
        else models.export("zeros.pt2", module=Zeros())
    )
    bomb = models.root / f"bomb{suffix}"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    assert bomb.stat().st_size < plain.stat().st_size // 50

    with pytest.raises(ModelFleetError) as caught:
        load(bomb)
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT
    assert "zip bomb" in caught.value.message
