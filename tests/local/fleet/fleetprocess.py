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
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            ips = [(p.get("status") or {}).get("podIP") for p in fleet.client.list(pods, "default")]
            if len(ips) == count and all(ips):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise SystemExit(f"pods got no addresses within 60 s: {ips}")
            await asyncio.sleep(0.05)
        print(json.dumps({"pods": ips}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
