"""KServe custom model server for the OIP benchmark: the benchmark's TorchScript files behind kserve.Model.

Run by oip_systems.py with .venv-bench-kserve's python (KServe 0.21), as a script (flags parsed at import):
`python kserve_model.py --grpc-port P --http-port Q --model tiny=/x/tiny.pt --model mlp=/x/mlp.pt`.
One kserve.Model per file; predict() takes the raw FP32 input as numpy (InferRequest.as_numpy),
runs the module under inference_mode and answers one FP32 output `output__0` in raw bytes (KServe
answers raw because the request came raw). gRPC v2 on; per-request log lines off (the latency log
and the gRPC LoggingInterceptor's INFO line), so the measurement is not of logging. KServe has no
adaptive batching in its Python server (batching is the Go agent's job), so every call runs alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Any

# kserve.model_server parses sys.argv when it is imported (module-level argparse): our own flags
# are parsed first, then argv is replaced by KServe's flags before the import (see main()).
PARSER = argparse.ArgumentParser(description=__doc__.splitlines()[0])
PARSER.add_argument("--grpc-port", type=int, required=True)
PARSER.add_argument("--http-port", type=int, required=True, help="KServe always starts its REST server too")
PARSER.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
PARSER.add_argument("--grpc-threads", type=int, default=4, help="KServe's max_threads (its gRPC executor)")
ARGS = PARSER.parse_args()
sys.argv = [sys.argv[0], "--configure_logging", "false", "--enable_latency_logging", "false"]

import kserve  # noqa: E402
import torch  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402

OUTPUT_NAME = "output__0"
# as_numpy() gives a read-only view of the request's bytes; the model never writes its input.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


class TorchScriptModel(kserve.Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.module: Any = None

    def load(self) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in torch 2.13
            self.module = torch.jit.load(self.path, map_location="cpu").eval()
        self.ready = True
        return True

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        # Synchronous on purpose: KServe runs it inline on its event loop (no thread hand-off),
        # which is its fastest path for models this small.
        batch = torch.from_numpy(payload.inputs[0].as_numpy())
        with torch.inference_mode():
            result = self.module(batch).numpy()
        output = InferOutput(name=OUTPUT_NAME, shape=list(result.shape), datatype="FP32")
        output.set_data_from_numpy(result, binary_data=True)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[output],
            from_grpc=payload.from_grpc,
            use_binary_outputs=payload.use_binary_outputs,
        )


def main() -> None:
    args = ARGS
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for name in ("kserve", "kserve.trace", "uvicorn", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.set_num_threads(1)
    models = []
    for entry in args.model:
        name, _, path = entry.partition("=")
        model = TorchScriptModel(name, path)
        model.load()
        models.append(model)
    server = kserve.ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=1,
        enable_grpc=True,
        enable_docs_url=False,
        enable_latency_logging=False,
        max_threads=args.grpc_threads,
    )
    server.start(models)


if __name__ == "__main__":
    main()
