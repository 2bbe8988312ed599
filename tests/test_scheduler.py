"""The scheduler in virtual time: per-scope queues served in turn, a paused scope never holding
back another, the in-flight cap, scopes forgotten when idle, work parked on disk past a share
of memory."""

from __future__ import annotations

import asyncio
import math
import pickle
import subprocess
import sys

import pytest

from async_updater.ratelimit import ControllerSettings, InFlightLimit, LoopClock, Mode, Scheduler
from async_updater.ratelimit.overflow import Overflow
from async_updater.testing import virtual_time


async def take(sched: Scheduler[str], n: int) -> list[tuple[float, str, str]]:
    """The next ``n`` works handed out: (when, scope, work); each is done at once."""
    loop = asyncio.get_running_loop()
    out = []
    for _ in range(n):
        got = await asyncio.wait_for(sched.next(), 3600)
        assert got is not None
        work, scope = got
        out.append((loop.time(), scope.key, work))
        sched.done(scope)
    return out


@virtual_time
async def test_scopes_with_work_are_served_in_turn() -> None:
    sched: Scheduler[str] = Scheduler(LoopClock(), ceiling=1000.0)
    for key in ("a", "b", "c"):
        scope = sched.scope(key)
        for i in range(3):
            sched.put(f"{key}{i}", scope)
    order = [work for _, _, work in await take(sched, 9)]
    assert order[:3] == ["a0", "b0", "c0"]  # round robin, not one scope's queue first
    assert sorted(order) == sorted(f"{k}{i}" for k in "abc" for i in range(3))


@virtual_time
async def test_a_paused_scope_does_not_delay_another() -> None:
    sched: Scheduler[str] = Scheduler(LoopClock(), ceiling=50.0)
    paused, other = sched.scope("paused"), sched.scope("other")
    loop = asyncio.get_running_loop()
    paused.pacer.pause_until(loop.time() + 30.0)
    for i in range(20):
        sched.put(f"p{i}", paused)
        sched.put(f"o{i}", other)
    start = loop.time()
    handed = await take(sched, 20)
    assert {scope for _, scope, _ in handed} == {"other"}
    # All 20 of the other scope's works left long before the pause ended.
    assert max(when for when, _, _ in handed) - start < 30.0
    handed = await take(sched, 1)
    assert handed[0][1] == "paused" and handed[0][0] >= start + 30.0


@virtual_time
async def test_requests_in_flight_never_exceed_the_cap_and_done_frees_a_slot() -> None:
    sched: Scheduler[str] = Scheduler(
        LoopClock(), ceiling=1e6, concurrency=InFlightLimit(3, auto=False)
    )
    scope = sched.scope("")
    for i in range(10):
        sched.put(str(i), scope)
    got = [await sched.next() for _ in range(3)]
    assert sched.in_flight == 3
    waiting = asyncio.ensure_future(sched.next())
    await asyncio.sleep(1.0)
    assert not waiting.done()  # the cap holds it back
    assert got[0] is not None
    sched.done(got[0][1])
    assert (await asyncio.wait_for(waiting, 1.0)) is not None
    assert sched.in_flight == 3


@pytest.mark.parametrize("cruising", [False, True])
@virtual_time
async def test_slow_starts_tokens_earned_while_the_cap_held_it_back_do_not_leave_at_once(
    cruising: bool,
) -> None:
    """Slow start raises the rate past what the in-flight cap was sized for; the pacer earns
    tokens while the cap catches up. Released at one instant when it opens, they would meet
    a bucket of a token or two and all but one be throttled: in slow start the first leaves
    at once, the rest at the rate. Cruising, the cap held because answers stalled (the server
    refilled meanwhile): what was earned makes up for that time."""
    cap = InFlightLimit(1, auto=False)
    sched: Scheduler[str] = Scheduler(
        LoopClock(),
        ceiling=1000.0,
        concurrency=cap,
        settings=ControllerSettings(initial_rate=500.0),
    )
    scope = sched.scope("")
    loop = asyncio.get_running_loop()
    if cruising:
        scope.controller.adopt(500.0, loop.time())
    for i in range(20):
        sched.put(str(i), scope)
    first = await sched.next()
    assert first is not None
    waiting = asyncio.ensure_future(sched.next())  # a worker, waiting for room
    await asyncio.sleep(1.0)  # the cap (1) holds it back; the pacer earns 20 ms' worth
    cap.limit = cap.ceiling = 10
    sched.done(first[1])
    assert (await waiting) is not None
    left = [loop.time()] + [when for when, _, _ in await take(sched, 3)]
    if cruising:
        assert left[-1] == left[0]  # the tokens earned go at once
    else:
        assert left[1] - left[0] == pytest.approx(1 / 500.0, rel=0.05)


def test_in_flight_cap_follows_rate_times_latency_with_headroom_up_to_the_ceiling() -> None:
    cap = InFlightLimit(1024)
    assert cap.update(rate=500.0, latency=0.06) == math.ceil(2 * 500 * 0.06) + 4
    assert cap.update(rate=100_000.0, latency=1.0) == 1024
    fixed = InFlightLimit(32, auto=False)
    assert fixed.update(rate=1.0, latency=0.01) == 32


