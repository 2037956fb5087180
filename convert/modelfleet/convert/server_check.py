"""Vet a converted file or archive with the server's own loader, so what the server would refuse fails here.

Called by the pipeline. Imports modelfleet.server's public loading seam only (ModelLoader and its
settings/values); the server vets TorchScript and torch.export files against its operator allow-list
before loading, so a model that uses a refused operator is caught before it is deployed. Loading
runs no code from the file: that is the server's guarantee, reused here.
"""

from __future__ import annotations

from pathlib import Path

from .errors import FAILED, ConvertError

CHECK_HANDLER = "default"
"""Registered with this handler for the check: the model file is what is vetted, whatever handler serves it."""


def vet(path: Path, *, load: bool = True) -> str:
    """What the server's loader made of `path` (format, name, version); ConvertError when it refuses it."""
    from modelfleet.server.errors import ModelFleetError
    from modelfleet.server.models.contracts import RegisterSpec, ResolvedSource
    from modelfleet.server.models.loading import ModelLoader
    from modelfleet.server.settings import ModelSettings

    loader = ModelLoader(ModelSettings())
    source = ResolvedSource(url=path.as_uri(), path=path)
    spec = RegisterSpec(url=path.as_uri(), handler=CHECK_HANDLER)
    try:
        identity = loader.identify(source, spec)
        if load:
            loader.load(source, spec, identity)
    except ModelFleetError as exc:
        raise ConvertError(f"ModelFleet's loader refuses it: {exc.message}", status=FAILED) from None
    return f"{identity.serialized_format} model {identity.name!r} version {identity.version!r}"
