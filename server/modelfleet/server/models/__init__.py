"""The server's domain: model sources, loading, registry, workers and batching (no grpc here)."""
