"""Error answers as the APIs the mock stands in for word them (restJson1 and awsJson1.1)."""

from __future__ import annotations

import json
import uuid
from typing import Final

from aiohttp import web

AMZ_JSON_11: Final = "application/x-amz-json-1.1"


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"Code": code, "Message": message}).encode(),
        headers={
            "x-amzn-RequestId": str(uuid.uuid4()),
            "x-amzn-ErrorType": code,
            "Content-Type": "application/json",
        },
    )


def json_error_response(status: int, code: str, message: str) -> web.Response:
    """An awsJson1.1 error: the code in the body's ``__type``, as Cognito answers."""
    return web.Response(
        status=status,
        body=json.dumps({"__type": code, "message": message}).encode(),
        headers={"x-amzn-RequestId": str(uuid.uuid4()), "Content-Type": AMZ_JSON_11},
    )
