"""Generated TorchServe-compatible wire contract (see protos/generate.py); shared by server and operator."""
