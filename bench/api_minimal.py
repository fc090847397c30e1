"""The baseline of `control_plane.py --api-speed`: a minimal FastAPI app over TLS.

One route, the ARM path of a private link service, answering a fixed JSON document (the
bytes the real server answered for that GET, parsed once at start). Nothing else: no
authentication, no store, no middleware. The route is `async def` returning a dict, the
shortest FastAPI endpoint there is; FastAPI serializes it on every request, as it does
the real server's answers.

`uvicorn.run` gets the same settings as `privatelink serve` (see `UVICORN` below and
src/privatelink/cli/main.py), so the two differ only by what the real server does per
request.

    python bench/api_minimal.py --port P --certfile server.pem --keyfile key.pem \
        --path /subscriptions/.../privateLinkServices/pls --body body.json [--loop L]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: uvicorn settings shared with the real server (cli/main.py), apart from the app.
UVICORN: dict[str, Any] = {"log_level": "warning", "timeout_graceful_shutdown": 3}


def build_app(path: str, document: dict[str, Any]) -> Any:
    """The FastAPI app: GET `path` answers `document`."""
    from fastapi import FastAPI

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get(path)
    async def get() -> dict[str, Any]:
        return document

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certfile", required=True)
    parser.add_argument("--keyfile", required=True)
    parser.add_argument("--path", required=True, help="the route's path")
    parser.add_argument("--body", required=True, help="file holding the JSON document")
    parser.add_argument("--loop", default="auto", help="uvicorn's loop setting")
    parser.add_argument("--http", default="auto", help="uvicorn's http setting")
    args = parser.parse_args()
    document = json.loads(Path(args.body).read_bytes())
    uvicorn.run(
        build_app(args.path, document),
        host="127.0.0.1",
        port=args.port,
        ssl_certfile=args.certfile,
        ssl_keyfile=args.keyfile,
        loop=args.loop,
        http=args.http,
        **UVICORN,
    )


if __name__ == "__main__":
    main()
