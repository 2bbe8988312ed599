"""One limit shared by every process that names the same Redis URL and limit scope.

- **Admission.** A token bucket in Redis (a Lua script, on Redis's own clock: ``TIME``), filled
  at the shared rate. Each process takes its tokens in small batches, about 20 ms of its own
  sending, so Redis is on the path of one request in a batch, not of every one.
- **Cool-downs.** A process told to wait (``Retry-After``) writes the pause into the bucket, which
  grants nothing until it ends, and publishes it: every process pauses on the message. The
  bucket keeps the latest end (each process reads it on its own reading of Redis's clock).
- **The rate.** One process per scope leads (a key it holds with a time-to-live and renews). Its
  rate controller decides the rate for all: one cut per round trip for the whole fleet, one
  recovery. Its own answers are only its share of the traffic, so it measures the limit from
  the whole fleet's: their tallies in Redis per 200 ms slot of the requests' send time, read
  once every process has told its answers to the slot's requests (a slot measures the limit
  only if throttled all through at one rate; answers to requests sent before the rate was
  last cut do not count); where every 429 pauses everyone, the share of the fleet's answers
  accepted among those to requests sent since the pause's first throttle (each process
  counts its own and tells the count before the pause ends), and how long the refilled
  bucket lasted at the shared rate between pauses (a pause message says when the throttled
  request was sent, and at what rate). Tallies come up to ``TALLY_LAG`` late: the controller
  waits that long before it takes quiet for a rate held. In slow start it doubles on rounds
  the fleet used (tokens taken from the bucket) with no throttle signalled; a follower
  signals its throttles as it reads them. The others follow the bucket.
- **Losing Redis loses nothing.** Unreachable at the start: ``SharedLimitError`` (one line).
  Gone mid-run: each process goes on alone at its last known share of the rate, says so once,
  and rejoins when Redis answers again.

Needs the ``redis`` extra (``pip install 'async-updater[redis]'``): redis-py's ``redis.asyncio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import socket
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import UpdaterError
from .controller import Mode, RateController
from .estimator import Sample
from .pacer import Pacer

__all__ = ["SharedLimit", "SharedLimitError", "SharedPacer"]

BATCH_S = 0.02  # a batch of tokens covers about this much of a process's own sending
LEASE_MS = 3000  # the leader's key lives this long unless renewed
RENEW_S = 1.0  # how often the leader renews it (and the others try to take it)
RETRY_S = 1.0  # how often a process cut off from Redis tries it again
CLOSE_S = 2.0  # the longest a connection may take to close at the end
SLOT_S = 0.2  # answers of all processes are tallied per slot of this many seconds (Redis time)
OVERLOADED = 0.05  # a slot with at least this share of its answers throttled measures the limit
PUBLISH_EVERY_S = 0.05  # the leader writes a changed rate at most this often
SIGNAL_EVERY_S = 0.05  # a follower tells the leader it was throttled at most this often
# How late the fleet's answers reach the leader: the slot a request was sent in must end, its
# answer come back (a round trip, up to a slot) and ride on its process's next batch, and the
# leader reads the slot then. A slot begun after a throttle is read at most this long after
# it, the slot after it (the first whose requests were all sent after the rate was cut) a
# slot later; should a process stall, the leader reads a slot without its tallies this long
# after the slot's end.
TALLY_LAG = 4 * SLOT_S + BATCH_S
READ_AFTER_S = 0.002  # how long after a slot's end the leader reads it (a script under way)
# A process's work left, told with its batches, counts while it is no older than this next to
# the newest told (one that stopped taking has finished; in a pause all stop alike).
WORK_FRESH_S = 3.0
# Each process tells its count of a cool-down's answers this long before the pause ends (they
# are all in by then), the leader reads them all ``LEAD_READ_S`` before it ends.
TELL_EPISODE_S = 0.15
LEAD_READ_S = 0.05
_STEP = 0.005  # a rate change under 0.5% is not worth a write

# The bucket: tokens refill at ``rate`` up to ``burst_s`` of it (at least one); nothing is
# granted before ``paused_until``. Times are Redis's, in microseconds. Each call also tallies
# the caller's answers not told yet, each in the slot its request was sent in (a negative
# slot: the slot of now), and records its work left (-1: not known yet) and when it told.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local want = tonumber(ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[7] .. ' ' .. string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[3], 60000)
local slot_us = tonumber(ARGV[6])
for i = 8, #ARGV, 3 do
  local slot = tonumber(ARGV[i])
  if slot < 0 then slot = math.floor(now / slot_us) end
  local key = ARGV[5] .. string.format('%.0f', slot)
  redis.call('HINCRBY', key, 'a', ARGV[i + 1])
  redis.call('HINCRBY', key, 't', ARGV[i + 2])
  redis.call('EXPIRE', key, 60)
end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'rate', 'paused_until')
local rate = tonumber(b[3]) or tonumber(ARGV[3])
local tokens = tonumber(b[1]) or 1
local ts = tonumber(b[2]) or now
local paused = tonumber(b[4]) or 0
local cap = math.max(1, rate * tonumber(ARGV[4]))
local p, n = string.format('%.0f', paused), string.format('%.0f', now)
if now < paused then
  return {0, paused - now, tostring(rate), p, n}
end
if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate / 1000000) end
local grant = math.min(want, math.floor(tokens))
tokens = tokens - grant
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', n)
if grant > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], grant)
  redis.call('HINCRBY', KEYS[2], 'total', grant)
end
local wait = 0
if grant == 0 then wait = math.ceil((1 - tokens) * 1000000 / rate) end
return {grant, wait, tostring(rate), p, n}
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = now + math.floor(tonumber(ARGV[1]) * 1000000)
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused_until')) or 0
-- The episode's first throttle: one sent after the last pause ended begins a new episode; one
-- sent before the first known of this one moves its start back.
local sent = tonumber(ARGV[2])
local first = tonumber(redis.call('HGET', KEYS[1], 'episode_from')) or 0
if sent > 0 and (sent >= paused or sent < first) then
  redis.call('HSET', KEYS[1], 'episode_from', ARGV[2])
end
if untl > paused then
  local u = string.format('%.0f', untl)
  redis.call('HSET', KEYS[1], 'paused_until', u, 'tokens', '0', 'ts', u)
  local msg = 'pause ' .. u .. ' ' .. string.format('%.0f', now) .. ' ' .. ARGV[2] .. ' ' .. ARGV[3]
  redis.call('PUBLISH', KEYS[2], msg)
  return untl
end
return paused
"""