_OPEN_FILES = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
from async_updater.config import UpdaterConfig
ceiling = UpdaterConfig(concurrency=None if sys.argv[3] == "auto" else int(sys.argv[3]))
print(ceiling.max_concurrency, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def _hard_limit() -> int:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 1 << 30 if hard == resource.RLIM_INFINITY else hard


def _open_files(soft: int, hard: int, asked: str) -> list[int]:
    out = subprocess.run(
        [sys.executable, "-c", _OPEN_FILES, str(soft), str(hard), asked],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    return [int(x) for x in out]


def test_the_in_flight_ceiling_raises_the_open_files_limit_as_far_as_it_needs() -> None:
    # Each connection holds a descriptor; past the soft limit, connecting fails ("too many open
    # files"), which would read as the server failing. Processes of their own: limits are
    # global. 64 descriptors are kept for the input, the report and the rest.
    hard = _hard_limit()
    if hard < 4096 + 64:
        pytest.skip(f"the hard limit on open files here is {hard}")
    assert _open_files(256, hard, "auto") == [4096, 4096 + 64]
    assert _open_files(256, hard, "2000") == [2000, 2000 + 64]
    assert _open_files(hard, hard, "auto") == [4096, hard]  # high enough: left alone


def test_the_in_flight_ceiling_is_what_the_hard_open_files_limit_allows() -> None:
    assert _open_files(256, 1000, "auto") == [1000 - 64, 1000]
    assert _open_files(256, 1000, "5000") == [1000 - 64, 1000]


def test_the_in_flight_ceiling_reports_when_it_holds_work_back() -> None:
    cap = InFlightLimit(8, auto=False)
    cap.blocked(10.0)
    assert cap.at_ceiling
    cap.unblocked(12.5)
    assert not cap.at_ceiling and cap.bound_s == 2.5


@virtual_time
async def test_an_idle_scope_with_a_full_bucket_is_forgotten_and_what_it_learned_kept() -> None:
    sched: Scheduler[str] = Scheduler(LoopClock(), ceiling=100.0)
    scope = sched.scope("acct-1")
    scope.controller.estimate.provisional(80.0, 0.0)
    sched.put("w", scope)
    await take(sched, 1)
    # Nothing queued or in flight; its bucket refills within a second: the next sweep forgets.
    sched.put("x", sched.scope("acct-2"))
    await asyncio.sleep(2.0)
    await take(sched, 1)
    assert "acct-1" not in sched.scopes
    assert sched.prior is not None  # a new scope starts from what was learned


@virtual_time
async def test_work_past_a_scopes_share_of_memory_is_parked_and_comes_back_in_order() -> None:
    overflow: Overflow[str, object] = Overflow(
        lambda w: pickle.dumps(w), lambda blob, scope: pickle.loads(blob)
    )
    sched: Scheduler[str] = Scheduler(LoopClock(), ceiling=1e6, overflow=overflow, memory=64)
    busy = sched.scope("busy")
    for i in range(200):  # an export sorted by account: one account's rows first
        sched.put(f"b{i}", busy)
    assert sched.parked > 0 and len(busy.queue) <= 32
    other = sched.scope("other")
    sched.put("o0", other)
    assert other.queue  # a later account still gets in
    handed = [work for _, _, work in await take(sched, 201)]
    assert [w for w in handed if w.startswith("b")] == [f"b{i}" for i in range(200)]
    assert "o0" in handed[:3]  # served in turn, not after all of "busy"
    assert sched.parked == 0
    overflow.close()


@virtual_time
async def test_a_retry_goes_to_the_back_of_its_scopes_queue_and_is_never_parked() -> None:
    overflow: Overflow[str, object] = Overflow(
        lambda w: pickle.dumps(w), lambda blob, scope: pickle.loads(blob)
    )
    sched: Scheduler[str] = Scheduler(LoopClock(), ceiling=1e6, overflow=overflow, memory=8)
    scope = sched.scope("s")
    for i in range(20):
        sched.put(f"w{i}", scope)
    queued = len(scope.queue)
    sched.put_back("retry", scope)
    assert len(scope.queue) == queued + 1 and scope.queue[-1] == "retry"
    overflow.close()


@virtual_time
async def test_scopes_that_split_the_input_each_know_their_share_of_what_is_unread() -> None:
    """With a limit per account, the rows still to read are not known per account: each scope
    counts its share of them as of the new work put in so far (a retry is not new work), so
    that slow start risks a share of its own work while the input goes on, not of all of it
    (nor of nothing known: it grew by doubling)."""
    sched: Scheduler[str] = Scheduler(LoopClock(), ceiling=1e6)
    sched.split, sched.sized = True, True
    a, b = sched.scope("a"), sched.scope("b")
    for i in range(75):
        sched.put(f"a{i}", a)
    for i in range(25):
        sched.put(f"b{i}", b)
    sched.put_front("b-retry", b)  # a retry: b's share is still 25 of 100 rows
    sched.unread = 400
    sent = await take(sched, 2)
    assert sorted(scope for _, scope, _ in sent) == ["a", "b"]
    # (Counted as each took its first: queued then, and its share of the 400 unread.)
    assert a.controller.work_known == a.controller.work_expected == 75 + 300
    assert b.controller.work_known == b.controller.work_expected == 26 + 100
    sched.end_input()
    await take(sched, 2)
    assert (a.controller.work_left, b.controller.work_left) == (74, 25)


def test_the_overflow_file_keeps_each_keys_works_first_in_first_out() -> None:
    overflow: Overflow[str, str] = Overflow(
        lambda w: w.encode(), lambda blob, scope: f"{scope}:{blob.decode()}"
    )
    for i in range(10):
        overflow.park("a", f"a{i}")
        overflow.park("b", f"b{i}")
    assert overflow.parked == 20 and overflow.count("a") == 10
    assert overflow.unpark("a", 3, "A") == ["A:a0", "A:a1", "A:a2"]
    assert overflow.unpark("b", 100, "B") == [f"B:b{i}" for i in range(10)]
    assert "b" not in overflow and overflow.parked == 7
    overflow.close()


@virtual_time
async def test_once_the_input_ends_each_controller_knows_the_work_its_scope_has_left() -> None:
    """Queued, parked on disk and waiting to retry all count; while the input goes on, the
    work left is unknown (infinite), and the work known is what is queued and parked, and the
    input still to read where its size is known (one global limit): then that is the work
    expected, unknown (infinite) otherwise."""
    overflow: Overflow[str, object] = Overflow(
        lambda w: pickle.dumps(w), lambda blob, scope: pickle.loads(blob)
    )
    sched: Scheduler[str] = Scheduler(LoopClock(), ceiling=1e6, overflow=overflow, memory=64)
    big, small = sched.scope("big"), sched.scope("small")
    for i in range(100):
        sched.put(f"b{i}", big)
    sched.put("s0", small)
    sched.hold(small)  # one more of "small" waits out a retry back-off
    await take(sched, 2)
    assert big.controller.work_left == math.inf  # more input may come
    assert big.controller.work_known == 100  # what is queued and parked is known, though
    assert big.controller.work_expected == math.inf  # the input's size is not
    sched.unread, sched.sized = 500, True  # an input of known size, all for this one scope
    await take(sched, 1)
    assert big.controller.work_known == 99 + 500  # counted as b1 went
    assert big.controller.work_expected == 99 + 500  # and it is all there is
    sched.end_input()
    await take(sched, 1)
    assert sched.parked > 0
    assert big.controller.work_left == big.controller.work_known == 98
    assert big.controller.work_expected == 98
    sched.put_front("s1", small)  # a retry of "small"'s, while its other one is still held
    await take(sched, 1)
    assert small.controller.work_left == 2
    overflow.close()


def _cruising(limits: dict[str, float], *, throttled_at: float) -> Scheduler[str]:
    """Scopes cruising on the limits they measured, throttled far above, 50 works each."""
    sched: Scheduler[str] = Scheduler(LoopClock())
    for key, limit in limits.items():
        scope = sched.scope(key)
        scope.controller.estimate.provisional(limit, 0.0)
        scope.controller.bounds.throttled(throttled_at)
        scope.controller.mode = Mode.CRUISE
        for i in range(50):
            sched.put(f"{key}{i}", scope)
    return sched


@virtual_time
async def test_a_scope_far_below_the_others_limits_is_told_their_median() -> None:
    """Accounts of one service usually share a quota: the sweep hands each scope with work the
    median of what the scopes measured, and one cruising far below it probes there."""
    sched = _cruising({"a": 146.0, "b": 150.0, "low": 18.0}, throttled_at=525.0)
    await take(sched, 3)
    await asyncio.sleep(0.2)  # past a sweep
    await take(sched, 1)
    assert sched.prior == 146.0
    low = sched.scopes["low"].controller
    assert low.mode is Mode.PROBE and low.rate_at(0.0) == pytest.approx(146.0 * 0.97)
    assert {sched.scopes[k].controller.mode for k in "ab"} == {Mode.CRUISE}


@virtual_time
async def test_scopes_below_a_rate_another_scope_held_are_told_it() -> None:
    """The rate one scope held without a throttle (its ``bounds.lo``) is handed out with the
    median: the scopes cruising more than a probe step below it step there."""
    sched = _cruising({"a": 121.0, "b": 115.0, "c": 167.0, "d": 104.0}, throttled_at=2301.0)
    sched.scopes["c"].controller.bounds.sustained(161.6)
    await take(sched, 4)
    await asyncio.sleep(0.2)  # past a sweep
    await take(sched, 1)
    modes = {k: s.controller.mode for k, s in sched.scopes.items()}
    assert modes == {"a": Mode.PROBE, "b": Mode.PROBE, "c": Mode.CRUISE, "d": Mode.PROBE}
    assert sched.scopes["d"].controller.rate_at(0.0) == pytest.approx(161.6)
