"""Shape matrix: async_updater with its defaults against many server shapes drawn at random.

Each cell is a server shape drawn with a fixed seed (``--seed``) from the ranges the design
promises to cover: round-trip latency 1 ms-1 s (log-uniform, +-10% jitter), a limit of
5-5,000 requests/s (log-uniform), a bucket ("burst") from 1 token to one second's worth
(log-uniform), one global limit or one per account (2-8 accounts, each its own bucket; the
per-account limit is drawn so their sum stays within 5,000/s), the input CSV interleaved over
the accounts or sorted by account, with or without ``Retry-After`` (1-5 s, whole seconds) on
every 429, and with or without a ``--rate`` ceiling given to the client (drawn 1.2-4x above
the true per-scope limit: an operator's ceiling is a guess). The four yes/no factors cycle
through all 16 combinations in a shuffled order, so any 16 consecutive cells cover each once.
A cell's shape depends only on the seed and its number, not on how many cells are drawn.

Per cell, on one fresh mock server (its own process; reset before each client):
async_updater with its DEFAULTS (no tuning flags: only ``--limit-scope account`` where the limit
is per account and ``--rate`` in the ceiling cells), then the aiobotocore ``legacy`` client (a
Semaphore and ``max_pool_connections`` of 64, botocore's legacy retry mode, 8 attempts).

Users per cell: ~``--seconds`` (15) of the cell's capacity (20x the Retry-After where that is
longer: the bar where 429s carry Retry-After is 0.05 below the other, room for one pause in
twenty), at least 100 and at most 30,000,
sized against ``--sizing-ceiling`` (2,000/s) rather than the server limit where that is
higher, so a cell runs a bounded time whatever the draw. Each client run has a time limit
(async_updater 3x the cell's expected time + 30 s; legacy 1.2x + 10 s: it is the reference,
and at a third of the capacity it would set the length of the matrix); rows not done by then
count as lost, marked ``timed out``. The estimate is printed up front (~43 min for the default
30 cells on a quiet 2-core machine).

Capacity and the machine. This is a 2-core machine: client (~150-300 µs of CPU a request) and
mock share it. Where the server's capacity is over ``--measure-above`` (500/s), the cell first
measures the machine's own ceiling at the cell's latency: async_updater with no ceiling
against the mock with no limit, its in-flight cap sized for the cell (2 x capacity x latency,
64-4,096); the ceiling is the best 3 consecutive seconds the server accepted. The cell's
capacity is then min(server capacity, machine ceiling), and a cell where the machine is the
lower one is flagged ``machine-bound``.

Per client: goodput = users applied with the right settings / wall time of its run /
capacity; throttled = 429s / requests (server counters); lost = valid users not applied with
the right settings; applied twice; requests that arrived inside an announced cool-down (a 429
with Retry-After answered at r, a request of the same bucket arriving in (r + tol, r + pause))
at tol = 10, 50 and 200 ms. Bars (issue 10): 0 lost; goodput >= 0.90 (>= 0.85 where every 429
carries Retry-After); throttled <= 3% (<= 5% where the per-bucket limit is under 20/s); 0 in a
cool-down at tol 50 ms (real runs: both event loops jitter on a loaded machine) or 10 ms
(``--sim``: virtual time has no jitter).

``--sim`` runs the same cells for async_updater alone in virtual time: a full ``Updater``
(the real pipeline, signer and controller) over ``async_updater.testing.SimulatedServer``
(token bucket per scope, latency, Retry-After), with no sockets, so the whole matrix takes
minutes; there is no machine ceiling in virtual time (capacity is the server's, and users are
sized on it, up to 120,000).

A cell whose capacity x latency exceeds async_updater's default in-flight ceiling (1,024) is
marked ``> 1,024 in flight``: by Little's law its defaults cannot reach the capacity.

    python -m benchmarks.shapes                  # 30 cells, real; printed estimate ~43 min
    python -m benchmarks.shapes --quick          # 6 small cells, real (shapes_quick.*)
    python -m benchmarks.shapes --sim            # 30 cells in virtual time (shapes_sim.*)
    python -m benchmarks.shapes --only 3,7       # re-run cells 3 and 7 into the same results
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from async_updater import Updater, UpdaterConfig
from async_updater.aws.credentials import StaticCredentials
from async_updater.config import LimitScope
from async_updater.model import UserRecord
from async_updater.ratelimit.concurrency import DEFAULT_MAX_CONCURRENCY
from async_updater.testing import ServerShape, SimulatedServer, run_virtual
from async_updater.transport import Response
from benchmarks.common import (
    ClientRun,
    MockServer,
    bench_parser,
    check_applied,
    command_line,
    cooldown_violations,
    expected_settings,
    generate_input,
    machine_note,
    markdown_table,
    now_utc,
    run_client,
    versions,
)

LATENCY_S = (0.001, 1.0)
LIMIT = (5.0, 5000.0)
ACCOUNTS = (2, 8)
RETRY_AFTER_S = (1, 5)
CEILING_X = (1.2, 4.0)
JITTER = 0.1  # latency jitter, a share of the latency
TOLERANCES_MS = (10, 50, 200)
AU = "async_updater"
LEGACY = "aiobotocore-legacy"
LEGACY_CONCURRENCY = 64
ATTEMPTS = 8
CEILING_USERS = 60000
CEILING_S = 8.0  # how long a ceiling measurement runs at full speed (after its slow start)
DEFAULT_SEED = 10
DEFAULT_CELLS = 30
QUICK_CELLS = 6
# The four yes/no factors: per-account limit, sorted input, Retry-After, --rate ceiling.
_DESIGN = tuple(itertools.product((False, True), repeat=4))


@dataclass(frozen=True, slots=True)
class Cell:
    """One server shape and what the client is told. ``limit`` and ``burst`` are per bucket
    (one bucket, or one per account); ``ceiling_x`` times ``limit`` is the ``--rate`` given."""

    index: int
    latency_s: float
    limit: float
    burst: float
    per_account: bool
    accounts: int
    sorted_input: bool
    retry_after: int | None
    ceiling_x: float | None

    @property
    def buckets(self) -> int:
        return self.accounts if self.per_account else 1

    @property
    def capacity(self) -> float:
        """What the server accepts per second, every bucket together."""
        return self.limit * self.buckets

    @property
    def rate_ceiling(self) -> float | None:
        """async_updater's ``--rate`` (per limit scope), or None for no ceiling."""
        return None if self.ceiling_x is None else round(self.limit * self.ceiling_x, 2)

    @property
    def goodput_bar(self) -> float:
        return 0.85 if self.retry_after else 0.90

    @property
    def throttled_bar(self) -> float:
        return 0.05 if self.limit < 20 else 0.03

    def shape(self) -> str:
        parts = [
            f"{_ms(self.latency_s)}",
            f"{_num(self.limit)}/s" + (f" x{self.accounts} acct" if self.per_account else ""),
            f"burst {_num(self.burst)}",
            "sorted" if self.sorted_input else "interleaved",
        ]
        if self.retry_after:
            parts.append(f"Retry-After {self.retry_after} s")
        if self.ceiling_x is not None:
            parts.append(f"--rate {_num(self.rate_ceiling or 0)} ({self.ceiling_x:.1f}x)")
        return ", ".join(parts)


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 20 else f"{x:.3g}"


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _round_sig(x: float, digits: int = 3) -> float:
    return round(x, digits - 1 - math.floor(math.log10(abs(x)))) if x else 0.0