# The leader's new rate: tokens earned so far were earned at the old one.
_RATE = """
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'rate')
local old = tonumber(b[3])
if old ~= nil and b[1] ~= false then
  local ts = tonumber(b[2])
  if now > ts then
    local cap = math.max(1, old * tonumber(ARGV[3]))
    local tokens = math.min(cap, tonumber(b[1]) + (now - ts) * old / 1000000)
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', string.format('%.0f', now))
  end
end
redis.call('HSET', KEYS[1], 'rate', ARGV[1])
return 1
"""

_RESIGN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class SharedLimitError(UpdaterError):
    """The shared limit cannot be used (Redis unreachable at the start, a bad URL, or the
    ``redis`` extra missing). One line; exit code 2."""


def slot_wait(local_now: float, offset: float, settle: float = 0.0) -> float:
    """Seconds from ``local_now`` until ``settle`` after the slot under way ends on Redis's
    clock (``offset`` ahead of the local one; NaN: not known yet, a slot's length). The
    leader reads a slot's tallies then (its answers in by then), not up to a slot later: while
    it waits, the whole fleet may be sending into throttles the slot would measure."""
    if math.isnan(offset):
        return SLOT_S
    redis_now = local_now + offset - settle
    return (math.floor(redis_now / SLOT_S) + 1) * SLOT_S - redis_now + READ_AFTER_S


