"""Memory stays flat in the input size and in the number of limit scopes.

The input is generated once (deterministic, cached in the temp dir) and run through async_updater
(library API, CSV report written to disk as the CLI does) against the mock server in its own
process with no rate limit and 1 ms latency. Afterwards the server's applied state is compared
with the input: nothing may be lost or applied twice. The client's peak RSS (``VmHWM``, its own) and
its RSS sampled once a second are reported; the bar is peak RSS <= 150 MB at 1,000,000 rows, with
one global limit over 100 accounts and with ``--limit-scope account`` and one account per user
(then the client keeps a limit per account: idle ones must be forgotten).

    python -m benchmarks.memory                  # 1,000,000 and 10,000 rows, both scopes (minutes)
    python -m benchmarks.memory --rows 200000    # another large size
    python -m benchmarks.memory --accounts rows --limit-scope account   # that scope alone
    python -m benchmarks.memory --quick          # 30,000 and 3,000 rows, about a minute

Without ``--accounts`` and ``--limit-scope`` both cases run: 100 accounts under a global scope, and
one account per user under ``--limit-scope account``. With either, only the case asked for runs
(``--accounts`` defaults to 100, ``--limit-scope`` to global).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import (
    MockServer,
    bench_parser,
    command_line,
    expected_settings,
    generate_input,
    machine_note,
    markdown_table,
    now_utc,
    run_client,
    versions,
)

BAR_MB = 150.0
DEFAULT_ACCOUNTS = 100
# A client gets rows / this many seconds (and at least a minute): several times slower than a
# quiet machine's ~7,000 rows/s, so a busy machine is not cut short but a hang still ends.
SLOWEST_ROWS_PER_S = 600.0
MIN_TIME_LIMIT_S = 60.0


@dataclass(frozen=True)
class Case:
    """How the rows are spread over accounts (None: one account per user) and limited."""

    accounts: int | None
    scope: str

    def accounts_for(self, rows: int) -> int:
        return rows if self.accounts is None else min(self.accounts, rows)

    def spread(self, rows: int) -> str:
        accounts = self.accounts_for(rows)
        return "one account per user" if accounts == rows else f"{accounts:,} accounts"


def parse_accounts(text: str) -> int | None:
    """``rows`` (one account per user) or a count >= 1; ValueError otherwise."""
    if text == "rows":
        return None
    n = int(text)
    if n < 1:
        raise ValueError(text)
    return n


def cases(accounts: str | None, scope: str | None) -> list[Case]:
    """What a run measures: both cases by default, else the one asked for."""
    if accounts is None and scope is None:
        return [Case(DEFAULT_ACCOUNTS, "global"), Case(None, "account")]
    spread = DEFAULT_ACCOUNTS if accounts is None else parse_accounts(accounts)
    return [Case(spread, scope or "global")]


def input_file(rows: int, accounts: int) -> Path:
    """The cached input of ``rows`` users over ``accounts`` accounts (generated on first use)."""
    folder = Path(tempfile.gettempdir()) / "async_updater_bench"
    folder.mkdir(exist_ok=True)
    path = folder / f"users_{rows}_over_{accounts}.csv"
    if not path.exists():
        started = time.monotonic()
        partial = path.with_suffix(".partial")
        generate_input(partial, rows, accounts=accounts, seed=3)
        partial.rename(path)
        print(f"generated {path} in {time.monotonic() - started:.0f} s", flush=True)
    return path


def time_limit(rows: int) -> float:
    return max(MIN_TIME_LIMIT_S, rows / SLOWEST_ROWS_PER_S)


def measure(rows: int, case: Case, concurrency: int, loop: str) -> dict[str, Any]:
    accounts = case.accounts_for(rows)
    csv_path = input_file(rows, accounts)
    wanted = expected_settings(csv_path)
    limit = time_limit(rows)
    with (
        tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp,
        MockServer("--latency-ms", "1", "--verify-fraction", "0.05", duration=limit + 600) as mock,
    ):
        run = run_client(
            mock,
            "async_updater",
            csv_path,
            wanted,
            rate=1_000_000,
            concurrency=concurrency,
            loop=loop,
            time_limit=limit,
            report=Path(tmp) / "report.csv",
            limit_scope=case.scope,
        )
        with open(Path(tmp) / "report.csv", encoding="utf-8") as report:
            report_lines = sum(1 for _ in report) - 1  # less the header
    del wanted
    res = run.result
    return {
        "rows": rows,
        "accounts": accounts,
        "scope": case.scope,
        "spread": case.spread(rows),
        "input_mb": csv_path.stat().st_size / 2**20,
        "updated": res["ok"],
        "failed": res["failed"],
        "report_rows": report_lines,
        "lost": run.check.lost,
        "applied_twice": run.check.applied_twice,
        "requests": run.server["counters"].get("requests", 0),
        "wall_s": res["wall_s"],
        "rows_per_s": rows / res["wall_s"],
        "maxrss_mb": res["maxrss_mb"],
        "timed_out": res["timed_out"],
        "time_limit_s": limit,
        "rss_samples": res.get("rss_samples", []),
        "loop": loop,
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for r in results:
        samples = r["rss_samples"]
        ax.plot(
            [done for _, done, _ in samples],
            [mb for _, _, mb in samples],
            marker=".",
            linestyle="-" if r["scope"] == "global" else "--",
            label=f"{r['rows']:,} rows, {r['scope']} scope, {r['spread']} "
            f"(peak {r['maxrss_mb']:.0f} MB)",
        )
    ax.axhline(BAR_MB, color="red", linestyle=":", label=f"bar: {BAR_MB:.0f} MB")
    ax.set_xscale("symlog", linthresh=1000)
    ax.set_xlim(left=0)  # symlog would otherwise show an empty negative half
    ax.set_xlabel("rows finished (linear to 1,000, then log scale)")
    ax.set_ylabel("client RSS (MB)")
    top = max([BAR_MB, *(r["maxrss_mb"] for r in results)])
    ax.set_ylim(0, top * 1.3)
    ax.set_title("async_updater client memory while it runs (sampled once a second)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def bar_line(group: list[dict[str, Any]]) -> str:
    """Whether one case (one scope and spread of accounts) meets the bar at its largest size."""
    big = max(group, key=lambda r: r["rows"])
    small = min(group, key=lambda r: r["rows"])
    ok = big["maxrss_mb"] <= BAR_MB and all(r["lost"] == 0 and not r["timed_out"] for r in group)
    line = (
        f"- Bar, {big['scope']} scope (peak RSS <= {BAR_MB:.0f} MB at {big['rows']:,} rows "
        f"over {big['spread']}, 0 lost): {'met' if ok else 'MISSED'}: "
        f"peak {big['maxrss_mb']:.0f} MB"
    )
    if small is not big:
        line += (
            f" against {small['maxrss_mb']:.0f} MB at {small['rows']:,} rows "
            f"({big['maxrss_mb'] - small['maxrss_mb']:+.0f} MB for "
            f"{big['rows'] / small['rows']:.0f}x the rows)"
        )
    lost = sum(r["lost"] for r in group)
    if lost:
        line += f"; {lost:,} lost"
    timed_out = [r for r in group if r["timed_out"]]
    if timed_out:
        line += "; timed out at " + ", ".join(
            f"{r['rows']:,} rows ({r['time_limit_s']:.0f} s)" for r in timed_out
        )
    return line + "."


def write_markdown(path: Path, results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    table = markdown_table(
        [
            "rows",
            "accounts",
            "scope",
            "updated",
            "failed",
            "report rows",
            "lost",
            "applied twice",
            "wall s",
            "rows/s",
            "peak RSS MB",
        ],
        [
            [
                f"{r['rows']:,}",
                f"{r['accounts']:,}",
                r["scope"],
                r["updated"],
                r["failed"],
                r["report_rows"],
                r["lost"],
                r["applied_twice"],
                f"{r['wall_s']:.0f}",
                f"{r['rows_per_s']:.0f}",
                f"{r['maxrss_mb']:.0f}",
            ]
            for r in results
        ],
    )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        per_user = r["accounts"] == r["rows"]
        groups.setdefault((r["scope"], "per user" if per_user else str(r["accounts"])), []).append(
            r
        )
    lines = [
        "# Memory in the input size and the number of limit scopes",
        "",
        f"Run {now_utc()}; async_updater on {args.loop} (library API, CSV report on disk, "
        f"--concurrency {args.concurrency}, no rate limit) against the mock (no limit, 1 ms "
        "latency, --verify-fraction 0.05) in its own process. Each client process had a "
        f"second per {SLOWEST_ROWS_PER_S:,.0f} rows (at least {MIN_TIME_LIMIT_S:.0f} s) to "
        "finish.",
        "",
        f"Machine: {machine_note()}. Versions: {versions()}.",
        "",
        "Regenerate: `" + command_line() + "`",
        "",
        table,
        "",
        *(bar_line(group) for group in groups.values()),
        "- Lost = valid input users that the server does not hold with the right settings "
        "afterwards (its applied state read back over /_mock/applied).",
        "",
        f"![memory]({path.stem}.png)",
        "",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("memory", __doc__, "30,000 and 3,000 rows")
    parser.add_argument("--rows", type=int, help="the large size (default 1,000,000)")
    parser.add_argument("--small", type=int, help="the small size (default 10,000)")
    parser.add_argument(
        "--accounts",
        help=f"accounts the rows are spread over: a count, or 'rows' for one account per user "
        f"(default {DEFAULT_ACCOUNTS}; see above for the default run)",
    )
    parser.add_argument(
        "--limit-scope",
        choices=("global", "account"),
        help="the client's limit scope (default global; see above for the default run)",
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    try:
        measured = cases(args.accounts, args.limit_scope)
    except ValueError:
        parser.error(f"--accounts: {args.accounts!r} is not 'rows' or a count >= 1")
    rows = args.rows or (30_000 if args.quick else 1_000_000)
    small = args.small or (3_000 if args.quick else 10_000)
    results = []
    for case in measured:
        for n in (small, rows):
            result = measure(n, case, args.concurrency, args.loop)
            shown = {k: v for k, v in result.items() if k != "rss_samples"}
            print(json.dumps(shown, default=lambda x: round(x, 2)), flush=True)
            results.append(result)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    write_markdown(args.out / f"memory{suffix}.md", results, args)
    plot(results, args.out / f"memory{suffix}.png")
    (args.out / f"memory{suffix}.json").write_text(json.dumps(results), encoding="utf-8")
    print(f"wrote {args.out / f'memory{suffix}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
