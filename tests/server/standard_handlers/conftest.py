"""Fixtures for the standard handler tests: stand-in models loaded by the real ModelLoader from .mar archives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modelfleet.server.models.contracts import LoadedModel, RegisterSpec, ResolvedSource
from modelfleet.server.models.loading import ModelLoader
from modelfleet.server.settings import ModelSettings

from mf_standard_archives import archive_files, mar

LoadStandard = Callable[..., LoadedModel]
"""(handler, stand-in model name, *, labels=True, files=None, settings=None, exported=False) -> the loaded version."""


@pytest.fixture
def load_standard(tmp_path: Path) -> LoadStandard:
    """Pack a stand-in model as a .mar naming `handler` and load it as the registry would."""

    def run(
        handler: str,
        model: str,
        *,
        labels: bool = True,
        files: dict[str, bytes] | None = None,
        settings: ModelSettings | None = None,
        exported: bool = False,
    ) -> LoadedModel:
        path = mar(
            tmp_path / f"{model}-{len(list(tmp_path.iterdir()))}.mar",
            handler=handler,
            model=model,
            files=archive_files(handler, labels=labels) if files is None else files,
            exported=exported,
        )
        loader = ModelLoader(settings or ModelSettings())
        source = ResolvedSource(url=path.name, path=path)
        spec = RegisterSpec(url=path.name)
        return loader.load(source, spec, loader.identify(source, spec))

    return run