def draw_cell(seed: int, index: int) -> Cell:
    """Cell ``index`` (1-based) of the matrix of ``seed``; independent of how many are drawn."""
    block, offset = divmod(index - 1, len(_DESIGN))
    order = list(_DESIGN)
    random.Random(f"shapes-design-{seed}-{block}").shuffle(order)
    per_account, sorted_input, with_pause, with_ceiling = order[offset]
    rng = random.Random(f"shapes-cell-{seed}-{index}")
    latency = _round_sig(_log_uniform(rng, *LATENCY_S))
    accounts = rng.randint(*ACCOUNTS)
    top = LIMIT[1] / accounts if per_account else LIMIT[1]
    limit = _round_sig(_log_uniform(rng, LIMIT[0], max(LIMIT[0], top)))
    burst = max(1.0, float(round(_log_uniform(rng, 1.0, max(1.0, limit)))))
    pause = rng.randint(*RETRY_AFTER_S)
    ceiling = round(rng.uniform(*CEILING_X), 2)
    return Cell(
        index=index,
        latency_s=latency,
        limit=limit,
        burst=burst,
        per_account=per_account,
        accounts=accounts,
        sorted_input=sorted_input,
        retry_after=pause if with_pause else None,
        ceiling_x=ceiling if with_ceiling else None,
    )


def draw_cells(seed: int, count: int) -> list[Cell]:
    return [draw_cell(seed, i) for i in range(1, count + 1)]


