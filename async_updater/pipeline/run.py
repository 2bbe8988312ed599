"""The orchestrator: records in, one signed request per record under the limiter, results out.

    records --feeder--> scope queues --scheduler--> attempt: send signed -> observe -> settle
                             ^                                                       |
                             +------ retry (throttled: at once; else after back-off) +
                                                                                     v
                                                               results (async iterator)

The feeder validates and builds each record's request and queues it in its limit scope. The
scheduler hands out work whose scope may send now, under the adaptive in-flight cap; each piece
of work becomes one attempt task. At most ``queue_size`` records wait in memory besides those in
flight (with one limit per account, a busy account's further rows wait on disk), so memory is
flat in the input size.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import AsyncIterable, Callable, Iterable, Sized
from dataclasses import dataclass, replace
from time import perf_counter
from typing import Any

from ..aws.credentials import CredentialProvider, Credentials
from ..aws.redact import Redactor
from ..aws.sigv4 import SigV4Signer
from ..config import LimitScope, UpdaterConfig
from ..errors import CredentialsError, ReportError, RowError, SafetyStop, StateError, UpdaterError
from ..io.before import BeforeStore
from ..io.keyindex import KeyIndex
from ..model import Record, Result, Status
from ..operations.base import HttpRequest, Operation
from ..ratelimit.clock import Cancellable, Clock
from ..ratelimit.concurrency import InFlightLimit
from ..ratelimit.estimator import Outcome
from ..ratelimit.overflow import Overflow
from ..ratelimit.scheduler import Scheduler, Scope, local_pacer
from ..ratelimit.shared import SharedLimit
from ..transport.base import Response, Transport, TransportError
from .retry import Action, Decision, ErrorClass, RetryBudget, classify, decide, full_jitter_backoff
from .safety import ClockOffset, SafetyPolicy, is_clock_skew
from .state import NextStep, after_read, read_failure
from .stats import RunStats

__all__ = ["DONE", "Records", "Run"]

Records = Iterable[Any] | AsyncIterable[Any]
# Put on the results queue after the last result.
DONE = object()
_YIELD_EVERY = 256


def expected_rows(records: object) -> int | None:
    """How many records ``records`` holds, where that is known before reading them: a sized
    collection's length, or a source's own count (``expected_rows``)."""
    if isinstance(records, Sized):
        return len(records)
    count = getattr(records, "expected_rows", None)
    return count() if callable(count) else None


def expected_work(records: object) -> float | None:
    """How many records ``records`` will yield, known or estimated before reading them: a
    source's own estimate (``rows_expected``: a shard's share of its file), else
    ``expected_rows``."""
    estimate = getattr(records, "rows_expected", None)
    if callable(estimate):
        value = estimate()
        return None if value is None else float(value)
    return expected_rows(records)


class _Item:
    """A record on its way: the request is built once, signed again for every attempt.

    With ``--read-before`` it goes through two phases, each with its own attempts: the read
    (``request`` is the read, ``write`` waits), then the write."""

    __slots__ = (
        "attempts",
        "base",
        "before",
        "captured",
        "changes",
        "offset_generation",
        "reading",
        "record",
        "refreshed",
        "request",
        "scope",
        "timer",
        "write",
    )

    def __init__(self, record: Record, request: HttpRequest, scope: Scope[_Item]) -> None:
        self.record = record
        self.request = request
        self.write = request
        self.scope = scope
        self.attempts = 0
        self.base = 0  # attempts made before the current phase
        self.refreshed = False
        self.timer: Cancellable | None = None
        self.reading = False
        self.before = ""  # the state read, as the report's JSON
        self.changes: tuple[str, ...] = ()
        self.captured: str | None = None  # the state an earlier run captured (a resume)
        self.offset_generation = 0  # the clock correction the last attempt was signed with


@dataclass(frozen=True, slots=True)
class _Sent:
    """One attempt's answer and when it was sent."""

    response: Response
    seq: int
    sent_at: float
    latency: float  # seconds, from a high-resolution clock
    credentials: Credentials
    headers: dict[str, str]