def _moot(task: asyncio.Task[Any]) -> None:
    """Whatever ``task`` ends with is not worth a warning (it is retrieved when it ends)."""
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def _within(seconds: float, step: Any) -> None:
    """Run ``step`` for at most ``seconds``, its errors ignored; past that (or if the caller is
    cancelled), cancel it and go on without it: ``asyncio.wait_for`` would wait for the
    cancelled step to end, for ever if it never does."""
    task = asyncio.ensure_future(step)
    _moot(task)
    try:
        await asyncio.wait({task}, timeout=seconds)
    finally:
        task.cancel()  # (a no-op once it is done)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class SharedLimit:
    """The Redis side of a shared limit for one run: the connection, the scripts, the pause
    messages, and one ``SharedPacer`` per limit scope. ``connect`` first; ``close`` at the end.

    ``namespace`` separates unrelated jobs on one Redis: processes share a limit when they name
    the same URL, namespace and scope. ``notice`` tells the operator about Redis coming and
    going.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        notice: Callable[[str], None] | None = None,
        burst_s: float = 0.02,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.notice = notice or (lambda message: None)
        self.burst_s = burst_s
        self.member = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.client: Any = None
        self.pacers: dict[str, SharedPacer] = {}
        self.online = False
        self._scripts: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._closed = False

    # -- life cycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and check Redis answers, or raise ``SharedLimitError`` (one line)."""
        try:
            import redis.asyncio as aioredis
        except ImportError:
            raise SharedLimitError(
                "--shared-limit needs the redis extra: pip install 'async-updater[redis]'"
            ) from None
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise SharedLimitError(
                f"--shared-limit: {self.url!r} is not a redis:// or rediss:// URL"
            )
        try:
            self.client = aioredis.from_url(
                self.url, socket_connect_timeout=2.0, socket_timeout=2.0, decode_responses=True
            )
            await self.client.ping()
        except Exception as exc:  # any failure to reach it is the same to the operator
            await self._drop_client()
            raise SharedLimitError(
                f"--shared-limit: cannot reach Redis at {_safe_url(self.url)} ({_describe(exc)})"
            ) from None
        for name, source in (
            ("take", _TAKE),
            ("pause", _PAUSE),
            ("rate", _RATE),
            ("renew", _RENEW),
            ("resign", _RESIGN),
        ):
            self._scripts[name] = self.client.register_script(source)
        self.online = True
        self._listener = asyncio.ensure_future(self._listen())

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Stop the tasks, give up the lead, close the connection. A run must end whatever
        Redis does, so no step waits longer than ``CLOSE_S``: a task whose cancellation a Redis
        call turns into an error of its own is left behind (it stops at its next look at
        ``closed``), and so is a socket that never finishes closing (redis-py #3941)."""
        self._closed = True  # (``spawn`` starts nothing from here on)
        tasks = [*self._tasks, *([self._listener] if self._listener else [])]
        for task in tasks:
            task.cancel()
            _moot(task)
        try:
            if tasks:
                await asyncio.wait(tasks, timeout=CLOSE_S)
            resigns = [pacer.resign() for pacer in list(self.pacers.values())]
            await _within(CLOSE_S, asyncio.gather(*resigns))
        finally:
            await self._drop_client()

    async def _drop_client(self) -> None:
        client, self.client = self.client, None
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _within(CLOSE_S, pubsub.aclose())
        if client is not None:
            await _within(CLOSE_S, client.aclose())

    def describe(self) -> list[str]:
        """One line per scope on where this process stands (no secrets): for a run that stalls,
        and for tests to say why."""
        state = "closed" if self._closed else "online" if self.online else "offline"
        head = f"{self.member} {state}, {len(self._tasks)} tasks"
        return [head, *(f"  {p.describe()}" for p in self.pacers.values())]

    def spawn(self, coro: Any) -> None:
        if self._closed:
            coro.close()  # closing: nothing new starts
            return
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- keys ---------------------------------------------------------------------------

    def keys(self, scope: str) -> tuple[str, str, str, str, str]:
        """(bucket, grants, leader, channel, slot prefix) of ``scope``."""
        digest = hashlib.blake2b(scope.encode("utf-8", "surrogateescape"), digest_size=8)
        base = f"async-updater:{self.namespace}:{digest.hexdigest()}"
        return (
            f"{base}:bucket",
            f"{base}:grants",
            f"{base}:leader",
            f"{base}:events",
            f"{base}:slot:",
        )

    # -- pacers -------------------------------------------------------------------------

    def pacer(
        self, key: str, controller: RateController, wake: Callable[[], None], now: float
    ) -> SharedPacer:
        """The scheduler's pacer factory for a shared limit: one pacer per scope for the life
        of the connection, whatever asks for it again (a later run of the same updater, or a
        scope the scheduler forgot while idle), so one process never leads with a
        controller nothing paces by."""
        channel = self.keys(key)[3]
        pacer = self.pacers.get(channel)
        if pacer is None:
            pacer = self.pacers[channel] = SharedPacer(self, key, controller, wake, now)
            if not self.online:
                pacer.start_alone(now)  # Redis is away: alone until it is back, like the rest
        else:
            pacer.rebind(controller, wake, now)
        return pacer

    async def call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if self.client is None:
            raise ConnectionError("not connected")
        return await self._scripts[name](keys=keys, args=args)

    # -- Redis coming and going -----------------------------------------------------------

    def lost(self, exc: BaseException) -> None:
        """Redis stopped answering: every scope goes on alone; retry until it is back."""
        if not self.online or self._closed:
            return
        self.online = False
        self.notice(
            f"shared limit: Redis at {_safe_url(self.url)} is not answering ({_describe(exc)}); "
            "going on alone at this process's last share of the rate until it is back"
        )
        for pacer in self.pacers.values():
            pacer.go_local()
        self.spawn(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            await asyncio.sleep(RETRY_S)
            try:
                await self.client.ping()
            except Exception:
                continue
            self.online = True
            self.notice(f"shared limit: Redis at {_safe_url(self.url)} is back; rejoining")
            for pacer in self.pacers.values():
                pacer.rejoin()
            return

    async def _listen(self) -> None:
        """Pause messages from the other processes, as they happen."""
        while not self._closed:
            try:
                if self._pubsub is None:
                    self._pubsub = self.client.pubsub()
                    await self._pubsub.psubscribe(f"async-updater:{self.namespace}:*:events")
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._pubsub = None
                self.lost(exc)
                await asyncio.sleep(RETRY_S)
                continue
            if message is None:
                continue
            pacer = self.pacers.get(str(message.get("channel")))
            data = str(message.get("data", ""))
            if pacer is None:
                continue
            try:
                _tell(pacer, data.split())
            except (ValueError, IndexError):
                continue  # not a message of this version: a pause still reaches the bucket


def _told_lately(told: Iterable[str]) -> list[tuple[int, int]]:
    """Each process's last word (``left time_us``), of those told lately: one that stopped
    taking tokens while the others went on has finished."""
    entries = [(int(left), int(at)) for left, at in (one.split() for one in told)]
    if not entries:
        return []
    fresh = max(at for _, at in entries) - WORK_FRESH_S * 1e6
    return [(left, at) for left, at in entries if at >= fresh]


def fleet_left(told: Iterable[str]) -> float:
    """The whole fleet's work left, from each process's last word (``left time_us``): the sum
    over those told lately, or infinite if any does not know its own yet (or none told)."""
    entries = _told_lately(told)
    if not entries or any(left < 0 for left, _ in entries):
        return math.inf
    return float(sum(left for left, _ in entries))


def told_through(told: Iterable[str]) -> float:
    """Redis's time (microseconds) up to which every process still at work has told its
    answers: the earliest last word among those told lately with work left. Infinite if none
    is at work."""
    return float(min((at for left, at in _told_lately(told) if left != 0), default=math.inf))


def _tell(pacer: SharedPacer, words: list[str]) -> None:
    """Hand a message of another process to ``pacer``: ``pause UNTIL STAMP [SENT RATE]`` (Redis
    microseconds; when the throttled request left and the rate it left at) or ``throttled
    RATE``."""
    if words[0] == "pause":
        until, stamp = int(words[1]), int(words[2])
        sent, rate = (int(words[3]), float(words[4])) if len(words) >= 5 else (0, 0.0)
        pacer.paused_remotely(until, stamp, sent, rate)
    elif words[0] == "throttled":
        pacer.throttled_elsewhere(float(words[1]))


def _safe_url(url: str) -> str:
    """The URL without a password."""
    head, sep, tail = url.partition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


class SharedPacer:
    """A scope's pacer whose tokens come from the shared bucket (see module doc).

    It keeps a few tokens in hand and fetches more in the background; ``delay`` and ``take``
    never wait on Redis. Times kept here are the local monotonic clock; Redis's are converted
    with the offset between the two seen in the bucket's answers.
    """

    def __init__(
        self,
        shared: SharedLimit,
        key: str,
        controller: RateController,
        wake: Callable[[], None],
        now: float,
    ) -> None:
        self._shared = shared
        self._controller = controller
        self._wake = wake
        self.bucket, self.grants, self.lease, self.channel, self.slots = shared.keys(key)
        self.rate = controller.rate_at(now)
        self.paused_until = -math.inf
        self._tokens = 0
        self._fetching = False
        self._retry_at = -math.inf
        self._offset = math.nan  # Redis time (s) minus the local monotonic clock
        self._local: Pacer | None = None  # set while Redis is away
        self._takes: deque[float] = deque(maxlen=512)  # when this process took its last tokens
        self._seen_throttles = 0
        self._signal_at = -math.inf
        self.leader = False
        self._published = 0.0
        self._publish_at = -math.inf
        self._granted = (0, 0)  # (this process's, everyone's) tokens at the last share reading
        # Answers not told yet, by the slot (Redis's time) their requests were sent in.
        self._untold: dict[int, list[int]] = {}
        self._slot_read = -1  # the last slot of answers the leader turned into a sample
        self._pauses: deque[tuple[float, float]] = deque(maxlen=16)  # recent (start, end)
        self._lowered: deque[float] = deque(maxlen=16)  # when the leader last lowered the rate
        self._written = -math.inf  # the end of the last pause this process wrote to Redis
        self._thr_slot = -1  # the last slot of answers with a throttle in it
        # Each process counts its answers to requests sent since the first throttle of the
        # cool-down under way (the bucket keeps its send time), all sent while the server's
        # bucket was empty: the share accepted is the limit's share of the rate.
        self._ep_told = ""  # what this process last told of it
        self.episode = f"{self.slots}episode"
        self.work = f"{self.slots}work"  # each process's work left, when it told it
        controller.keep_answers(self._answered)
        shared.spawn(self._lead())

    def rebind(self, controller: RateController, wake: Callable[[], None], now: float) -> None:
        """A new scheduler's scope paces by this pacer from now on: its ``controller`` takes
        over where the old one stood (leading, it cruises at the rate everyone paces at)."""
        old, self._controller, self._wake = self._controller, controller, wake
        self._seen_throttles = controller.throttled
        old.listener = None
        controller.keep_answers(self._answered)
        if self._local is not None:
            controller.adopt(self._local.rate, now)
        elif self.leader:
            controller.external = True
            controller.lag = TALLY_LAG
            controller.share = old.share
            controller.adopt(self.rate, now)

    # -- the Pacing protocol ---------------------------------------------------------------

    def delay(self, now: float) -> float:
        local = self._local
        if local is not None:
            return local.delay(now)
        self._signal(now)  # (asked after every answer: a throttle is told at once)
        if now < self.paused_until:
            return self.paused_until - now
        if self._tokens > 0:
            return 0.0
        if not self._fetching:
            self._fetch(now)
        # Woken when the tokens come; this is only when to look again if they never do.
        return max(self._retry_at - now, 0.05)

    def take(self, now: float) -> None:
        local = self._local
        if local is not None:
            local.take(now)
            return
        self._tokens -= 1
        self._takes.append(now)  # (the throttles were told in ``delay``, just before)
        if self._tokens < max(1, self._batch() // 2) and not self._fetching:
            self._fetch(now)

    def _signal(self, now: float) -> None:
        """Tell the leader of a throttle at once: in slow start or a probe, the fleet's first
        throttles are mostly other processes' (it sees its share of them, a round trip
        later)."""
        throttled = self._controller.throttled
        if throttled != self._seen_throttles:
            self._seen_throttles = throttled
            if not self.leader and now >= self._signal_at:
                self._signal_at = now + SIGNAL_EVERY_S
                self._shared.spawn(self._signal_throttle())

    def give_back(self) -> None:
        if self._local is not None:
            self._local.give_back()
        else:
            self._tokens += 1

    def forgo(self, now: float) -> None:
        """Alone, as ``Pacer.forgo``; sharing, tokens in hand were taken from the shared bucket
        at the shared rate, and are spent."""
        if self._local is not None:
            self._local.forgo(now)

    def set_rate(self, rate: float, now: float) -> None:
        """The controller's rate: the leader makes it everyone's; the others follow the
        bucket's (their own controllers keep learning, for when they lead)."""
        if self._local is not None:
            self._local.set_rate(rate, now)
            self.rate = rate
            return
        if not self.leader:
            return
        if rate < self.rate:
            self._lowered.append(now)
        self.rate = rate
        lower = rate < self._published * (1 - _STEP)  # a cut goes out at once
        if abs(rate - self._published) > _STEP * self._published and (
            lower or now >= self._publish_at
        ):
            self._publish_at = now + PUBLISH_EVERY_S
            self._published = rate
            self._shared.spawn(self._write_rate(rate))

    def pause_until(self, when: float) -> bool:
        """This process was told to wait: pause, and have every other process pause too."""
        if self._local is not None:
            extended = self._local.pause_until(when)
            self.paused_until = self._local.paused_until
            return extended
        now = asyncio.get_running_loop().time()
        if when <= self.paused_until:
            # Nothing new here, but maybe in the bucket: a pause heard from another process
            # ends here on this process's reading of Redis's clock, which can run late. The
            # bucket keeps the later end, and tells the others only if this one is later
            # (once per ``SIGNAL_EVERY_S`` of later end: a pause's answers come in a clump).
            if when >= self._written + SIGNAL_EVERY_S:
                self._written = when
                self._shared.spawn(self._write_pause(when - now, math.nan, self.rate))
            return False
        self.paused_until = self._written = when
        self._tokens = 0
        self._pauses.append((now, when))
        self._shared.spawn(self._announce(when))
        return True

    async def _announce(self, when: float) -> None:
        """Tell every process of this pause, and tally what this one saw. A task: by the time
        it runs, the controller has been told of the cool-down and knows when the request
        that began it was sent (at the shared rate: a follower's own controller paces
        nothing), which the leader's ``DrainFit`` needs."""
        sent_at = self._controller.episode_from
        seconds = when - asyncio.get_running_loop().time()
        await self._write_pause(seconds, sent_at, self.rate)
        await self._tally_during(when)

    def full(self, now: float) -> bool:
        return self._tokens == 0 and now >= self.paused_until and not self._fetching

    def describe(self) -> str:
        now = asyncio.get_running_loop().time()
        c = self._controller
        where = "alone" if self._local is not None else "leader" if self.leader else "follower"
        return (
            f"{where} rate={self.rate:.1f} paused_for={self.paused_until - now:.2f}s "
            f"tokens={self._tokens} fetching={self._fetching} retry_in={self._retry_at - now:.2f}s "
            f"controller: {c.mode.name} limit={c.limit} "
            f"answers={c.accepted}+{c.throttled} throttled"
        )

    # -- Redis ---------------------------------------------------------------------------

    def _sent(self) -> float:
        """Requests per second this process sent over the last second (or its last 512)."""
        takes = self._takes
        if len(takes) < 2:
            return 0.0
        since = takes[-1] - 1.0
        n = 0
        for t in reversed(takes):
            if t < since:
                break
            n += 1
        span = min(1.0, takes[-1] - takes[-n]) if n > 1 else 1.0
        return n / max(span, 1e-3)

    def _batch(self) -> int:
        return max(1, math.ceil(self._sent() * BATCH_S))

    def _fetch(self, now: float) -> None:
        self._fetching = True
        self._shared.spawn(self._take(now))

    async def _take(self, now: float) -> None:
        """Fetch a batch; while the bucket has none, ask again when it says one is due."""
        shared = self._shared
        loop = asyncio.get_running_loop()
        try:
            while True:
                want = max(1, self._batch() - self._tokens)
                try:
                    granted, wait_us, rate, paused, redis_now = await shared.call(
                        "take", *self._take_args(want)
                    )
                except Exception as exc:  # Redis away (or answering nonsense): go on alone
                    shared.lost(exc)
                    return
                local_now = loop.time()
                granted, wait_s = int(granted), int(wait_us) / 1e6
                redis_s, paused_s = int(redis_now) / 1e6, int(paused) / 1e6
                self._clock_from(redis_s, local_now)
                if not self.leader:
                    self.rate = float(rate)
                paused_local = paused_s - self._offset
                if paused_local > self.paused_until and paused_local > local_now:
                    self.paused_until = paused_local
                self._tokens += granted
                self._retry_at = local_now + wait_s
                if granted > 0 or self._local is not None or shared.client is None:
                    return
                await asyncio.sleep(max(wait_s, 0.001))
        finally:
            self._fetching = False
            self._wake()

    def _take_args(self, want: int) -> tuple[list[str], list[Any]]:
        """Keys and arguments of the bucket script: take ``want`` tokens, tell the work left and
        the answers not told yet (handed over here: if Redis is lost, they are moot). The work
        left is known once the input has ended; until then it is what the input's size says
        (a shard by user knows its share of the file's), at least one request, as the input
        goes on (-1: not known)."""
        shared, controller = self._shared, self._controller
        left = float(controller.work_left)
        if math.isinf(left) and not math.isinf(controller.work_expected):
            left = max(1.0, controller.work_expected)
        untold, self._untold = self._untold, {}
        args: list[Any] = [
            want,
            shared.member,
            repr(self.rate),
            shared.burst_s,
            self.slots,
            int(SLOT_S * 1e6),
            -1 if math.isinf(left) else round(left),
        ]
        for slot, (accepted, throttled) in untold.items():
            args += [slot, accepted, throttled]
        return [self.bucket, self.grants, self.work], args

    def _answered(self, sent_at: float, throttled: bool) -> None:
        """An answer came in: count it in the slot of Redis's time its request was sent in
        (-1 while that clock is not known: the slot it is told in). Alone, nothing is told."""
        if self._local is not None:
            return
        offset = self._offset
        slot = -1 if math.isnan(offset) else math.floor((sent_at + offset) / SLOT_S)
        counts = self._untold.get(slot)
        if counts is None:
            counts = self._untold[slot] = [0, 0]
        counts[1 if throttled else 0] += 1

    def _clock_from(self, redis_s: float, local_now: float) -> None:
        """Learn the offset of Redis's clock from a time it stamped, read here at
        ``local_now``: later than the stamp by however long the answer took, so each reading
        is low by that much, and the highest seen is the least delayed."""
        offset = redis_s - local_now
        if math.isnan(self._offset) or offset > self._offset:
            self._offset = offset

    async def _signal_throttle(self) -> None:
        client = self._shared.client
        if client is None:
            return
        try:
            await client.publish(self.channel, f"throttled {self.rate!r}")
        except Exception as exc:
            self._shared.lost(exc)

    def throttled_elsewhere(self, rate: float) -> None:
        """Another process was throttled at the shared ``rate``: as if this one had been."""
        if self.leader:
            now = asyncio.get_running_loop().time()
            self._controller.fleet_throttled(rate, now)

    async def _write_pause(self, seconds: float, sent_at: float, rate: float) -> None:
        # When the throttled request was sent, on Redis's clock (0: not known).
        sent_us = 0 if math.isnan(sent_at + self._offset) else int((sent_at + self._offset) * 1e6)
        try:
            await self._shared.call(
                "pause", [self.bucket, self.channel], [max(seconds, 0.0), sent_us, repr(rate)]
            )
        except Exception as exc:
            self._shared.lost(exc)

    async def _write_rate(self, rate: float) -> None:
        shared = self._shared
        try:
            await shared.call(
                "rate",
                [self.bucket, self.grants, self.lease],
                [repr(rate), shared.member, shared.burst_s],
            )
        except Exception as exc:
            shared.lost(exc)

    def paused_remotely(
        self, until_us: int, stamp_us: int, sent_us: int = 0, rate: float = 0.0
    ) -> None:
        """Another process (or this one) announced a pause in the bucket's time, for a
        request it sent at ``sent_us`` (0: not known) at ``rate``."""
        loop_now = asyncio.get_running_loop().time()
        self._clock_from(stamp_us / 1e6, loop_now)
        until = until_us / 1e6 - self._offset
        if until <= self.paused_until or until <= loop_now:
            return
        self.paused_until = until
        self._tokens = 0
        self._pauses.append((loop_now, until))
        if sent_us:
            sent_at = sent_us / 1e6 - self._offset
        else:  # sent about a round trip before its answer, which the pause was written in
            rtt = self._controller.rtt.srtt
            sent_at = stamp_us / 1e6 - self._offset - (rtt if not math.isnan(rtt) else 0.0)
        sent_at = min(sent_at, loop_now)
        if self.leader:
            self._controller.on_cooldown(loop_now, until, sent_at, rate if rate > 0 else None)
        self._shared.spawn(self._tally_during(until))
        self._wake()

    # -- leading ---------------------------------------------------------------------------

    async def _lead(self) -> None:
        """Hold (or try to take) the scope's lead; while leading, keep the share current."""
        shared = self._shared
        while not shared.closed:  # (a cancel can come back from Redis as an error)
            try:
                if shared.client is not None and shared.online and self._local is None:
                    await self._elect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                shared.lost(exc)
            if self.leader:
                await self._read_slots_until(asyncio.get_running_loop().time() + RENEW_S / 2)
            else:
                await asyncio.sleep(RENEW_S)

    async def _read_slots_until(self, until: float) -> None:
        """Read each slot's tallies as soon as they are all in (see ``_read_slots``)."""
        loop = asyncio.get_running_loop()
        complete = True
        while loop.time() < until:
            wait = slot_wait(loop.time(), self._offset, self._settle()) if complete else BATCH_S
            await asyncio.sleep(wait)
            try:
                complete = await self._read_slots()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._shared.lost(exc)
                return

    def _high_rtt(self) -> float:
        high = self._controller.rtt.high
        return 0.0 if math.isnan(high) else high

    def _settle(self) -> float:
        """How long after a slot ends the answers to its requests are in, about: a (high)
        round trip, and a batch's time to the tell that carries them."""
        return self._high_rtt() + BATCH_S

    async def _elect(self) -> None:
        shared = self._shared
        client = shared.client
        if self.leader:
            renewed = await shared.call("renew", [self.lease], [shared.member, LEASE_MS])
            if not renewed:
                self._follow()
                return
        else:
            taken = await client.set(self.lease, shared.member, nx=True, px=LEASE_MS)
            if not taken:
                return
            # Read the rate everyone paces at before leading: until then this process's own
            # controller (which paced nothing) must not publish its view.
            published = await client.hget(self.bucket, "rate")
            self.leader = True
            shared.spawn(self._ramp())
            self._controller.external = True  # the fleet's tallies measure the limit
            self._controller.lag = TALLY_LAG
            self._slot_read = -1
            if published is not None:
                # Taking over from a leader that left: start from the rate everyone has been
                # pacing at, not from this process's own view of its share.
                self.rate = self._published = float(published)
                self._controller.adopt(self.rate, asyncio.get_running_loop().time())
        mine, total = await client.hmget(self.grants, shared.member, "total")
        mine, total = int(mine or 0), int(total or 0)
        before_mine, before_total = self._granted
        if total - before_total > 0:
            share = (mine - before_mine) / (total - before_total)
            self._controller.share = min(1.0, max(share, 0.01))
        self._granted = (mine, total)
        self._controller.fleet_left = fleet_left((await client.hgetall(self.work)).values())

    async def _ramp(self) -> None:
        """While leading slow start: every round, how many tokens the fleet has taken (the
        controller doubles on rounds the fleet used and no process was throttled in)."""
        shared = self._shared
        loop = asyncio.get_running_loop()
        while self.leader and self._controller.mode is Mode.STARTUP and shared.client is not None:
            controller = self._controller  # (a new run's, once rebound)
            await asyncio.sleep(controller.settings.min_round_s)
            try:
                taken = await shared.client.hget(self.grants, "total")
            except Exception as exc:
                shared.lost(exc)
                return
            if self.leader and self._local is None:
                self._controller.on_fleet_taken(float(taken or 0), loop.time())

    async def _tally_during(self, until: float) -> None:
        """A pause stops the batches that carry the answers to Redis: once the requests in
        flight have answered, tell their tally anyway; the leader reads every process's just
        before the pause ends, so the rate after it rests on what the fleet measured."""
        loop = asyncio.get_running_loop()
        rtt = self._controller.rtt.srtt
        settle = 2.0 * (rtt if not math.isnan(rtt) else 0.05)
        await asyncio.sleep(max(0.0, min(settle, (until - loop.time()) / 2)))
        shared = self._shared
        if self._untold:
            try:
                await shared.call("take", *self._take_args(0))
            except Exception as exc:
                shared.lost(exc)
                return
        await asyncio.sleep(max(0.0, until - TELL_EPISODE_S - loop.time()))
        await self._tell_episode(until)
        if self.leader:
            await asyncio.sleep(max(0.0, until - LEAD_READ_S - loop.time()))
            try:
                await self._read_episode()
                await self._read_slots()
            except Exception as exc:
                shared.lost(exc)

    async def _tell_episode(self, until: float) -> None:
        """Write this process's count of the cool-down's answers, under its own name: told
        again, it replaces what it told before."""
        client = self._shared.client
        if client is None or math.isnan(self._offset):
            return
        try:
            first_us = await client.hget(self.bucket, "episode_from")
        except Exception as exc:
            self._shared.lost(exc)
            return
        if first_us is None:
            return
        sent = int(first_us) / 1e6 - self._offset
        accepted, throttled = self._controller.answered_since(sent)
        told = f"{int((until + self._offset) * 1e6)} {accepted} {throttled}"
        if told == self._ep_told:
            return
        self._ep_told = told
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.hset(self.episode, self._shared.member, told)
                pipe.expire(self.episode, 60)
                await pipe.execute()
        except Exception as exc:
            self._shared.lost(exc)

    async def _read_episode(self) -> None:
        """The fleet's count of the cool-down's answers: every process's told for a pause
        that has not ended (older ones are of an earlier cool-down)."""
        client = self._shared.client
        if not self.leader or client is None or math.isnan(self._offset):
            return
        loop_now = asyncio.get_running_loop().time()
        now_us = (loop_now + self._offset) * 1e6
        accepted = throttled = 0
        for told in (await client.hgetall(self.episode)).values():
            until_us, a, t = (int(x) for x in told.split())
            if until_us > now_us:
                accepted += a
                throttled += t
        self._controller.on_episode(accepted, throttled, loop_now)

    async def _read_slots(self) -> bool:
        """Turn each slot whose answers are all in, in which the fleet was throttled, into a
        sample of the limit: while requests were being throttled, what the server accepted is
        what it refilled. A slot tallies the answers to the requests sent in it (Redis's time),
        so it measures just what the server took of them; they are all in once every process
        at work has told its answers since a round trip after the slot's end (or, should one
        stall, ``TALLY_LAG`` after it). False while a slot that ended waits on some."""
        if not self.leader or math.isnan(self._offset) or self._shared.client is None:
            return True
        loop_now = asyncio.get_running_loop().time()
        redis_now = loop_now + self._offset
        current = math.floor((redis_now - self._settle()) / SLOT_S)  # the slots begun since
        first = max(self._slot_read + 1, current - 10)
        if first >= current:
            return True
        client = self._shared.client
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.work)
            for slot in range(first, current):
                pipe.hmget(f"{self.slots}{slot}", "a", "t")
            told, *tallies = await pipe.execute()
        high = self._high_rtt()
        through = told_through(told.values()) / 1e6
        last = first - 1
        for slot in range(first, current):
            end = (slot + 1) * SLOT_S  # on Redis's clock
            if end + high > through and redis_now - end < TALLY_LAG:
                break
            last = slot
        self._slot_read = max(self._slot_read, last)
        for slot, (accepted, throttled) in zip(range(first, last + 1), tallies, strict=False):
            self._sample_slot(slot, int(accepted or 0), int(throttled or 0), loop_now)
        return last == current - 1

    def _sample_slot(self, slot: int, a: int, t: int, loop_now: float) -> None:
        sent_from = slot * SLOT_S - self._offset  # the slot's requests, on the local clock
        end = sent_from + SLOT_S
        self._controller.on_tally(a, t, sent_from)
        if t == 0:
            self._controller.on_round(a, SLOT_S, loop_now)
            return
        after_throttles, self._thr_slot = self._thr_slot == slot - 1, slot
        if t < OVERLOADED * (a + t) or self._paused_within(sent_from, end):
            return  # a pause in the slot left part of it unused: it would read low
        if not after_throttles or self._lowered_within(sent_from, end):
            # Throttled only from part of the way in (the bucket was still draining: the
            # slot reads high), or the rate was lowered for part of it (below the limit,
            # that part reads low): no measure of the limit.
            return
        self._controller.on_sample(Sample(end, a, SLOT_S), loop_now)

    def _lowered_within(self, start: float, end: float) -> bool:
        return any(start < at < end for at in self._lowered)

    def _paused_within(self, start: float, end: float) -> bool:
        return any(s < end and e > start for s, e in self._pauses)

    def _follow(self) -> None:
        self.leader = False
        self._controller.share = 1.0
        self._controller.external = False

    async def resign(self) -> None:
        """Give up the lead at the end of the run, so another process takes it at once."""
        shared, leading, self.leader = self._shared, self.leader, False
        if leading and shared.client is not None and shared.online:
            with contextlib.suppress(Exception):
                await shared.call("resign", [self.lease], [shared.member])

    # -- Redis gone and back -----------------------------------------------------------------

    def go_local(self) -> None:
        """Redis is away: pace alone at this process's last share of the shared rate."""
        if self._local is not None:
            return
        now = asyncio.get_running_loop().time()
        share = self._controller.share if self.leader else self._share_guess()
        rate = max(self.rate * share, 0.2)
        self._local = Pacer(rate, now)
        if now < self.paused_until:
            self._local.pause_until(self.paused_until)
        self.leader = False
        self._controller.share = 1.0
        self._controller.external = False
        self._controller.adopt(rate, now)
        self.rate = rate
        self._wake()

    def start_alone(self, now: float) -> None:
        """Made while Redis is away: pace alone from the start, by this process's own
        controller (slow start), until Redis is back."""
        if self._local is None:
            self._local = Pacer(self.rate, now)

    def _share_guess(self) -> float:
        """A follower's share: what it sent of the shared rate lately."""
        if self.rate <= 0:
            return 1.0
        return min(1.0, max(self._sent() / self.rate, 0.01))

    def rejoin(self) -> None:
        """Redis is back: take tokens from the shared bucket again."""
        local = self._local
        if local is None:
            return
        self.rate = local.rate
        self.paused_until = max(self.paused_until, local.paused_until)
        self._local = None
        self._tokens = 0
        self._offset = math.nan
        self._wake()
