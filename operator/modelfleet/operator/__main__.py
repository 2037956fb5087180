"""`python -m modelfleet.operator` / `modelfleet-operator`: flags and env → settings → lead → run kopf.

The only place that reads the process environment. Every flag also reads MODELFLEET_OPERATOR_<FLAG>
(upper snake case). The operator waits for the Lease (leader.py), then runs kopf with the handlers
of handlers.py until a signal arrives or leadership is lost (exit code 3, so the pod restarts as
a follower); on a clean stop it releases the Lease so another replica takes over at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

import kopf

from .handlers import build_registry
from .kube import Kube
from .leader import LeaseElector, default_identity
from .runtime import Runtime
from .settings import (
    FleetSettings,
    KubeSettings,
    LeaderSettings,
    OperatorSettings,
    PodClientSettings,
    ReconcileSettings,
)

log = logging.getLogger("modelfleet.operator")

EXIT_LOST_LEADERSHIP = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelfleet-operator", description="Runs ModelDeployment fleets of ModelFleet servers."
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--server", help="API server URL without credentials (e.g. the local fleet's API)")
    p.add_argument("--namespace", action="append", default=[], help="namespace to watch (repeatable; default: all)")
    p.add_argument(
        "--operator-namespace", help="namespace of the operator's pods (default: $POD_NAMESPACE or modelfleet-system)"
    )
    p.add_argument(
        "--default-server-image",
        default="",
        help="server image of ModelDeployments without spec.image (default: none, spec.image is required)",
    )
    p.add_argument("--no-leader-election", action="store_true", help="run without the Lease (one replica only!)")
    p.add_argument("--lease-name", default=LeaderSettings.lease_name)
    p.add_argument("--lease-namespace", help="namespace of the Lease (default: the operator namespace)")
    p.add_argument("--identity", default="", help="holder identity (default: hostname + random suffix)")
    p.add_argument("--lease-duration", type=float, default=LeaderSettings.lease_duration_s, help="seconds")
    p.add_argument("--renew-interval", type=float, default=LeaderSettings.renew_interval_s, help="seconds")
    p.add_argument("--renew-deadline", type=float, default=LeaderSettings.renew_deadline_s, help="seconds")
    p.add_argument("--resync-interval", type=float, default=ReconcileSettings.resync_interval_s, help="seconds")
    p.add_argument("--workers", type=int, default=ReconcileSettings.workers, help="concurrent reconciles")
    p.add_argument(
        "--call-timeout", type=float, default=PodClientSettings.call_timeout_s, help="seconds per management call"
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def parse_settings(argv: Sequence[str], environ: Mapping[str, str]) -> OperatorSettings:
    parser = _parser()
    # Environment first (MODELFLEET_OPERATOR_FLAG_NAME), flags override.
    defaults: dict[str, object] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        env = "MODELFLEET_OPERATOR_" + action.dest.upper()
        if env in environ:
            raw = environ[env]
            if isinstance(action, argparse._StoreTrueAction):
                defaults[action.dest] = raw.lower() in ("1", "true", "yes")
            elif isinstance(action, argparse._AppendAction):
                defaults[action.dest] = [v for v in raw.split(",") if v]
            else:
                defaults[action.dest] = action.type(raw) if callable(action.type) else raw
    parser.set_defaults(**defaults)
    args = parser.parse_args(list(argv))
    operator_ns = args.operator_namespace or environ.get("POD_NAMESPACE") or FleetSettings.operator_namespace
    return OperatorSettings(
        kube=KubeSettings(
            kubeconfig=args.kubeconfig, context=args.context, server=args.server, namespaces=tuple(args.namespace)
        ),
        leader=LeaderSettings(
            enabled=not args.no_leader_election,
            lease_name=args.lease_name,
            lease_namespace=args.lease_namespace or operator_ns,
            identity=args.identity or environ.get("POD_NAME", ""),
            lease_duration_s=args.lease_duration,
            renew_interval_s=args.renew_interval,
            renew_deadline_s=args.renew_deadline,
        ),
        reconcile=ReconcileSettings(resync_interval_s=args.resync_interval, workers=args.workers),
        pods=PodClientSettings(call_timeout_s=args.call_timeout),
        fleet=FleetSettings(operator_namespace=operator_ns, default_server_image=args.default_server_image.strip()),
        log_level=args.log_level,
    )


async def run(settings: OperatorSettings) -> int:
    identity = settings.leader.identity or default_identity()
    kube = Kube.from_settings(settings.kube, identity=identity)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    leader = dataclasses.replace(settings.leader, identity=identity)
    elector = LeaseElector(kube, leader) if settings.leader.enabled else None
    try:
        if elector is not None and not await elector.acquire(stop):
            return 0
        runtime = Runtime(kube, settings)
        kopf_stop = asyncio.Event()
        holding = asyncio.create_task(elector.hold(), name="lease") if elector is not None else None
        existing = asyncio.all_tasks()  # kopf treats tasks created after this as its own
        tasks = await kopf.spawn_tasks(
            registry=build_registry(runtime, kube.connection),
            settings=kopf.OperatorSettings(),
            clusterwide=not settings.kube.namespaces,
            namespaces=list(settings.kube.namespaces),
            standalone=True,
            stop_flag=kopf_stop,
        )
        # spawn_tasks installed kopf's own signal handlers; take them back so that a signal stops
        # kopf through its stop flag (kopf otherwise waits 5 s for that flag's waiter at exit).
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, kopf_stop.set)
        operator = asyncio.create_task(kopf.run_tasks(tasks, ignored=existing), name="kopf")
        done, _ = await asyncio.wait(
            [t for t in (operator, holding) if t is not None], return_when=asyncio.FIRST_COMPLETED
        )
        lost = holding is not None and holding in done and not kopf_stop.is_set()
        kopf_stop.set()
        if holding is not None:
            holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await operator
        if lost:
            return EXIT_LOST_LEADERSHIP
        return 0
    finally:
        if elector is not None:
            await elector.release()
        kube.close()


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(sys.argv[1:] if argv is None else argv, os.environ)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.log_level != "DEBUG":
        # kopf logs every handled watch event at INFO; ours only enqueue, so that is noise.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    return asyncio.run(run(settings))


if __name__ == "__main__":
    sys.exit(main())