@dataclass(frozen=True, slots=True)
class Sizing:
    """How big each cell is: ``seconds`` of capacity (counted at most at ``ceiling``/s), or
    ``pauses`` times the Retry-After where that is longer, clamped to ``floor``-``cap`` users.

    The bar where 429s carry Retry-After (0.85) is 0.05 below the other (0.90) for the pause
    that discovering the limit costs: one pause is 0.05 of a run 20 pauses long. A run 8 pauses
    long (this benchmark's earlier sizing) loses 0.125 to that one pause, so no client that
    obeys pauses could meet the bar there, however well it found the limit."""

    seconds: float
    floor: int
    cap: int
    ceiling: float
    pauses: float = 20.0

    def seconds_for(self, cell: Cell) -> float:
        return max(self.seconds, self.pauses * (cell.retry_after or 0))

    def users(self, cell: Cell) -> int:
        rate = min(cell.capacity, self.ceiling)
        return max(self.floor, min(self.cap, round(rate * self.seconds_for(cell))))

    def expected_s(self, cell: Cell) -> float:
        """Roughly how long one client takes on the cell at capacity (plus pauses)."""
        run = self.users(cell) / min(cell.capacity, self.ceiling)
        return run + 3 * (cell.retry_after or 0) + 10 * cell.latency_s

    def time_limit(self, cell: Cell, client: str = "async_updater") -> float:
        """A client's run is stopped after this long (the rows left are lost). The legacy
        client gets less slack: it is the reference, and at a third of the capacity it would
        set the length of the whole matrix."""
        if client == LEGACY:
            return 1.2 * self.expected_s(cell) + 10
        return 3 * self.expected_s(cell) + 30

    def estimate_s(self, cell: Cell, client: str) -> float:
        """A guess at a client's real time on the cell, process start included."""
        slow = 3.0 if client == LEGACY else 1.2
        return min(self.time_limit(cell, client), slow * self.expected_s(cell)) + 4


def records_for(cell: Cell, users: int, seed: int) -> list[UserRecord]:
    from async_updater.testing.sample import sample_records

    records = list(sample_records(users, cell.accounts, seed=seed * 1000 + cell.index))
    if cell.sorted_input:
        records.sort(key=lambda r: r.account_id)  # stable: users keep their order per account
    return records


def write_csv(path: Path, records: Sequence[UserRecord]) -> None:
    from async_updater.testing.sample import write_users

    write_users(path, iter(records))


def _bars(cell: Cell, row: Mapping[str, Any], tol_ms: int) -> dict[str, bool]:
    return {
        "lost": row["lost"] == 0,
        "goodput": row["goodput"] >= cell.goodput_bar,
        "throttled": row["throttled_share"] <= cell.throttled_bar,
        "cool-down": row["in_cooldown"][str(tol_ms)] == 0,
    }


# -- real runs --------------------------------------------------------------------------------


def _mock_args(cell: Cell) -> list[str]:
    latency_ms = cell.latency_s * 1000
    args = [
        *("--latency-ms", f"{latency_ms:g}", "--jitter-ms", f"{JITTER * latency_ms:g}"),
        *("--limit-scope", "account" if cell.per_account else "global"),
        *("--verify-fraction", "0.05", "--seed", str(cell.index)),
    ]
    if cell.retry_after:
        args.append("--record-events")
    return args


def _server_limits(cell: Cell) -> dict[str, Any]:
    return {"rate_limit": cell.limit, "burst": cell.burst, "retry_after": cell.retry_after}


def best_seconds(timeline: Mapping[str, Mapping[str, float]], span: int = 3) -> float:
    """The most the server accepted per second over ``span`` consecutive whole seconds (the
    last, partial second left out); over the whole run when it is shorter than that."""
    seconds = sorted(int(s) for s in timeline)
    if not seconds:
        return 0.0
    accepted = [timeline.get(str(s), {}).get("accepted", 0.0) for s in range(seconds[-1] + 1)]
    whole = accepted[:-1]
    if len(whole) < span:
        return sum(accepted) / max(1, len(accepted))
    return max(sum(whole[i : i + span]) / span for i in range(len(whole) - span + 1))


@dataclass(frozen=True, slots=True)
class CeilingInput:
    """The users a ceiling measurement sends: more than the machine can take in its time."""

    path: Path
    wanted: dict[tuple[str, str], dict[str, bool]]

    @classmethod
    def write(cls, folder: Path) -> CeilingInput:
        path = folder / "ceiling.csv"
        generate_input(path, CEILING_USERS, accounts=10, seed=1)
        return cls(path, expected_settings(path))


def measure_ceiling(mock: MockServer, cell: Cell, users: CeilingInput) -> float:
    """The machine's own ceiling at the cell's latency: async_updater, no ``--rate``, against
    the mock with no limit, for ``CEILING_S`` after a slow start of ~10 round trips."""
    in_flight = max(64, min(4096, math.ceil(2 * cell.capacity * cell.latency_s) + 16))
    run = run_client(
        mock,
        AU,
        users.path,
        users.wanted,
        rate=None,
        concurrency=in_flight,
        attempts=ATTEMPTS,
        time_limit=CEILING_S + 12 * cell.latency_s,
        limits={"rate_limit": None, "retry_after": None},
    )
    return best_seconds(run.server["timeline"])


