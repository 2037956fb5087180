"""The converter reads source_vocab.pt with torch's restricted loader: plain vocabularies need nothing
more, a torchtext Vocab's own classes are allowed for that load, and a pickle naming anything else is
refused before any of it is imported or run."""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest
import torch

from modelfleet.convert.errors import ConvertError
from modelfleet.convert.vocab import vocab_to_json

EVIL_MODULE = """
from pathlib import Path

MARKER = None


class Vocab:
    def __init__(self, tokens):
        self.stoi = {token: index for index, token in enumerate(tokens)}

    def __setstate__(self, state):
        Path(MARKER).write_text("ran")
        self.__dict__.update(state)
"""


def test_a_plain_dict_vocabulary_is_read_by_the_restricted_loader(tmp_path: Path) -> None:
    path = tmp_path / "source_vocab.pt"
    torch.save({"the": 0, "movie": 1}, path)
    assert vocab_to_json(path) == {"stoi": {"the": 0, "movie": 1}, "default_index": None}


def test_a_pickle_naming_a_class_outside_torchtext_is_refused_and_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "evil_vocab.py").write_text(EVIL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "evil_vocab", raising=False)
    import evil_vocab  # type: ignore[import-not-found]

    marker = tmp_path / "marker"
    path = tmp_path / "source_vocab.pt"
    torch.save(evil_vocab.Vocab(["the", "movie"]), path)
    evil_vocab.MARKER = str(marker)

    with pytest.raises(ConvertError) as refused:
        vocab_to_json(path)
    assert "evil_vocab.Vocab" in str(refused.value) and "refused" in str(refused.value)
    assert not marker.exists()


def test_an_ordered_dict_vocabulary_needs_no_allowed_class(tmp_path: Path) -> None:
    path = tmp_path / "source_vocab.pt"
    torch.save(collections.OrderedDict([("a", 0), ("b", 1)]), path)
    assert vocab_to_json(path)["stoi"] == {"a": 0, "b": 1}
