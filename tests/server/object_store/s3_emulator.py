"""moto's S3 API on 127.0.0.1:<ephemeral port>, with one log line per request, for the object-store tests.

Run as a subprocess by conftest.py: `python s3_emulator.py LOG_FILE`. Prints the port on stdout once
it listens, then serves until terminated. Each request is logged (method, Host, path, query) BEFORE
moto answers it, so a test can prove that a request was never made. Also answers proxy-form
requests (`GET http://bucket.localhost:port/key`), which is how the tests reach virtual-host URLs
without DNS.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


def main() -> None:
    app = DomainDispatcherApplication(create_backend_app)
    log = open(sys.argv[1], "a", buffering=1)  # noqa: SIM115 (open for the process's lifetime)

    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        log.write(
            f"{environ['REQUEST_METHOD']} {environ.get('HTTP_HOST', '')} {environ.get('PATH_INFO', '')} {query}\n"
        )
        return app(environ, start_response)  # type: ignore[no-any-return]

    server = make_server("127.0.0.1", 0, logged, threaded=True, request_handler=MotoRequestHandler)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