def summarise(cell: Cell, run: ClientRun, capacity: float) -> dict[str, Any]:
    res, counters = run.result, run.server["counters"]
    wall = float(res["wall_s"])
    requests = counters.get("requests", 0)
    row: dict[str, Any] = {
        "goodput": run.check.applied_right / wall / capacity if wall else 0.0,
        "applied_per_s": run.check.applied_right / wall if wall else 0.0,
        "throttled_share": counters.get("throttled", 0) / requests if requests else 0.0,
        "requests": requests,
        "throttled": counters.get("throttled", 0),
        "lost": run.check.lost,
        "applied_twice": run.check.applied_twice,
        "failed_rows": res["failed"],
        "wall_s": wall,
        "timed_out": bool(res.get("timed_out", False)),
        "client_cpu_s": res["cpu_run_s"],
        "mock_cpu_s": run.mock_cpu_s,
        "errors": res.get("errors", {}),
        "cooldowns_announced": 0,
        "in_cooldown": {str(t): 0 for t in TOLERANCES_MS},
    }
    if run.events is not None and cell.retry_after:
        row["cooldowns_announced"] = sum(1 for e in run.events if e[4] == 429)
        row["in_cooldown"] = {
            str(t): cooldown_violations(
                run.events, cell.retry_after, t / 1000, per_account=cell.per_account
            )
            for t in TOLERANCES_MS
        }
        # Where the 429s and the requests around them fell, to see what a violation was.
        times = [round(e[1], 3) for e in run.events if e[4] == 429]
        row["first_429s_s"] = times[:20]
        row["last_429_s"] = times[-1] if times else None
    if res.get("rate_cuts") is not None:
        row["cuts"] = res["rate_cuts"]
        row["client_cooldowns"] = res.get("cooldowns")
    return row


def run_cell_real(
    cell: Cell,
    sizing: Sizing,
    seed: int,
    tmp: Path,
    measure_above: float,
    ceiling_users: CeilingInput | None,
) -> dict[str, Any]:
    users = sizing.users(cell)
    csv_path = tmp / f"cell{cell.index}.csv"
    write_csv(csv_path, records_for(cell, users, seed))
    wanted = expected_settings(csv_path)
    out: dict[str, Any] = {"users": users, "server_capacity": cell.capacity, "ceiling": None}
    capacity = cell.capacity
    duration = sizing.time_limit(cell) + sizing.time_limit(cell, LEGACY) + 600
    with MockServer(*_mock_args(cell), duration=duration) as mock:
        if ceiling_users is not None and cell.capacity > measure_above:
            ceiling = measure_ceiling(mock, cell, ceiling_users)
            out["ceiling"] = ceiling
            capacity = min(capacity, ceiling) if ceiling > 0 else capacity
        out["capacity"] = capacity
        out["machine_bound"] = capacity < cell.capacity
        clients: dict[str, Any] = {}
        for client in (AU, LEGACY):
            run = run_client(
                mock,
                client,
                csv_path,
                wanted,
                rate=cell.rate_ceiling if client == AU else None,
                concurrency="auto" if client == AU else LEGACY_CONCURRENCY,
                limit_scope="account" if cell.per_account and client == AU else "global",
                attempts=ATTEMPTS,
                time_limit=sizing.time_limit(cell, client),
                limits=_server_limits(cell),
                events=bool(cell.retry_after),
            )
            row = summarise(cell, run, capacity)
            row["server_timeline"] = run.server["timeline"]
            clients[client] = row
        out["clients"] = clients
    csv_path.unlink()
    return out


# -- virtual time -----------------------------------------------------------------------------


