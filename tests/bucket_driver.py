"""Drive a ``RateController`` against a token-bucket server with plain arithmetic: no loop, no
sockets, just events in time order. Used by the controller's tests to check what it does on a
known server (limit, burst, round trip, Retry-After) with exact numbers."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from async_updater.ratelimit import Outcome, Pacer, RateController


@dataclass
class Drive:
    """What happened: counts, when the server announced pauses, the rate over time."""

    sent: int = 0
    accepted: int = 0
    throttled: int = 0
    pauses: int = 0
    sent_in_pause: int = 0
    rates: list[tuple[float, float]] = field(default_factory=list)

    def rate_near(self, t: float) -> float:
        """The allowed rate at the last sample at or before ``t``."""
        last = self.rates[0][1]
        for when, rate in self.rates:
            if when > t:
                break
            last = rate
        return last


def drive(
    controller: RateController,
    *,
    limit: float,
    burst: float = 1.0,
    rtt: float = 0.02,
    seconds: float = 10.0,
    retry_after: float | None = None,
    limits: tuple[tuple[float, float], ...] = (),
    work: int | None = None,
    known: bool = False,
    expected: bool = False,
) -> Drive:
    """Send as fast as the controller allows for ``seconds`` to a server refilling ``limit``
    tokens/s into a bucket of ``burst``; every answer comes back ``rtt`` later. ``limits``:
    (time, new limit) changes. ``work``: that many requests to get accepted in all, the
    controller told how many are left to send (``work_left``), as the scheduler does once the
    input has ended; a throttled one is sent again. ``known``: told as ``work_known`` too (the
    scheduler counts it so while the input goes on, where its size is known). ``expected``:
    told only as ``work_expected``, ``work_left`` staying unknown (the input goes on, and its
    size is known)."""
    out = Drive()
    now = 0.0
    pacer = Pacer(controller.rate_at(now), now)
    tokens, refilled = burst, 0.0
    answers: list[tuple[float, int, float, bool]] = []
    changes = list(limits)
    paused_until = -math.inf
    left = math.inf
    while now < seconds:
        if work is not None:
            left = work - out.accepted - len(answers)
            if expected:
                controller.work_expected = left
            else:
                controller.work_left = left
            if known:
                controller.work_known = left
            if left <= 0 and not answers:
                break
        wait = pacer.delay(now) if left > 0 else math.inf
        send_at = now + wait
        if answers and answers[0][0] <= send_at:
            now, seq, sent_at, ok = heapq.heappop(answers)
            paused_until = _answer(
                controller, pacer, out, (now, seq, sent_at, ok), retry_after, paused_until
            )
            continue
        now = send_at
        if now >= seconds:
            break
        pacer.set_rate(controller.rate_at(now), now)
        if pacer.delay(now) > 0:
            continue  # the rate fell at this very moment
        pacer.take(now)
        while changes and changes[0][0] <= now:
            limit = changes.pop(0)[1]
        tokens = min(burst, tokens + (now - refilled) * limit)
        refilled = now
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        if now < paused_until:
            out.sent_in_pause += 1
        seq = controller.on_send(now)
        out.sent += 1
        heapq.heappush(answers, (now + rtt, seq, now, ok))
    return out


def _answer(
    controller: RateController,
    pacer: Pacer,
    out: Drive,
    answer: tuple[float, int, float, bool],
    retry_after: float | None,
    paused_until: float,
) -> float:
    """Hand one answer (when, seq, sent at, accepted?) to the controller; returns until when
    the server's cool-down lasts now."""
    now, seq, sent_at, ok = answer
    if ok:
        out.accepted += 1
    else:
        out.throttled += 1
        if retry_after is not None and now >= paused_until:
            paused_until = now + retry_after
            out.pauses += 1
    controller.on_answer(seq, sent_at, now, Outcome.ACCEPTED if ok else Outcome.THROTTLED)
    if not ok and retry_after is not None and pacer.pause_until(now + retry_after):
        controller.on_cooldown(now, now + retry_after, sent_at)
    pacer.set_rate(controller.rate_at(now), now)
    out.rates.append((now, controller.rate_at(now)))
    return paused_until
