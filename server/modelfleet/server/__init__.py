"""ModelFleet serving image: a TorchServe-compatible gRPC model server."""
