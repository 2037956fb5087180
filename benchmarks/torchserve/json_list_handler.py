"""TorchServe handler for the benchmark: JSON number list in, TorchScript model, JSON list out.

Packed into tiny.mar / mlp.mar by ts_ctl.py (torch-model-archiver) and run by TorchServe's python
workers. Per request it does what ModelFleet's default handler does for JSON (json.loads,
torch.tensor, forward under inference_mode, json.dumps of .tolist()), so the difference measured is
the serving machinery. It does not inherit BaseHandler, to keep that per-request path minimal.
TorchServe instantiates the single class of a handler module that has no module-level `handle`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch


class JsonListHandler:
    """One TorchScript model; a batch is a list of requests, each a JSON list of numbers."""

    def __init__(self) -> None:
        self.model: Any = None
        self.initialized = False

    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties.get("model_dir")
        serialized = context.manifest["model"]["serializedFile"]
        self.model = torch.jit.load(os.path.join(model_dir, serialized), map_location="cpu").eval()
        self.initialized = True

    @staticmethod
    def _payload(request: dict[str, Any]) -> Any:
        data = request.get("data")
        if data is None:
            data = request.get("body")
        if data is None:
            raise ValueError('request has no "data" or "body" entry')
        if isinstance(data, (bytes, bytearray, str)):
            data = json.loads(data)
        return data  # the frontend may already have decoded a JSON body

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        rows = [torch.tensor(self._payload(request), dtype=torch.float32) for request in data]
        with torch.inference_mode():
            if len(rows) == 1:
                outputs = [self.model(rows[0])]
            else:  # batch_size > 1: one forward pass for the whole batch
                outputs = list(self.model(torch.stack(rows)).unbind(0))
        return [json.dumps(out.tolist()).encode() for out in outputs]
