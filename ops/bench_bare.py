"""The ceiling the ingress is compared with: aiohttp on uvloop that parses a tap and answers 202.

Same framework, event loop, JSON library, route and response shape as
web.ingress, but no validation and no Kafka: whatever the ingress loses
against this endpoint, measured in the same run on the same machine, is the
cost of validating and of waiting for the broker's acknowledgement.

    python -m ops.bench_bare --port 18081
"""

from __future__ import annotations

import argparse
import uuid

import orjson
from aiohttp import web


async def post_attendance(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    if not isinstance(body, dict):
        return web.Response(status=400)
    return web.Response(
        body=orjson.dumps({"id": uuid.uuid4().hex}), status=202, content_type="application/json"
    )


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/attendances", post_attendance)
    app.router.add_get("/health", health)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench_bare", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.install()
    web.run_app(build_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
