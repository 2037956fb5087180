"""`modelfleet-local` / `python -m modelfleet.local`: the README's first command.

Parses the command line into DemoSettings and runs demo.run_demo() until it finishes (with
--exit-after-demo) or until Ctrl-C/SIGTERM, then exits with its code after every process it started
has stopped. The state folder (pod folders, logs, model store, kubeconfig) is removed at exit when
this run created it, unless --keep-state, or the run failed (its logs are the evidence); a folder
that existed before is never removed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modelfleet.local.demo import DemoSettings, run_demo


@dataclass(frozen=True)
class StatePolicy:
    """What happens to the state folder at exit."""

    remove: bool
    """Remove it on a successful exit: this run created it and --keep-state was not given."""
    why_kept: str = ""
    """Printed when it is kept."""


def parse(argv: list[str] | None) -> tuple[DemoSettings, StatePolicy, str]:
    parser = argparse.ArgumentParser(
        prog="modelfleet-local",
        description="Run ModelFleet on this machine: an in-memory Kubernetes API, the operator, and "
        "server pods as local processes on 127.0.0.N; applies examples/cpu.yaml in the "
        "namespace ml-serving.",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="pod folders, logs, model store and kubeconfig (default: a new temporary folder); "
        "removed at exit if this run created it, unless --keep-state",
    )
    parser.add_argument("--keep-state", action="store_true", help="keep the state folder at exit")
    parser.add_argument("--port", type=int, default=0, help="port of the local Kubernetes API (0: any free one)")
    parser.add_argument(
        "--no-demo",
        action="store_true",
        help="apply no ModelDeployment: start the fleet (namespace ml-serving, model claim, "
        "operator) and wait for yours",
    )
    parser.add_argument("--replicas", type=int, default=None, help="server pods of the example (default: its own, 2)")
    parser.add_argument(
        "--example", type=Path, default=None, help="the ModelDeployment YAML to apply (default: examples/cpu.yaml)"
    )
    parser.add_argument("--crd", type=Path, default=None, help="the ModelDeployment CRD file")
    parser.add_argument(
        "--probe-period-scale",
        type=float,
        default=1.0,
        help="multiply probe periods and restart back-off (e.g. 0.25 for faster tests)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the fleet to be Ready")
    parser.add_argument(
        "--exit-after-demo",
        action="store_true",
        help="stop everything after the prediction (with --no-demo: once the fleet is up)",
    )
    parser.add_argument("--log-level", default="WARNING", help="log level of the local cluster components")
    args = parser.parse_args(argv)
    if args.state_dir is None:
        state, created = Path(tempfile.mkdtemp(prefix="modelfleet-local-")), True
    else:
        state, created = args.state_dir, not args.state_dir.exists()
    if args.keep_state:
        policy = StatePolicy(remove=False, why_kept="--keep-state")
    elif not created:
        policy = StatePolicy(remove=False, why_kept="it existed before this run")
    else:
        policy = StatePolicy(remove=True)
    settings = DemoSettings(
        state_dir=state.resolve(),
        api_port=args.port,
        replicas=args.replicas,
        example=args.example,
        demo=not args.no_demo,
        crd=args.crd,
        probe_period_scale=args.probe_period_scale,
        timeout_s=args.timeout,
        exit_after_demo=args.exit_after_demo,
    )
    return settings, policy, args.log_level


async def _run(settings: DemoSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run_demo(settings, stop=stop, out=lambda line: print(line, flush=True))


def main(argv: list[str] | None = None) -> int:
    settings, policy, level = parse(argv)
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = settings.state_dir
    print(
        f"state folder: {state} "
        + ("(removed at exit; --keep-state keeps it)" if policy.remove else f"(kept at exit: {policy.why_kept})"),
        flush=True,
    )
    code = 1
    try:
        code = asyncio.run(_run(settings))
    finally:
        if policy.remove and code == 0:
            shutil.rmtree(state, ignore_errors=True)
            print(f"removed the state folder {state}", flush=True)
        else:
            print(
                f"state folder kept: {state}" + ("" if code == 0 else " (this run failed: its logs are there)"),
                flush=True,
            )
    return code


if __name__ == "__main__":
    sys.exit(main())