class Run:
    """The state of one run: queues, tasks, counters. Private to ``Updater``, which hands it
    every collaborator it uses."""

    def __init__(
        self,
        records: Records,
        skip: KeyIndex | None,
        *,
        config: UpdaterConfig,
        operation: Operation,
        signer: SigV4Signer,
        credentials: CredentialProvider | None,
        transport: Transport | None,
        redactor: Redactor,
        budget: RetryBudget,
        clock: Clock,
        stats: RunStats,
        notice: Callable[..., None],
        rand: Callable[[], float],
        befores: BeforeStore | None = None,
        clock_offset: ClockOffset | None = None,
        shared: SharedLimit | None = None,
    ) -> None:
        self.cfg = config
        self.records = records
        self.skip = skip
        self.operation = operation
        self.signer = signer
        self.credentials = credentials
        self.transport = transport
        self.redactor = redactor
        self.budget = budget
        self.clock = clock
        self.stats = stats
        self.notice = notice
        self.rand = rand
        self.befores = befores
        self.reader = operation.reader if config.read_before else None
        self.clock_offset = clock_offset or ClockOffset()
        self.safety = SafetyPolicy(
            max_failures=config.max_failures, rejections_in_a_row=config.rejections_in_a_row
        )
        self.per_account = config.limit_scope is LimitScope.ACCOUNT
        # One limit per account: a busy account's further rows are parked on disk, so the
        # reader can reach the other accounts' rows (an export sorted by account lists one
        # account's thousands of users first). One global limit has nothing to reach.
        overflow: Overflow[_Item, Scope[_Item]] | None = None
        if self.per_account and config.sends:
            overflow = Overflow(_dump, self._load)
        self.scheduler: Scheduler[_Item] = Scheduler(
            clock,
            ceiling=config.rate,
            settings=config.controller,
            concurrency=InFlightLimit(config.max_concurrency),
            overflow=overflow,
            memory=config.queue_size,
            pacers=shared.pacer if shared is not None else local_pacer,
        )
        self.out: asyncio.Queue[Any] = asyncio.Queue(maxsize=config.queue_size)
        self.outstanding = 0  # records taken in and not finished (parked ones included)
        # Records the input is expected to hold (where it says: a sequence, a whole CSV file;
        # a shard by user of one estimates its share), read so far, and taken in to send.
        self._expected: float | None = None
        self._read = self._taken = 0
        self.room: asyncio.Future[None] | None = None
        self.waiting: set[_Item] = set()
        self.attempts: set[asyncio.Task[None]] = set()
        self.feeder_done = False
        self.finished = False
        self.stopping = False
        self.fatal: BaseException | None = None
        self.feeder: asyncio.Task[None] | None = None
        self.dispatcher: asyncio.Task[None] | None = None
        self.supervisor: asyncio.Task[None] | None = None
        self.all_done = asyncio.Event()
        self.refresh_lock = asyncio.Lock()

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.feeder = asyncio.ensure_future(self._feed_all())
        self.dispatcher = asyncio.ensure_future(self._dispatch())
        self.supervisor = asyncio.ensure_future(self._supervise())

    async def _supervise(self) -> None:
        try:
            pending: set[asyncio.Future[Any]] = {
                t for t in (self.feeder, self.dispatcher) if t is not None
            }
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        self._fail(task.exception())
            while self.attempts:
                await asyncio.wait(set(self.attempts))
        finally:
            self.finished = True
            if self.scheduler.overflow is not None:
                self.scheduler.overflow.close()
            await self.out.put(DONE)

    def _fail(self, exc: BaseException | None) -> None:
        if exc is None:
            return
        if self.fatal is None:
            self.fatal = exc
        self.stop(cancel_in_flight=not isinstance(exc, UpdaterError))

    def stop(self, *, cancel_in_flight: bool = False) -> None:
        if not self.stopping:
            self.stopping = True
            if self.feeder is not None and not self.feeder.done():
                self.feeder.cancel()
            self.scheduler.close()
            parked = self.scheduler.parked
            for item in self.scheduler.drain():
                self._release(item)
            self.outstanding -= parked
            self._maybe_finish()
            for item in list(self.waiting):
                if item.timer is not None:
                    item.timer.cancel()
                self._drop(item)
        if cancel_in_flight:
            for task in list(self.attempts):
                task.cancel()

    async def shutdown(self) -> None:
        """Called when the consumer leaves (normally or not): nothing may keep running."""
        if not self.finished:
            self.stop(cancel_in_flight=True)
        if self.supervisor is not None:
            while not self.supervisor.done():
                # Drain so the supervisor's final put cannot block.
                while not self.out.empty():
                    self.out.get_nowait()
                await asyncio.wait({self.supervisor}, timeout=0.05)

    def cuts(self) -> int:
        sched = self.scheduler
        return sched.past_cuts + sum(s.controller.cuts for s in sched.scopes.values())

    def bound_by(self, *, over: float | None = None) -> str:
        """``--concurrency`` or ``--rate`` when that ceiling holds the run back now, or (given
        ``over``, the run's length in seconds) held it back for a tenth of it or more."""
        sched = self.scheduler
        if over is None:
            if sched.concurrency.at_ceiling:
                return self._concurrency_ceiling()
            return "--rate" if sched.at_rate_ceiling else ""
        share = max(over, 1e-9) / 10.0
        concurrency = sched.concurrency
        held = concurrency.bound_s
        if concurrency.at_ceiling:
            held += self.clock.now() - concurrency.bound_since
        if held >= share:
            return self._concurrency_ceiling()
        return "--rate" if sched.rate_bound_s >= share else ""

    def _concurrency_ceiling(self) -> str:
        """What sets the in-flight ceiling: ``--concurrency`` (or its default), or the open-files
        limit where that allowed fewer connections and could not be raised."""
        cfg = self.cfg
        if cfg.open_files_bound:
            return f"the open-files limit (ulimit -n: {cfg.max_concurrency} connections)"
        return "--concurrency"

    # -- feeding ------------------------------------------------------------------------

    async def _feed_all(self) -> None:
        try:
            records = self.records
            self._expected = expected_work(records)
            self.scheduler.sized = self._expected is not None
            self.scheduler.split = self.per_account
            if isinstance(records, AsyncIterable):
                async for record in records:
                    if not await self._feed(record):
                        break
            else:
                for n, record in enumerate(records, 1):
                    if not await self._feed(record):
                        break
                    if n % _YIELD_EVERY == 0:
                        await asyncio.sleep(0)  # a synchronous source must not starve the rest
        finally:
            self.feeder_done = True
            self.scheduler.end_input()
            self._maybe_finish()

    async def _feed(self, record: Any) -> bool:
        if self.stopping:
            return False
        self._read += 1
        if self._expected is not None:
            # The rows still to read, as many of them to send as of those read so far: slow
            # start risks a share of the work it knows (``RateController.work_known``).
            sends = (self._taken + 1) / (self._read + 1)
            self.scheduler.unread = max(0, self._expected - self._read) * sends
        if isinstance(record, Result):
            await self._emit(record)
            return True
        if self.skip is not None and (record.account_id, record.user_id) in self.skip:
            self.stats.skipped += 1
            return True
        try:
            request = self.operation.build(record)
        except RowError as exc:
            await self._emit(_invalid(record, str(exc)))
            return True
        if self.cfg.dry_run and self.reader is None:
            await self._emit(
                Result(
                    record.account_id,
                    record.user_id,
                    Status.PLANNED,
                    message=f"{request.method} {request.target}",
                    line=record.line,
                )
            )
            return True
        scheduler = self.scheduler
        scope = scheduler.scope(record.account_id if self.per_account else "")
        if not scheduler.parks(scope):
            await self._wait_for_room()
            if self.stopping:
                return False
        item = _Item(record, request, scope)
        if self.reader is not None:
            item.reading = True
            item.request = self.reader.request(record)
            if self.befores is not None:
                item.captured = self.befores.captured(record.account_id, record.user_id)
        self.outstanding += 1
        self._taken += 1
        scheduler.put(item, scope)
        return True

    async def _wait_for_room(self) -> None:
        """Backpressure: at most ``queue_size`` records in memory (queued or waiting to retry)
        besides those the in-flight cap lets out, so memory is flat in the input size."""
        scheduler = self.scheduler
        while (
            self.outstanding - scheduler.parked >= self.cfg.queue_size + scheduler.concurrency.limit
            and not self.stopping
        ):
            self.room = asyncio.get_running_loop().create_future()
            scheduler.pressure += 1  # the other scopes' shares shrink to let this one in
            try:
                await self.room
            finally:
                scheduler.pressure -= 1

    def _load(self, blob: bytes, scope: Scope[_Item]) -> _Item:
        record, captured = pickle.loads(blob)
        item = _Item(record, self.operation.build(record), scope)
        if self.reader is not None:
            item.reading = True
            item.request = self.reader.request(record)
            item.captured = captured
        return item

    def _maybe_finish(self) -> None:
        if self.feeder_done and self.outstanding == 0:
            self.scheduler.close()

    async def _emit(self, result: Result) -> None:
        self.stats.record_result(result)
        await self.out.put(result)

    def _drop(self, item: _Item) -> None:
        """Give up on an item without a result (the run is stopping)."""
        if item in self.waiting:
            self.waiting.discard(item)
            self.scheduler.unhold(item.scope)
        self._release(item)

    def _release(self, item: _Item) -> None:
        self.outstanding -= 1
        room = self.room
        if room is not None and not room.done():
            room.set_result(None)
        self._maybe_finish()

    # -- sending ------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        scheduler = self.scheduler
        loop = asyncio.get_running_loop()
        while True:
            got = await scheduler.next()
            if got is None:
                return
            if not self.out.empty():
                # Let the consumer write (and flush) the answers already out before sending
                # again: then a crash (kill -9) leaves few answers unreported, and a resume
                # re-sends at most about as many users as were in flight.
                await asyncio.sleep(0)
            item, scope = got
            task = loop.create_task(self._attempt(item, scope))
            self.attempts.add(task)
            task.add_done_callback(self.attempts.discard)

    async def _attempt(self, item: _Item, scope: Scope[_Item]) -> None:
        """acquire (done: the scheduler gave a token) -> send signed -> observe -> settle."""
        try:
            sent = await self._send_signed(item, scope)
            if sent is None:
                return
            kind = self._observe(scope, sent)
            await self._settle(item, kind, sent)
        except asyncio.CancelledError:
            self._drop(item)
            raise

    async def _send_signed(self, item: _Item, scope: Scope[_Item]) -> _Sent | None:
        scheduler = self.scheduler
        now = self.clock.now()
        if self.stopping:
            scheduler.done(scope)
            self._drop(item)
            return None
        if now < scope.pacer.paused_until:
            # A cool-down began between the token and now: the request waits it out.
            scheduler.done(scope)
            scheduler.put_front(item, scope)
            return None
        assert self.credentials is not None and self.transport is not None
        try:
            credentials = await self.credentials.current()
            self.redactor.remember(credentials)
            request = item.request
            offset = self.clock_offset
            item.offset_generation = offset.generation
            headers = self.signer.sign(
                request.method,
                request.path,
                request.body,
                request.content_type,
                credentials,
                offset.now(time.time()) if offset.corrected else None,
                query=request.query,
                headers=request.headers,  # returned among the signed headers, so sent with them
            )
            stats = self.stats
            sent_at = self.clock.now()
            seq = scope.controller.on_send(sent_at)
            item.attempts += 1
            stats.requests += 1
            stats.in_flight += 1
            stats.timeline.at(sent_at).sent += 1
            started = perf_counter()  # the loop's clock may tick in whole ms (uvloop)
            try:
                response = await self.transport.send(
                    request.method, request.target, headers, request.body
                )
            except TransportError as exc:
                response = Response(0, "", exc.code, str(exc))
            finally:
                stats.in_flight -= 1
        finally:
            scheduler.done(scope)
        if not 200 <= response.status < 300:
            # Server text enters the program here; a success carries none worth the cost.
            response = self.redactor.response(response, headers)
        return _Sent(response, seq, sent_at, perf_counter() - started, credentials, headers)

    def _observe(self, scope: Scope[_Item], sent: _Sent) -> ErrorClass:
        """Feed the answer to the scope's rate controller and to the figures."""
        response = sent.response
        now = self.clock.now()
        stats = self.stats
        stats.latencies.add(sent.latency * 1000.0)
        kind = classify(response.status or None, response.error_code)
        point = stats.timeline.at(now)
        scheduler = self.scheduler
        if kind is ErrorClass.THROTTLED:
            stats.throttles += 1
            point.throttled += 1
            outcome = Outcome.THROTTLED
        elif response.status == 401 or response.status == 403:
            point.errors += 1
            outcome = Outcome.UNKNOWN  # refused at the door: whether it took a token is unknown
        elif response.status:
            point.accepted += 1
            if kind is ErrorClass.TRANSIENT or kind is ErrorClass.OVERLOADED:
                stats.server_errors += 1
                point.errors += 1
            outcome = Outcome.ACCEPTED  # the server took a token for it, whatever it said
        else:
            point.errors += 1
            outcome = Outcome.UNKNOWN
        scheduler.rtt.add(now - sent.sent_at)
        scope.controller.on_answer(sent.seq, sent.sent_at, now, outcome)
        if response.retry_after and (kind is ErrorClass.THROTTLED or kind is ErrorClass.OVERLOADED):
            until = now + min(response.retry_after, self.cfg.max_cooldown)
            if scope.pacer.pause_until(until):
                stats.cooldowns += 1
                scope.controller.on_cooldown(now, until, sent.sent_at)
                self.notice(
                    f"the server asked us to wait {until - now:.1f} s; pausing",
                    key="cooldown",
                    every=30.0,
                )
        scheduler.touch(scope)
        point.allowed_rate = scheduler.rate_total or scope.pacer.rate
        point.in_flight = stats.in_flight
        return kind

    async def _settle(self, item: _Item, kind: ErrorClass, sent: _Sent) -> None:
        response = sent.response
        if is_clock_skew(response.status or None, response.error_code, response.message):
            self._skewed(item, sent)
            return
        if kind is ErrorClass.SUCCESS and item.reading:
            await self._after_read(item, sent)
            return
        decision = decide(
            kind,
            attempts=item.attempts - item.base,
            max_attempts=self.cfg.max_attempts,
            refreshed=item.refreshed,
            budget_left=self.budget.left,
            backoff=full_jitter_backoff(
                item.attempts, base=self.cfg.backoff_base, cap=self.cfg.backoff_cap, rand=self.rand
            ),
        )
        action = decision.action
        if action is Action.SUCCEED:
            self.budget.on_success()
            await self._complete(item, self._result(item, Status.UPDATED, sent, decision))
        elif action is Action.FAIL:
            if decision.why.startswith("retry budget"):
                self.budget.exhausted += 1
                self.notice(
                    "retry budget exhausted: failing errors are no longer retried until "
                    "requests succeed again (the server or network is failing most requests)",
                    key="budget",
                    every=30.0,
                )
            await self._complete(item, self._result(item, Status.FAILED, sent, decision))
        elif self.stopping:
            self._drop(item)
        elif action is Action.REFRESH:
            item.refreshed = True
            try:
                await self._refresh_credentials(sent.credentials)
            except CredentialsError as exc:
                await self._complete(item, self._result(item, Status.FAILED, sent, decision))
                self._fail(exc)
                return
            self._retry(item, 0.0)
        else:
            if decision.spends_budget:
                self.budget.try_spend()
            self.stats.retries += 1
            self._retry(item, decision.delay)

    def _skewed(self, item: _Item, sent: _Sent) -> None:
        """The server rejected the request's time: correct the run's clock from its ``Date``
        and send again, or stop (nothing to correct by) leaving the row for a resume."""
        response = sent.response
        offset = self.clock_offset
        reason = offset.on_skew(
            response.date,
            time.time(),
            signed_with=item.offset_generation,
            status=response.status or None,
            code=response.error_code,
            message=response.message,
        )
        if reason is not None:
            self._drop(item)
            self._fail(SafetyStop(reason))
            return
        self.stats.clock_offset_s = offset.seconds
        self.notice(
            f"the server's clock is {offset.seconds:+.1f} s from ours (its Date header); "
            "signing with its time",
            key="clock",
            every=30.0,
        )
        self.scheduler.put_front(item, item.scope)

    async def _after_read(self, item: _Item, sent: _Sent) -> None:
        """The user's state is in: write, or end the row unchanged or planned."""
        assert self.reader is not None
        self.budget.on_success()
        record = item.record
        try:
            outcome = after_read(
                self.reader,
                record,
                sent.response,
                dry_run=self.cfg.dry_run,
                skip_unchanged=self.cfg.skip_unchanged,
                captured=item.captured,
            )
        except StateError as exc:
            failed = read_failure(
                self._result(item, Status.FAILED, sent, _NO_DECISION), exc, captured=item.captured
            )
            item.reading = False  # the row's end is settled: a failed read
            await self._complete(item, failed)
            return
        item.before, item.changes = outcome.before, outcome.changes
        if outcome.step is NextStep.WRITE:
            if self.befores is not None:
                try:
                    # Kept before the write is sent: after a crash, the resume still knows
                    # what the user had, not what this run wrote.
                    self.befores.record(record.account_id, record.user_id, outcome.before)
                    self.befores.flush()
                except ReportError as exc:
                    self._drop(item)
                    self._fail(exc)
                    self.stop(cancel_in_flight=True)
                    return
            item.reading = False
            item.request = item.write
            item.base = item.attempts
            item.refreshed = False
            self.scheduler.put_front(item, item.scope)
            return
        status = Status.UNCHANGED if outcome.step is NextStep.UNCHANGED else Status.PLANNED
        result = self._result(item, status, sent, _NO_DECISION)
        await self._complete(item, replace(result, error_code="", message=outcome.message))

    async def _complete(self, item: _Item, result: Result) -> None:
        if item.reading and result.status is Status.FAILED:
            result = read_failure(result, captured=item.captured)
        await self._emit(result)
        self._release(item)
        reason = self.safety.on_result(result)
        if reason is not None:
            self._fail(SafetyStop(reason))

    async def _refresh_credentials(self, rejected: Credentials) -> None:
        """Refresh once for all the requests that were signed with ``rejected``: up to
        the whole in-flight set meets the expiry together, and a refresh may reload the whole
        AWS chain (SSO, STS). Those that find the credentials already replaced sign anew."""
        provider = self.credentials
        assert provider is not None
        async with self.refresh_lock:
            if await provider.current() != rejected:
                return
            self.notice(
                "the server says our credentials expired; refreshing them from the AWS chain",
                key="refresh",
                every=10.0,
            )
            await provider.refresh()

    def _retry(self, item: _Item, delay: float) -> None:
        scope = item.scope
        if delay <= 0:
            # Throttled: to the back of the scope's queue, so one row cannot spend all its
            # attempts within a few round trips of an overshoot.
            self.scheduler.put_back(item, scope)
            return
        self.waiting.add(item)
        self.scheduler.hold(scope)
        item.timer = self.clock.call_at(self.clock.now() + delay, lambda: self._requeue(item))

    def _requeue(self, item: _Item) -> None:
        item.timer = None
        self.waiting.discard(item)
        self.scheduler.unhold(item.scope)
        self.scheduler.put_front(item, item.scope)

    def _result(self, item: _Item, status: Status, sent: _Sent, decision: Decision) -> Result:
        record = item.record
        response = sent.response
        return Result(
            record.account_id,
            record.user_id,
            status,
            response.status or None,
            response.error_code,
            decision.why + response.message,
            item.attempts,
            sent.latency * 1000.0,
            response.request_id,
            record.line,
            item.before,
            item.changes if status is not Status.FAILED else (),
        )


_NO_DECISION = Decision(Action.SUCCEED)


def _dump(item: _Item) -> bytes:
    """A parked item is a record that was never sent: its request is rebuilt when it is back."""
    return pickle.dumps((item.record, item.captured), pickle.HIGHEST_PROTOCOL)


def _invalid(record: Any, message: str) -> Result:
    line = getattr(record, "line", 0)
    return Result(
        record.account_id,
        record.user_id,
        Status.INVALID,
        error_code="InvalidRow",
        message=f"line {line}: {message}" if line else message,
        line=line,
    )