class _KeepingServer:
    """A ``SimulatedServer`` that also keeps the body of every accepted write, so the check
    can tell right settings from wrong ones (the simulated server counts paths only)."""

    def __init__(self, server: SimulatedServer) -> None:
        self.server = server
        self.bodies: dict[str, bytes] = {}

    async def send(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        response = await self.server.send(method, target, headers, body)
        if 200 <= response.status < 300:
            self.bodies[target] = body
        return response

    async def close(self) -> None:
        await self.server.close()


async def _sim_run(cell: Cell, records: list[UserRecord], time_limit: float) -> dict[str, Any]:
    server = SimulatedServer(
        ServerShape(
            limit=cell.limit,
            burst=cell.burst,
            per_account=cell.per_account,
            retry_after=float(cell.retry_after) if cell.retry_after else None,
            latency_s=cell.latency_s,
            jitter_s=JITTER * cell.latency_s,
            seed=cell.index,
        )
    )
    keeping = _KeepingServer(server)
    config = UpdaterConfig(
        endpoint_url="http://127.0.0.1:9",
        rate=cell.rate_ceiling,
        max_attempts=ATTEMPTS,
        limit_scope=LimitScope.ACCOUNT if cell.per_account else LimitScope.GLOBAL,
    )
    loop = asyncio.get_running_loop()
    credentials = StaticCredentials("AKIDMOCK", "mock-secret")
    async with Updater(config, transport=keeping, credentials=credentials) as updater:
        t0 = loop.time()
        run = asyncio.ensure_future(updater.run(records))
        done, _ = await asyncio.wait({run}, timeout=time_limit)
        if not done:
            updater.stop(cancel_in_flight=True)
        summary = await run
        wall = loop.time() - t0
    return {
        "server": server,
        "bodies": keeping.bodies,
        "wall_s": wall,
        "timed_out": not done,
        "summary": summary,
    }


def run_cell_sim(cell: Cell, sizing: Sizing, seed: int) -> dict[str, Any]:
    users = sizing.users(cell)
    records = records_for(cell, users, seed)
    wanted = {
        (r.account_id, r.user_id): {
            "InboundCalling": r.inbound_calling,
            "OutboundCalling": r.outbound_calling,
            "SMS": r.sms,
        }
        for r in records
    }
    started = time.monotonic()
    got = run_virtual(_sim_run(cell, records, sizing.time_limit(cell)))
    real_s = time.monotonic() - started
    server, wall = got["server"], got["wall_s"]
    applied = []
    for path, count in server.applied.items():
        parts = path.split("/")
        settings = json.loads(got["bodies"][path])["UserSettings"]["Telephony"]
        applied.append((unquote(parts[2]), unquote(parts[4]), settings, count))
    check = check_applied(wanted, applied)
    summary = got["summary"]
    row: dict[str, Any] = {
        "goodput": check.applied_right / wall / cell.capacity if wall else 0.0,
        "applied_per_s": check.applied_right / wall if wall else 0.0,
        "throttled_share": server.throttled / server.requests if server.requests else 0.0,
        "requests": server.requests,
        "throttled": server.throttled,
        "lost": check.lost,
        "applied_twice": check.applied_twice,
        "failed_rows": summary.counts.get("failed", 0) + summary.counts.get("invalid", 0),
        "wall_s": wall,
        "timed_out": got["timed_out"],
        "cuts": summary.cuts,
        "client_cooldowns": summary.cooldowns,
        "cooldowns_announced": len(server.cooldown_answers),
        "in_cooldown": {str(t): server.violations(t / 1000) for t in TOLERANCES_MS},
        "real_s": real_s,
    }
    return {
        "users": users,
        "server_capacity": cell.capacity,
        "capacity": cell.capacity,
        "ceiling": None,
        "machine_bound": False,
        "clients": {AU: row},
    }


# -- output -----------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _marks(cell: Cell, row: Mapping[str, Any], tol_ms: int) -> str:
    failed = [name for name, ok in _bars(cell, row, tol_ms).items() if not ok]
    if row.get("timed_out"):
        failed.append("timed out")
    return "pass" if not failed else "**FAIL** " + ", ".join(failed)


def _why(cell: Cell, row: Mapping[str, Any], tol_ms: int) -> str:
    bars = _bars(cell, row, tol_ms)
    reasons = []
    if not bars["goodput"]:
        reasons.append(f"goodput {row['goodput']:.2f} < {cell.goodput_bar:.2f}")
    if not bars["throttled"]:
        reasons.append(f"throttled {_pct(row['throttled_share'])} > {_pct(cell.throttled_bar)}")
    if not bars["lost"]:
        reasons.append(f"{row['lost']} lost" + (" (timed out)" if row["timed_out"] else ""))
    if not bars["cool-down"]:
        reasons.append(f"{row['in_cooldown'][str(tol_ms)]} sent in a cool-down (tol {tol_ms} ms)")
    return "; ".join(reasons) or f"passes (goodput {row['goodput']:.2f})"


def _severity(cell: Cell, row: Mapping[str, Any], tol_ms: int) -> tuple[int, float]:
    """Bars missed first, then the goodput's margin over its bar (lowest is worst)."""
    missed = sum(1 for ok in _bars(cell, row, tol_ms).values() if not ok)
    return (-missed, row["goodput"] / cell.goodput_bar)


def write_markdown(path: Path, doc: Mapping[str, Any], cells: Sequence[Cell]) -> None:
    tol = doc["cooldown_tol_ms"]
    clients = doc["clients"]
    results = doc["cells"]
    headers = ["cell", "shape", "users", "capacity/s"]
    for client in clients:
        name = "AU" if client == AU else "legacy"
        headers += [
            f"{name} goodput",
            f"{name} throttled",
            f"{name} lost / twice",
            f"{name} in cool-down 10/50/200 ms",
            f"{name} bars",
        ]
    rows = []
    for cell in cells:
        got = results.get(str(cell.index))
        if got is None:
            continue
        capacity = f"{got['capacity']:,.0f}" if got["capacity"] >= 20 else f"{got['capacity']:.3g}"
        if got["machine_bound"]:
            capacity += f" **machine-bound** (server {_num(cell.capacity)})"
        if got["capacity"] * cell.latency_s > DEFAULT_MAX_CONCURRENCY:
            capacity += f" (> {DEFAULT_MAX_CONCURRENCY:,} in flight)"
        line = [cell.index, cell.shape(), got["users"], capacity]
        for client in clients:
            row = got["clients"][client]
            line += [
                f"{row['goodput']:.2f}" + (" (timed out)" if row["timed_out"] else ""),
                _pct(row["throttled_share"]),
                f"{row['lost']} / {row['applied_twice']}",
                "/".join(str(row["in_cooldown"][str(t)]) for t in TOLERANCES_MS)
                if cell.retry_after
                else "-",
                _marks(cell, row, tol),
            ]
        rows.append(line)
    summary = _summary_notes(doc, cells)
    _write_markdown_file(path, doc, headers, rows, summary)


def _summary_notes(doc: Mapping[str, Any], cells: Sequence[Cell]) -> list[str]:
    """Per client: cells passing every bar, the worst and the lowest-goodput cell; then the
    machine-bound and in-flight-bound cells."""
    tol = doc["cooldown_tol_ms"]
    results = doc["cells"]
    summary = []
    for client in doc["clients"]:
        scored = [
            (cell, results[str(cell.index)]["clients"][client])
            for cell in cells
            if str(cell.index) in results
        ]
        passing = sum(1 for c, r in scored if all(_bars(c, r, tol).values()) and not r["timed_out"])
        note = f"- **{client}**: {passing} of {len(scored)} cells pass every bar"
        if scored:
            cell, row = min(scored, key=lambda cr: _severity(cr[0], cr[1], tol))
            note += (
                f"; worst cell (most bars missed) {cell.index} ({cell.shape()}): "
                f"{_why(cell, row, tol)} (throttled {_pct(row['throttled_share'])}, "
                f"wall {row['wall_s']:.1f} s)"
            )
            low, low_row = min(scored, key=lambda cr: cr[1]["goodput"])
            if low is not cell:
                note += (
                    f"; lowest goodput cell {low.index} ({low.shape()}): "
                    f"{_why(low, low_row, tol)} (throttled {_pct(low_row['throttled_share'])}, "
                    f"wall {low_row['wall_s']:.1f} s)"
                )
            note += "."
        summary.append(note)
    bound = [str(c.index) for c in cells if results.get(str(c.index), {}).get("machine_bound")]
    if bound:
        summary.append(
            f"- Machine-bound cells (capacity is the machine's measured ceiling, not the "
            f"server's): {', '.join(bound)}."
        )
    wide = [
        str(c.index)
        for c in cells
        if str(c.index) in results
        and results[str(c.index)]["capacity"] * c.latency_s > DEFAULT_MAX_CONCURRENCY
    ]
    if wide:
        summary.append(
            f"- Cells needing more than async_updater's default {DEFAULT_MAX_CONCURRENCY:,} "
            f"requests in flight to reach capacity (capacity x latency): {', '.join(wide)}."
        )
    return summary


def _write_markdown_file(
    path: Path,
    doc: Mapping[str, Any],
    headers: list[str],
    rows: list[list[Any]],
    summary: list[str],
) -> None:
    sim = doc["mode"] == "sim"
    tol = doc["cooldown_tol_ms"]
    if sim:
        how = (
            "Virtual time: a full `Updater` (pipeline, signer, controller, scheduler) over "
            "`async_updater.testing.SimulatedServer` (token bucket per scope, latency +-10%, "
            "Retry-After), no sockets and no machine ceiling; async_updater only. Cool-down bar "
            f"at tol {tol} ms."
        )
    else:
        how = (
            "Real runs on 127.0.0.1: the mock server in its own process (`--verify-fraction "
            "0.05`, latency +-10%), reset before each client; async_updater with its defaults "
            "(only `--limit-scope account` in per-account cells and `--rate` in ceiling cells), "
            f"then aiobotocore legacy (Semaphore and max_pool_connections {LEGACY_CONCURRENCY}, "
            f"legacy retry mode); {ATTEMPTS} attempts per row for both. Cool-down bar at tol "
            f"{tol} ms. Capacity = min(server capacity, machine ceiling measured at the cell's "
            f"latency where the server's is over {doc['measure_above']:g}/s)."
        )
    parts = [
        "# Shape matrix" + (" (virtual time)" if sim else ""),
        "",
        f"Run {doc['when']}; seed {doc['seed']}; {len(rows)} cells; {how}",
        "",
        f"Machine: {doc['machine']}. Versions: {doc['versions']}.",
        "",
        "Regenerate: `" + doc["command"] + "`",
        "",
        *(
            [
                "Quick run: ~5 s of capacity per cell, too short for the bars to mean much (one "
                "Retry-After pause or one slow start is a large share of such a run). It checks "
                "that the harness works; the full matrix is the measurement.",
                "",
            ]
            if doc.get("quick")
            else []
        ),
        "Goodput = users applied with the right settings / wall time / capacity. Throttled = "
        "429s / requests (server). Lost = valid users not applied with the right settings "
        "(a run stopped at its time limit loses its unsent rows). In cool-down = requests "
        "arriving inside a cool-down the server announced for their bucket, at tolerances "
        "10/50/200 ms ('-': no Retry-After in the cell). Bars: 0 lost; goodput >= 0.90 "
        "(0.85 with Retry-After); throttled <= 3% (5% where the per-bucket limit < 20/s); "
        "0 in a cool-down.",
        "",
        markdown_table(headers, rows),
        "",
        "## Summary",
        "",
        *summary,
        "",
        f"![shape matrix]({path.stem}.png)",
        "",
    ]
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def plot(path: Path, doc: Mapping[str, Any], cells: Sequence[Cell]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clients = doc["clients"]
    tol = doc["cooldown_tol_ms"]
    shown = [c for c in cells if str(c.index) in doc["cells"]]
    if not shown:
        return
    goodput = [
        [doc["cells"][str(c.index)]["clients"][k]["goodput"] for k in clients] for c in shown
    ]
    throttled = [
        [100 * doc["cells"][str(c.index)]["clients"][k]["throttled_share"] for k in clients]
        for c in shown
    ]
    names = ["async_updater" if k == AU else "legacy" for k in clients]
    labels = [f"{c.index}: {c.shape()}" for c in shown]
    fig, axes = plt.subplots(
        1,
        2,
        figsize=(9 + 2.2 * len(clients), 1.4 + 0.32 * len(shown)),
        sharey=True,
        layout="constrained",
    )
    panels = (
        (axes[0], goodput, "goodput / capacity", "RdYlGn", 0.5, 1.0, "{:.2f}", "goodput"),
        (
            axes[1],
            throttled,
            "% of requests throttled",
            "RdYlGn_r",
            0.0,
            10.0,
            "{:.1f}",
            "throttled",
        ),
    )
    for ax, data, title, cmap, vmin, vmax, fmt, bar in panels:
        ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(names)), names)
        ax.set_title(title, fontsize=9)
        for i, values in enumerate(data):
            for j, value in enumerate(values):
                row = doc["cells"][str(shown[i].index)]["clients"][clients[j]]
                bars = _bars(shown[i], row, tol)
                mark = "" if bars[bar] else " x"
                if bar == "goodput":
                    mark += ("" if bars["lost"] else " L") + ("" if bars["cool-down"] else " C")
                # The colour map's ends are dark: white text there, black in between.
                shade = min(1.0, max(0.0, (value - vmin) / (vmax - vmin)))
                colour = "white" if shade < 0.2 or shade > 0.85 else "black"
                ax.text(
                    j,
                    i,
                    fmt.format(value) + mark,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=colour,
                )
    axes[0].set_yticks(range(len(shown)), labels, fontsize=7)
    mode = "virtual time" if doc["mode"] == "sim" else "real, 127.0.0.1"
    fig.suptitle(
        f"shape matrix ({mode}, seed {doc['seed']}): x misses that bar, L lost rows, "
        f"C sent inside a cool-down (tol {tol} ms)",
        fontsize=9,
    )
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


