"""A TorchServe 0.12 gRPC client, built only from TorchServe's own protos (compiled next to this script).

Run in a separate process by test_torchserve_client_unchanged.py: it must never import modelfleet
(the same proto names cannot be loaded twice in one process). It reads TorchServe's key_file.json
shape and does what a TorchServe user's script does; it prints one JSON object with what it saw.
"""

import json
import sys

import grpc
import inference_pb2
import inference_pb2_grpc
import management_pb2
import management_pb2_grpc
from google.protobuf import empty_pb2

inference_address, management_address, key_file = sys.argv[1:4]
with open(key_file) as keys_file:
    keys = json.load(keys_file)
inference_md = [("authorization", "Bearer " + keys["inference"]["key"])]
management_md = [("authorization", "Bearer " + keys["management"]["key"])]
sample = json.dumps([0.25] * 16).encode()
seen = {}

with grpc.insecure_channel(inference_address) as ic, grpc.insecure_channel(management_address) as mc:
    inference = inference_pb2_grpc.InferenceAPIsServiceStub(ic)
    management = management_pb2_grpc.ManagementAPIsServiceStub(mc)

    seen["register"] = management.RegisterModel(
        management_pb2.RegisterModelRequest(url="tiny.pt", model_name="tiny", initial_workers=1, synchronous=True),
        metadata=management_md,
    ).msg
    seen["ping"] = inference.Ping(empty_pb2.Empty(), metadata=inference_md).health
    request = inference_pb2.PredictionsRequest(model_name="tiny", input={"data": sample})
    seen["predict"] = json.loads(inference.Predictions(request, metadata=inference_md, timeout=30).prediction)
    seen["stream"] = [
        json.loads(r.prediction) for r in inference.StreamPredictions(request, metadata=inference_md, timeout=30)
    ]
    sequenced = inference_pb2.PredictionsRequest(model_name="tiny", input={"data": sample}, sequence_id="s1")
    seen["stream2"] = [
        json.loads(r.prediction) for r in inference.StreamPredictions2(iter([sequenced]), metadata=inference_md)
    ]
    seen["describe"] = json.loads(
        management.DescribeModel(management_pb2.DescribeModelRequest(model_name="tiny"), metadata=management_md).msg
    )
    seen["list"] = json.loads(
        management.ListModels(management_pb2.ListModelsRequest(limit=10), metadata=management_md).msg
    )
    seen["scale"] = management.ScaleWorker(
        management_pb2.ScaleWorkerRequest(model_name="tiny", min_worker=2, max_worker=2, synchronous=True),
        metadata=management_md,
    ).msg
    seen["set_default"] = management.SetDefault(
        management_pb2.SetDefaultRequest(model_name="tiny", model_version="1.0"), metadata=management_md
    ).msg
    try:
        inference.Predictions(inference_pb2.PredictionsRequest(model_name="nope"), metadata=inference_md)
    except grpc.RpcError as error:
        seen["unknown_model"] = [error.code().name, error.details()]
    try:
        inference.Ping(empty_pb2.Empty())
    except grpc.RpcError as error:
        seen["no_token"] = [error.code().name, error.details()]
    seen["unregister"] = management.UnregisterModel(
        management_pb2.UnregisterModelRequest(model_name="tiny"), metadata=management_md
    ).msg

seen["modelfleet_imported"] = sorted(name for name in sys.modules if name.startswith("modelfleet"))
seen["proto_files"] = [inference_pb2.DESCRIPTOR.name, management_pb2.DESCRIPTOR.name]
print(json.dumps(seen))
