"""`python -m modelfleet.server` and the `modelfleet-server` console script.

Parses flags and MODELFLEET_* variables into Settings (cli.py), configures logging and runs the
server (app.serve) until SIGTERM/SIGINT. Nothing else happens here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from modelfleet.server.cli import parse_settings


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv, os.environ)
    # Imported after parsing so --help and usage errors answer without loading torch.
    from modelfleet.server.app import serve

    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
