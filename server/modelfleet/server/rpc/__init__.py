"""The server's transport: thin gRPC servicers, auth, health, reflection and channel options."""
