"""Per-scope queues served in turn by whichever scope may send now, under one in-flight cap.

Each limit scope (the whole run, or one account) has a FIFO queue of waiting work, a ``Pacer``
(token bucket) and a ``RateController``. ``next()`` hands out the next piece of work whose scope
has a token, going round the scopes that have work (round robin, so one busy or paused scope
never holds back another: no head-of-line blocking), and waits (one timer for all scopes)
when none can send. A scope with nothing queued or in flight and a full bucket is forgotten;
what scopes learned about their limit is folded into ``prior``, where new scopes start, and
handed to scopes with work that cruise far below it (``RateController.hint``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from .clock import Cancellable, Clock
from .concurrency import InFlightLimit
from .controller import ControllerSettings, Mode, RateController
from .estimator import RoundTrip
from .overflow import Overflow
from .pacer import Pacer, Pacing

__all__ = ["Scheduler", "Scope"]

T = TypeVar("T")

PacerFactory = Callable[[str, RateController, Callable[[], None], float], Pacing]
"""Makes a scope's pacer: (scope key, its controller, a callback that wakes the scheduler for
this scope, now)."""


def local_pacer(
    key: str, controller: RateController, wake: Callable[[], None], now: float
) -> Pacer:
    """The default: a pacer of this process alone."""
    return Pacer(controller.rate_at(now), now)


_SWEEP_EVERY_S = 0.1
SHARE_MAX = 32


class Scope(Generic[T]):
    """One limit scope: its queue, its pacer and its controller."""

    __slots__ = (
        "controller",
        "fed",
        "held",
        "in_flight",
        "key",
        "pacer",
        "queue",
        "ready",
        "wake_at",
    )

    def __init__(self, key: str, pacer: Pacing, controller: RateController) -> None:
        self.key = key
        self.queue: deque[T] = deque()
        self.pacer = pacer
        self.controller = controller
        self.in_flight = 0
        self.held = 0  # work of this scope waiting elsewhere (a retry back-off)
        self.fed = 0  # new work put in (not retries)
        self.ready = False  # in the scheduler's round-robin list
        self.wake_at = math.inf  # when its next token is due, if it is waiting for one

    @property
    def idle(self) -> bool:
        return not self.queue and not self.in_flight and not self.held

    def sync_rate(self, now: float) -> float:
        rate = self.controller.rate_at(now)
        if rate != self.pacer.rate:
            self.pacer.set_rate(rate, now)
        return rate


class Scheduler(Generic[T]):
    """Work in, work out when its scope may send (see module doc).

    ``put`` queues new work at the back of its scope's queue, ``put_front`` returns work (a
    retry) to the front; ``hold``/``unhold`` count work waiting outside (a back-off timer) so
    its scope is kept. ``next`` returns the next work to send, taking a token and an in-flight
    slot for it, or None once closed; ``done`` frees the slot.

    With an ``overflow``, a scope keeps at most its share of ``memory`` queued in memory (the
    share shrinks as more scopes have work, never below a few); its further work is parked on
    disk and comes back as its queue drains.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        ceiling: float | None = None,
        settings: ControllerSettings | None = None,
        concurrency: InFlightLimit | None = None,
        overflow: Overflow[T, Scope[T]] | None = None,
        memory: int = 1024,
        pacers: PacerFactory = local_pacer,
    ) -> None:
        self._pacers = pacers
        self._clock = clock
        self.overflow = overflow
        self.memory = memory
        self._busy = 0  # scopes with work queued in memory
        self.pressure = 0  # scopes whose new work waits for room in memory
        self._ceiling = ceiling
        self._settings = settings or ControllerSettings()
        self.concurrency = concurrency or InFlightLimit()
        self.scopes: dict[str, Scope[T]] = {}
        self._ready: deque[Scope[T]] = deque()
        self._timers: list[tuple[float, int, Scope[T]]] = []
        self._seq = itertools.count()
        self._waiter: asyncio.Future[None] | None = None
        self._timer: Cancellable | None = None
        self._timer_at = math.inf
        self._closed = False
        # Work was ready but the in-flight cap held it back: the pacers earned tokens that
        # were not theirs to spend meanwhile (``Pacing.forgo``).
        self._capped = False
        self.in_flight = 0
        self.queued = 0
        self.rtt = RoundTrip()
        # Where new scopes start: what the scopes with work have measured of their limits (the
        # median), else what forgotten ones had. Accounts of one service usually share a quota.
        self.prior: float | None = None
        self._forgotten: float | None = None
        self._next_sweep = -math.inf
        self._last_sweep = -math.inf
        self.at_rate_ceiling = False  # every scope with work is held at --rate
        self.rate_bound_s = 0.0  # how long that was so
        self.rate_total = 0.0  # allowed rates summed over scopes with work
        self.past_cuts = 0  # rate cuts of forgotten scopes
        self.on_scope: Callable[[Scope[T]], None] | None = None
        self.input_ended = False  # no new work will come (retries of work taken still may)
        # Work the input still holds, not read yet, as far as is known (0: not known): all of
        # it for the one scope there is (one global limit), or shared out (``split``).
        self.unread = 0.0
        # ``unread`` is all the input holds still (its size is known, or a shard's share of it
        # estimated)
        self.sized = False
        # The scopes split the input (a limit per account): each has its share of ``unread``,
        # as of the new work put in so far (``fed``: all scopes').
        self.split = False
        self.fed = 0

    # -- work in ----------------------------------------------------------------------------

    def scope(self, key: str) -> Scope[T]:
        scope = self.scopes.get(key)
        if scope is None:
            now = self._clock.now()
            initial = self.prior
            controller = RateController(self._ceiling, initial=initial, settings=self._settings)
            made: list[Scope[T]] = []  # the pacer may wake the scope it belongs to
            pacer = self._pacers(key, controller, lambda: self.touch(made[0]), now)
            scope = Scope(key, pacer, controller)
            made.append(scope)
            self.scopes[key] = scope
            if self.on_scope is not None:
                self.on_scope(scope)
        return scope

    def parks(self, scope: Scope[T]) -> bool:
        """Whether new work for ``scope`` would be parked (it has its share in memory)."""
        overflow = self.overflow
        return overflow is not None and (scope.key in overflow or len(scope.queue) >= self._share())

    def put(self, work: T, scope: Scope[T]) -> None:
        scope.fed += 1
        self.fed += 1
        if self.parks(scope):
            assert self.overflow is not None
            self.overflow.park(scope.key, work)
            return
        if not scope.queue:
            self._busy += 1
        scope.queue.append(work)
        self.queued += 1
        self._make_ready(scope)

    def put_back(self, work: T, scope: Scope[T]) -> None:
        """Return work to the back of its scope's queue in memory (a throttled retry: by the
        time it comes round again, the rate has had time to adapt). Never parked."""
        if not scope.queue:
            self._busy += 1
        scope.queue.append(work)
        self.queued += 1
        self._make_ready(scope)

    def put_front(self, work: T, scope: Scope[T]) -> None:
        if not scope.queue:
            self._busy += 1
        scope.queue.appendleft(work)
        self.queued += 1
        self._make_ready(scope)

    def _share(self) -> int:
        """Work one scope may keep queued in memory before the rest is parked: a slice of the
        memory budget, shared with every scope that has work queued or waits to queue some
        (``pressure``), so a newcomer always gets in. A refill is synchronous, so a slice of a
        few rows keeps any scope busy."""
        return max(4, min(SHARE_MAX, self.memory // max(1, self._busy + self.pressure)))

    def _refill(self, scope: Scope[T]) -> None:
        assert self.overflow is not None
        room = self._share() - len(scope.queue)
        works = self.overflow.unpark(scope.key, room, scope)
        if works:
            if not scope.queue:
                self._busy += 1
            scope.queue.extend(works)
            self.queued += len(works)
            self._make_ready(scope)

    @property
    def parked(self) -> int:
        return 0 if self.overflow is None else self.overflow.parked

    def hold(self, scope: Scope[T]) -> None:
        scope.held += 1

    def unhold(self, scope: Scope[T]) -> None:
        scope.held -= 1

    def end_input(self) -> None:
        """No new work will come: from now on each scope's controller knows how much it has
        left to send (``RateController.work_left``). Until then it knows what is queued,
        parked and ``unread`` (``RateController.work_known``)."""
        self.input_ended = True
        self.unread = 0.0

    def _sync(self, scope: Scope[T], now: float) -> float:
        overflow = self.overflow
        parked = 0 if overflow is None else overflow.count(scope.key)
        held = len(scope.queue) + scope.held + parked
        if self.input_ended:
            scope.controller.work_left = held
        unread = self.unread  # (none once the input has ended)
        if self.split:
            unread *= scope.fed / max(1, self.fed)
        scope.controller.work_known = held + unread
        if self.sized:
            scope.controller.work_expected = held + unread
        return scope.sync_rate(now)

    def touch(self, scope: Scope[T]) -> None:
        """The scope's rate or pause changed: look at it again now, not at its old wake-up."""
        if scope.queue:
            self._make_ready(scope)

    def done(self, scope: Scope[T]) -> None:
        """A request of ``scope`` is no longer in flight."""
        self.in_flight -= 1
        scope.in_flight -= 1
        self._notify()

    def close(self) -> None:
        """``next`` returns None from now on."""
        self._closed = True
        self._notify()

    def drain(self) -> list[T]:
        """Take every queued work out of memory (parked work is dropped with the overflow)."""
        works: list[T] = []
        for scope in self.scopes.values():
            works.extend(scope.queue)
            scope.queue.clear()
        self.queued = 0
        self._busy = 0
        if self.overflow is not None:
            self.overflow.close()
        return works

    # -- work out ---------------------------------------------------------------------------

    async def next(self) -> tuple[T, Scope[T]] | None:
        while True:
            if self._closed:
                return None
            now = self._clock.now()
            if now >= self._next_sweep:
                self._sweep(now)
            timers = self._timers
            while timers and timers[0][0] <= now:
                when, _, scope = heapq.heappop(timers)
                if when == scope.wake_at:
                    scope.wake_at = math.inf
                    if scope.queue:
                        self._make_ready(scope)
            limit = self.concurrency.limit
            if self.in_flight < limit:
                self.concurrency.unblocked(now)
                found = self._take(now, self._capped)
                self._capped = False
                if found is not None:
                    return found
                wake = timers[0][0] if timers else math.inf
            else:
                if self._ready or (timers and timers[0][0] <= now):
                    self.concurrency.blocked(now)
                    self._capped = True
                wake = math.inf  # a ``done`` wakes us
            await self._wait(wake)

    def _take(self, now: float, capped: bool) -> tuple[T, Scope[T]] | None:
        ready = self._ready
        while ready:
            scope = ready.popleft()
            scope.ready = False
            if not scope.queue:
                continue
            self._sync(scope, now)
            if capped and scope.controller.mode is Mode.STARTUP:
                # Slow start raised the rate past what the cap was sized for: the tokens
                # earned while the cap catches up are not time to make up (cruising, they
                # are: the cap held because answers stalled, and the server refilled too).
                scope.pacer.forgo(now)
            delay = scope.pacer.delay(now)
            if delay > 0.0:
                self._sleep(scope, now + delay)
                continue
            scope.pacer.take(now)
            work = scope.queue.popleft()
            self.queued -= 1
            overflow = self.overflow
            if (
                overflow is not None
                and scope.key in overflow
                and len(scope.queue) < self._share() // 2
            ):
                self._refill(scope)
            if not scope.queue:
                self._busy -= 1
            else:
                scope.ready = True
                ready.append(scope)  # to the back: the other scopes go first
            self.in_flight += 1
            scope.in_flight += 1
            return work, scope
        return None

    def _make_ready(self, scope: Scope[T]) -> None:
        if not scope.ready:
            scope.ready = True
            self._ready.append(scope)
            self._notify()

    def _sleep(self, scope: Scope[T], when: float) -> None:
        if when < scope.wake_at:
            scope.wake_at = when
            heapq.heappush(self._timers, (when, next(self._seq), scope))

    async def _wait(self, wake: float) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        if wake < math.inf and wake != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = wake
            self._timer = self._clock.call_at(wake, self._on_timer)
        try:
            await waiter
        finally:
            self._waiter = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._notify()

    def _notify(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- upkeep -----------------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        """Forget idle scopes whose bucket is full, size the in-flight cap."""
        since = now - self._last_sweep if self._last_sweep > -math.inf else 0.0
        self._last_sweep = now
        self._next_sweep = now + _SWEEP_EVERY_S
        total = 0.0
        forget: list[str] = []
        learned: list[float] = []
        overflow = self.overflow
        busy = ceiling = 0
        proven = 0.0  # the most any scope held without a throttle
        for key, scope in self.scopes.items():
            limit = scope.controller.limit
            if limit is not None:
                learned.append(limit)
                proven = max(proven, scope.controller.proven(now))
            if scope.idle and (overflow is None or key not in overflow):
                if scope.pacer.full(now):
                    forget.append(key)
                continue
            total += self._sync(scope, now)
            busy += 1
            ceiling += scope.controller.at_ceiling
        self.at_rate_ceiling = busy > 0 and ceiling == busy
        if self.at_rate_ceiling:
            self.rate_bound_s += since
        for key in forget:
            self._forget(self.scopes.pop(key))
        self.rate_total = total
        if learned:
            learned.sort()
            self.prior = learned[len(learned) // 2]
            if len(learned) > 1:
                for scope in self.scopes.values():
                    if scope.queue:
                        scope.controller.hint(self.prior, proven, now)
        else:
            self.prior = self._forgotten
        self.concurrency.update(total, self.rtt.high)

    def _forget(self, scope: Scope[T]) -> None:
        self.past_cuts += scope.controller.cuts
        learned = scope.controller.limit
        if learned is not None:
            before = self._forgotten
            self._forgotten = learned if before is None else before + 0.25 * (learned - before)
