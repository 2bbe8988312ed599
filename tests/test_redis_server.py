"""The test Redis itself: a real ``redis-server`` that redis-py's asyncio client talks to, runs
Lua, keeps nothing on disk, and can be killed with SIGKILL and restarted on the same port."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from async_updater.testing.redis_server import RedisServer, RedisUnavailable, redis_server_binary

RECONNECT_DEADLINE = 10.0


def client(url: str) -> Redis:
    # No retries inside the client: a test sees each failure itself.
    return Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2)


async def test_redis_asyncio_sets_and_gets_through_the_fixture(redis_url: str) -> None:
    assert redis_url.startswith("redis://127.0.0.1:") and redis_url.endswith("/0")
    r = client(redis_url)
    try:
        assert await r.set("greeting", "héllo") is True
        assert await r.get("greeting") == "héllo".encode()
        assert await r.dbsize() == 1
    finally:
        await r.aclose()


async def test_the_test_redis_listens_on_loopback_and_keeps_nothing_on_disk(
    redis_server: RedisServer,
) -> None:
    r = client(redis_server.url)
    try:
        config = await r.config_get("*")
    finally:
        await r.aclose()
    assert config["bind"] == "127.0.0.1"
    assert config["save"] == ""
    assert config["appendonly"] == "no"
    assert config["dir"] == str(redis_server.workdir)


async def test_a_lua_script_round_trips_keys_arguments_and_redis_time(redis_url: str) -> None:
    r = client(redis_url)
    # Takes ARGV[1] tokens from a counter that starts at ARGV[2]; answers what is left and the
    # server's clock, as a shared limiter's admission script will.
    take = r.register_script(
        """
        local left = redis.call('GET', KEYS[1])
        if not left then left = tonumber(ARGV[2]) else left = tonumber(left) end
        local granted = math.min(left, tonumber(ARGV[1]))
        redis.call('SET', KEYS[1], left - granted)
        local now = redis.call('TIME')
        return {granted, left - granted, now[1]}
        """
    )
    try:
        before = int(time.time())
        assert (await take(keys=["tokens"], args=[3, 5]))[:2] == [3, 2]
        granted, left, server_seconds = await take(keys=["tokens"], args=[3, 5])
        assert (granted, left) == (2, 0)
        assert before - 5 <= int(server_seconds) <= int(time.time()) + 5
        assert await r.script_exists(take.sha) == [True]  # sent once, then run by its SHA
    finally:
        await r.aclose()


async def test_kill_9_stops_redis_at_once_and_restart_brings_an_empty_one_on_the_same_port(
    redis_server: RedisServer,
) -> None:
    url, port, first_pid = redis_server.url, redis_server.port, redis_server.pid
    r = client(url)
    try:
        await r.set("k", "v")
        redis_server.kill()
        assert redis_server.process is not None
        assert redis_server.process.returncode == -signal.SIGKILL
        with pytest.raises(RedisConnectionError):
            await r.get("k")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()

        redis_server.restart()
        assert (redis_server.url, redis_server.port) == (url, port)
        assert redis_server.pid != first_pid and redis_server.starts == 2
        # The same client reconnects by itself on its next command; the first one may still
        # land on the connection the kill broke.
        deadline = time.monotonic() + RECONNECT_DEADLINE
        while True:
            try:
                value = await r.get("k")
                break
            except RedisConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.01)
        assert value is None  # a fresh Redis: nothing was persisted across the kill
    finally:
        await r.aclose()


def test_stop_ends_redis_and_frees_its_port(redis_server: RedisServer) -> None:
    redis_server.stop()
    assert not redis_server.running
    assert redis_server.process is not None and redis_server.process.returncode == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", redis_server.port), timeout=2).close()


def test_restart_of_a_running_redis_is_refused(redis_server: RedisServer) -> None:
    with pytest.raises(RuntimeError, match="still running; kill"):
        redis_server.restart()


def test_a_missing_redis_server_is_named_with_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisUnavailable) as info:
        redis_server_binary()
    assert str(info.value) == (
        "redis-server is not installed: scripts/test installs Debian's redis-server package "
        "when run as root; otherwise run `sudo apt-get install redis-server`"
    )
