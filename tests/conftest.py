"""Shared fixtures: a real Redis, and aioresponses on the aiohttp in use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from async_updater.testing.redis_server import RedisServer, RedisUnavailable, redis_server_binary

# Nothing in the suite may reach real AWS or an instance metadata service.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


# -- a real Redis ---------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started, empty ``redis-server`` on a free 127.0.0.1 port (``.url``), stopped after the
    test. ``.kill()`` is ``kill -9``; ``.restart()`` brings it back, empty, on the same port.
    Skips when redis-server is not installed, except under CI, where that fails."""
    try:
        binary = redis_server_binary()
    except RedisUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI must run the Redis tests)")
        pytest.skip(str(exc))
    with RedisServer(tmp_path / "redis", binary=binary) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL (``redis://127.0.0.1:PORT/0``) of the test's own ``redis_server``."""
    return redis_server.url


# -- aioresponses on aiohttp >= 3.14 ---------------------------------------------------------
# aiohttp 3.14 (a security release) added a required ``stream_writer`` argument to
# ClientResponse; aioresponses 0.7.x does not pass it yet (pnuckowski/aioresponses#289).
# Until it does, responses are built through this subclass, which supplies a stand-in writer.
from typing import Any  # noqa: E402

from aiohttp import ClientResponse  # noqa: E402
from aioresponses import aioresponses as _aioresponses  # noqa: E402


class _FinishedUpload:
    output_size = 0


class CompatClientResponse(ClientResponse):
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _FinishedUpload())
        super().__init__(method, url, **kwargs)


class aioresponses(_aioresponses):
    def add(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("response_class") is None:
            kwargs["response_class"] = CompatClientResponse
        super().add(*args, **kwargs)
