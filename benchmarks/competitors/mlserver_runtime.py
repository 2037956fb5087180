"""MLServer custom runtime for the OIP benchmark: the benchmark's TorchScript file, run as is.

Loaded by MLServer 1.7 (in .venv-bench-mlserver) from a model-settings.json that oip_systems.py
writes per model (`implementation: mlserver_runtime.TorchScriptRuntime`, `parameters.uri` = the
.pt file, adaptive batching settings). predict() decodes the one FP32 input with MLServer's own
NumpyCodec, runs the module under inference_mode and returns one FP32 output `output__0`; MLServer
answers raw (raw_output_contents) because the request came raw. Never imported by ModelFleet.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

OUTPUT_NAME = "output__0"


class TorchScriptRuntime(MLModel):
    """One TorchScript module per model; intra-op threads 1 (one request batch per worker at a time)."""

    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        torch.set_num_threads(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in torch 2.13
            self._module: Any = torch.jit.load(uri, map_location="cpu").eval()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        batch = torch.from_numpy(NumpyCodec.decode_input(payload.inputs[0]))
        with torch.inference_mode():
            result = self._module(batch).numpy()
        return InferenceResponse(
            model_name=self.name, id=payload.id, outputs=[NumpyCodec.encode_output(OUTPUT_NAME, result)]
        )
