"""A tiny pod program for the local fleet tests (run by the kubelet from a pod template's command).

Serves grpc.health.v1 on --health (service "" follows --not-ready-if; "live" follows --dead-if: a
file that exists flips it to NOT_SERVING), answers "<HOSTNAME> <pod ip>\n" to every TCP connection
on --whoami, writes its argv/env/cwd as JSON to --dump, exits with code 3 after --exit-after seconds,
and exits 0 on SIGTERM.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--health")
    parser.add_argument("--whoami")
    parser.add_argument("--not-ready-if")
    parser.add_argument("--dead-if")
    parser.add_argument("--dump")
    parser.add_argument("--exit-after", type=float)
    args, _ = parser.parse_known_args()
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump({"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd()}, f)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = None
    if args.health:
        servicer = health.HealthServicer()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        server.add_insecure_port(args.health)
        server.start()

        def follow() -> None:
            serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
            while not stop.is_set():
                ready = not (args.not_ready_if and os.path.exists(args.not_ready_if))
                alive = not (args.dead_if and os.path.exists(args.dead_if))
                servicer.set("", serving if ready else not_serving)
                servicer.set("live", serving if alive else not_serving)
                stop.wait(0.05)

        threading.Thread(target=follow, daemon=True).start()
    if args.whoami:
        host, port = args.whoami.rsplit(":", 1)
        listener = socket.create_server((host, int(port)))

        def answer() -> None:
            while True:
                connection, _ = listener.accept()
                with connection:
                    connection.sendall(f"{os.environ.get('HOSTNAME')} {host}\n".encode())

        threading.Thread(target=answer, daemon=True).start()
    deadline = time.monotonic() + args.exit_after if args.exit_after else None
    while not stop.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            os._exit(3)
        stop.wait(0.05)
    if server is not None:
        server.stop(0)


if __name__ == "__main__":
    main()