# -- main -------------------------------------------------------------------------------------


def _parse_only(text: str) -> list[int]:
    try:
        chosen = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of cell numbers") from None
    if not chosen or chosen[0] < 1:
        raise argparse.ArgumentTypeError("cell numbers start at 1")
    return chosen


def _print_estimate(
    chosen: Sequence[Cell], sizing: Sizing, measure_above: float, sim: bool
) -> None:
    measured = sum(CEILING_S + 12 * c.latency_s + 4 for c in chosen if c.capacity > measure_above)
    estimate = measured + sum(sizing.estimate_s(c, k) for c in chosen for k in (AU, LEGACY))
    worst = measured + sum(sizing.time_limit(c, k) + 4 for c in chosen for k in (AU, LEGACY))
    print(
        f"{len(chosen)} cells, {sum(sizing.users(c) for c in chosen):,} users in all; "
        + (
            "virtual time (real time: a few seconds a cell)"
            if sim
            else f"estimate ~{estimate / 60:.0f} min (at most ~{worst / 60:.0f} min if every "
            "client ran to its time limit)"
        ),
        flush=True,
    )


def _print_cell(cell: Cell, got: Mapping[str, Any], tol: int, took: float) -> None:
    figures = "; ".join(
        f"{client} goodput {row['goodput']:.2f} throttled {_pct(row['throttled_share'])}"
        f" lost {row['lost']} twice {row['applied_twice']} in cool-down "
        + "/".join(str(row["in_cooldown"][str(t)]) for t in TOLERANCES_MS)
        + f" {_marks(cell, row, tol)}"
        for client, row in got["clients"].items()
    )
    print(
        f"cell {cell.index} [{cell.shape()}] users {got['users']} capacity "
        f"{got['capacity']:.1f}{' machine-bound' if got['machine_bound'] else ''}: "
        f"{figures} ({took:.0f} s)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("shapes", __doc__, f"{QUICK_CELLS} small cells (*_quick.*)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the matrix's seed")
    parser.add_argument("--cells", type=int, help=f"how many cells (default {DEFAULT_CELLS})")
    parser.add_argument("--only", type=_parse_only, help="re-run these cells, e.g. 3,7")
    parser.add_argument("--sim", action="store_true", help="async_updater in virtual time")
    parser.add_argument("--seconds", type=float, help="seconds of capacity per cell (15; quick 5)")
    parser.add_argument(
        "--pauses",
        type=float,
        help="where 429s carry Retry-After, a cell runs at least this many pauses long (20; "
        "quick 1; 8 was this benchmark's earlier sizing)",
    )
    parser.add_argument("--sizing-ceiling", type=float, default=2000.0, help="requests/s")
    parser.add_argument("--measure-above", type=float, default=500.0, help="requests/s")
    args = parser.parse_args(argv)
    count = args.cells or (QUICK_CELLS if args.quick else DEFAULT_CELLS)
    if count < 1:
        parser.error("--cells must be >= 1")
    cells = draw_cells(args.seed, max(count, *(args.only or [0])))
    chosen = [c for c in cells if c.index in args.only] if args.only else cells
    seconds = args.seconds or (5.0 if args.quick else 15.0)
    floor, cap = (30, 8000) if args.quick else (100, 30000)
    pauses = args.pauses or (1.0 if args.quick else 20.0)  # quick: the harness, not the bars
    if args.sim:
        # No machine in virtual time: every cell gets its seconds (or pauses) of the server's
        # capacity (the cap only bounds the simulation's own time: 20 pauses of 5 s at 5,000/s).
        sizing = Sizing(seconds, floor, cap * 20, math.inf, pauses)
    else:
        sizing = Sizing(seconds, floor, cap, args.sizing_ceiling, pauses)
    name = "shapes" + ("_sim" if args.sim else "") + ("_quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{name}.json"
    doc: dict[str, Any] = {
        "mode": "sim" if args.sim else "real",
        "seed": args.seed,
        "when": now_utc(),
        "command": command_line(),
        "machine": machine_note(),
        "versions": versions(),
        "clients": [AU] if args.sim else [AU, LEGACY],
        "cooldown_tol_ms": 10 if args.sim else 50,
        "measure_above": args.measure_above,
        "quick": args.quick,
        "sizing": asdict(sizing),
        "cells": {},
    }
    if args.only and json_path.exists():
        old = json.loads(json_path.read_text(encoding="utf-8"))
        if old.get("seed") == args.seed and old.get("mode") == doc["mode"]:
            doc["cells"] = old["cells"]  # re-run cells replace their old figures
            doc["command"] = old["command"] + "; then `" + command_line() + "`"
    _print_estimate(chosen, sizing, args.measure_above, args.sim)
    with tempfile.TemporaryDirectory(prefix="shapes-") as tmp:
        measuring = not args.sim and any(c.capacity > args.measure_above for c in chosen)
        ceiling_users = CeilingInput.write(Path(tmp)) if measuring else None
        for cell in chosen:
            started = time.monotonic()
            if args.sim:
                got = run_cell_sim(cell, sizing, args.seed)
            else:
                got = run_cell_real(
                    cell, sizing, args.seed, Path(tmp), args.measure_above, ceiling_users
                )
            got["cell"] = asdict(cell)
            doc["cells"][str(cell.index)] = got
            _print_cell(cell, got, doc["cooldown_tol_ms"], time.monotonic() - started)
            json_path.write_text(json.dumps(doc), encoding="utf-8")  # a partial run survives
    every = draw_cells(args.seed, max(int(k) for k in doc["cells"]))
    md = args.out / f"{name}.md"
    write_markdown(md, doc, every)
    plot(args.out / f"{name}.png", doc, every)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
