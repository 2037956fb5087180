"""One local fleet in its own process, for the tests that need two fleets side by side.

Usage: fleetprocess.py STATE_DIR PODS. Starts run_fleet() with the machine-wide default address
pools, creates PODS pods that declare port 7070 but do not listen yet (a server binds seconds after
its address is chosen, which is exactly the window two fleets used to collide in), prints one JSON
line {"pods": [addresses]} once every pod has its address, and stops when stdin closes.
"""

import asyncio
import json
import sys
from pathlib import Path

from modelfleet.local.fleet import run_fleet

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "support"))  # run as a script: find mf_polling
import mf_polling as polling  # noqa: E402


def _pod(index: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"quiet-{index}", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": "local/sleep:1",
                    "command": [sys.executable, "-c", "import time; time.sleep(300)"],
                    "ports": [{"containerPort": 7070}],
                }
            ],
        },
    }


async def main(state: Path, count: int) -> None:
    async with run_fleet(state, shutdown_grace_s=2) as fleet:
        pods = fleet.client.type("", "pods")
        for index in range(count):
            fleet.client.create(pods, "default", _pod(index))

        def addresses() -> list[str] | None:
            ips = [(p.get("status") or {}).get("podIP") for p in fleet.client.list(pods, "default")]
            return ips if len(ips) == count and all(ips) else None

        ips = await polling.eventually(addresses, timeout=60, what="every pod to get an address")
        print(json.dumps({"pods": ips}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
