"""`modelfleet-local` / `python -m modelfleet.local`: the README's first command.

Parses the command line into DemoSettings and runs demo.run_demo() until it finishes (with
--exit-after-demo) or until Ctrl-C/SIGTERM, then exits with its code after every process it started
has stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from pathlib import Path

from modelfleet.local.demo import DemoSettings, run_demo


def parse(argv: list[str] | None) -> tuple[DemoSettings, str]:
    parser = argparse.ArgumentParser(
        prog="modelfleet-local",
        description="Run ModelFleet on this machine: an in-memory Kubernetes API, the operator, and "
                    "server pods as local processes on 127.0.0.N.")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="pod folders, logs, model store and kubeconfig (default: a new temporary folder)")
    parser.add_argument("--port", type=int, default=0, help="port of the local Kubernetes API (0: any free one)")
    parser.add_argument("--replicas", type=int, default=None, help="server pods of the example (default 2)")
    parser.add_argument("--example", type=Path, default=None, help="a ModelDeployment YAML to apply instead")
    parser.add_argument("--crd", type=Path, default=None, help="the ModelDeployment CRD file")
    parser.add_argument("--probe-period-scale", type=float, default=1.0,
                        help="multiply probe periods and restart back-off (e.g. 0.25 for faster tests)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the fleet to be Ready")
    parser.add_argument("--exit-after-demo", action="store_true", help="stop everything after the prediction")
    parser.add_argument("--log-level", default="WARNING", help="log level of the local cluster components")
    args = parser.parse_args(argv)
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="modelfleet-local-"))
    return DemoSettings(state_dir=state.resolve(), api_port=args.port, replicas=args.replicas, example=args.example,
                        crd=args.crd, probe_period_scale=args.probe_period_scale, timeout_s=args.timeout,
                        exit_after_demo=args.exit_after_demo), args.log_level


async def _run(settings: DemoSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run_demo(settings, stop=stop, out=lambda line: print(line, flush=True))


def main(argv: list[str] | None = None) -> int:
    settings, level = parse(argv)
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_run(settings))


if __name__ == "__main__":
    sys.exit(main())
