"""The mock's ``/_mock/`` admin endpoints: read what the server recorded, reset it, change its
limits (and latency) at run time. They need no signature and are not counted."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from .config import MockApi, initial_settings
from .responses import error_response

if TYPE_CHECKING:
    from .server import MockChimeServer

__all__ = ["handle_admin"]

_Handler = Callable[["MockChimeServer", web.BaseRequest], Awaitable[web.Response]]


async def handle_admin(
    server: MockChimeServer, request: web.BaseRequest, raw_path: str
) -> web.Response:
    path = raw_path.partition("?")[0]
    route = _ROUTES.get(path)
    if route is None:
        return _admin_error(404, "no such admin endpoint")
    method, handler = route
    if request.method != method:
        return _admin_error(405, f"{path} takes {method}")
    return await handler(server, request)


async def _state(server: MockChimeServer, request: web.BaseRequest) -> web.Response:
    return web.json_response(server.state())


async def _applied(server: MockChimeServer, request: web.BaseRequest) -> web.Response:
    applied: Mapping[tuple[str, str], Any] = (
        server.attributes if server.config.api is MockApi.COGNITO else server.applied
    )
    return web.json_response(
        [
            [account_id, user_id, settings, server.apply_counts[(account_id, user_id)]]
            for (account_id, user_id), settings in applied.items()
        ]
    )


async def _user(server: MockChimeServer, request: web.BaseRequest) -> web.Response:
    query = request.rel_url.query
    account_id, user_id = query.get("account_id"), query.get("user_id")
    if account_id is None or user_id is None:
        return _admin_error(400, "/_mock/user needs ?account_id=...&user_id=...")
    key = (account_id, user_id)
    return web.json_response(
        {
            "account_id": account_id,
            "user_id": user_id,
            "settings": server.settings(account_id, user_id),
            "initial": initial_settings(account_id, user_id),
            "writes": server.apply_counts.get(key, 0),
            "reads": server.read_counts.get(key, 0),
        }
    )


async def _events(server: MockChimeServer, request: web.BaseRequest) -> web.Response:
    # Seconds since the timeline's second 0, so they line up with /_mock/state.
    t0 = server.timeline_start
    return web.json_response(
        {
            "recording": server.config.record_events,
            "events": [
                [e.arrived - t0, e.responded - t0, e.account_id, e.user_id, e.status]
                for e in server.events
            ],
        }
    )


async def _reset(server: MockChimeServer, request: web.BaseRequest) -> web.Response:
    server.reset()
    return web.json_response(server.state())


async def _limits(server: MockChimeServer, request: web.BaseRequest) -> web.Response:
    try:
        changes = json.loads(await request.read())
    except ValueError:
        return _admin_error(400, "the body is not JSON")
    keys = inspect.signature(server.set_limits).parameters  # what it takes, named once there
    if not isinstance(changes, dict) or not set(changes) <= keys.keys():
        return _admin_error(400, "the body must be an object with keys among " + ", ".join(keys))
    try:
        server.set_limits(**changes)
    except ValueError as exc:
        return _admin_error(400, str(exc))
    return web.json_response(server.state()["limits"])


_ROUTES: Final[Mapping[str, tuple[str, _Handler]]] = {
    "/_mock/state": ("GET", _state),
    "/_mock/applied": ("GET", _applied),
    "/_mock/user": ("GET", _user),
    "/_mock/events": ("GET", _events),
    "/_mock/reset": ("POST", _reset),
    "/_mock/limits": ("POST", _limits),
}


def _admin_error(status: int, message: str) -> web.Response:
    code = {400: "BadRequestException", 405: "MethodNotAllowedException"}.get(
        status, "NotFoundException"
    )
    return error_response(status, code, message)
