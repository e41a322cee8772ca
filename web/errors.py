"""Error answers as JSON on both HTTP servers (the ingress and the Faust web views)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error answer is JSON, including aiohttp's own (404, 405, 413).

    Requests that aiohttp's HTTP parser refuses before any handler runs (a
    broken chunk size, say) still get its plain-text 400.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.Response(
            body=orjson.dumps({"error": exc.text or exc.reason}),
            status=exc.status,
            content_type="application/json",
            headers=headers,
        )
