"""The web dashboard: a small static bundle served by the node under /ui on its RPC port.

The page talks to the node exactly as any client does: JSON-RPC over HTTP POST to `/` and
WebSocket subscriptions (`chain_subscribeNewHeads`, `chain_subscribeFinalizedHeads`) for live
updates. No CDN, no build step: three files in `static/`. docs/dashboard.md describes the pages.
"""
from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "app.css": "text/css; charset=utf-8"}
# the page may only load its own files and talk to its own origin (RPC over HTTP and WebSocket)
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _asset(name: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=_TYPES[name],
                    headers={"cache-control": "no-cache", "content-security-policy": _CSP,
                             "x-content-type-options": "nosniff"})


def ui_routes() -> list[BaseRoute]:
    """GET /ui (the page), /ui/app.js and /ui/app.css."""

    async def page(request: Request) -> Response:
        return _asset("index.html")

    async def redirect(request: Request) -> Response:
        return RedirectResponse("/ui/")

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _TYPES:
            return Response("not found", status_code=404, media_type="text/plain")
        return _asset(name)

    return [Route("/ui", redirect, methods=["GET"]), Route("/ui/", page, methods=["GET"]),
            Route("/ui/{name}", asset, methods=["GET"])]
