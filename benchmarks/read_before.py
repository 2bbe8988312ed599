"""Reading before writing, side by side with writing alone, under one server limit.

With ``--read-before`` every user costs two requests (a GET, then the PUT), both under the same
limit, so a run should reach half the updates per second of a plain run (the bar: within 10%
of half). One mock server (its own process; global limit, ~20 ms latency) serves both runs of
the same input, each from a fresh server state; the client is the library in this process.

    python -m benchmarks.read_before            # 8,000 users at 400/s
    python -m benchmarks.read_before --quick    # 2,000 users
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from async_updater import CsvSource, MemoryReport, StaticCredentials, Updater, UpdaterConfig
from benchmarks.common import (
    MockServer,
    bench_parser,
    command_line,
    generate_input,
    machine_note,
    markdown_table,
    now_utc,
)

LIMIT = 400.0


async def one_run(url: str, csv_path: Path, *, read_before: bool) -> dict[str, Any]:
    config = UpdaterConfig(endpoint_url=url, read_before=read_before)
    sink = MemoryReport()
    async with Updater(config, credentials=StaticCredentials("AKIDMOCK", "mock-secret")) as up:
        started = time.monotonic()
        summary = await up.run(CsvSource(csv_path), sink)
        wall = time.monotonic() - started
    updated = summary.counts.get("updated", 0)
    return {
        "read_before": read_before,
        "users": len(sink.results),
        "updated": updated,
        "requests": summary.requests,
        "wall_s": wall,
        "updates_per_s": updated / wall,
        "requests_per_s": summary.requests / wall,
        "throttles": summary.throttles,
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("read_before", __doc__, "2,000 users")
    args = parser.parse_args(argv)
    users = 2000 if args.quick else 8000
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="read-before-") as tmp:
        csv_path = Path(tmp) / "users.csv"
        generate_input(csv_path, users, accounts=10, seed=5)
        with MockServer(
            "--rate-limit", str(LIMIT), "--burst", str(LIMIT / 10), "--latency-ms", "20",
            "--jitter-ms", "2", duration=1800,
        ) as mock:  # fmt: skip
            for read_before in (False, True):
                mock.reset()
                row = asyncio.run(one_run(mock.url, csv_path, read_before=read_before))
                row["server"] = mock.get("/_mock/state")["counters"]
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "server"}), flush=True)
    plain, reading = rows
    ratio = reading["updates_per_s"] / (plain["updates_per_s"] / 2)
    table = markdown_table(
        ["run", "users", "requests", "requests/s", "updates/s", "throttled", "wall s"],
        [
            [
                "--read-before" if r["read_before"] else "plain",
                r["users"],
                r["requests"],
                f"{r['requests_per_s']:.0f}",
                f"{r['updates_per_s']:.0f}",
                r["throttles"],
                f"{r['wall_s']:.1f}",
            ]
            for r in rows
        ],
    )
    text = "\n".join(
        [
            "# Reading before writing, under one limit",
            "",
            f"Run {now_utc()}; {users} users; mock limit {LIMIT:g}/s (burst {LIMIT / 10:g}), "
            f"20 ms +- 2 ms latency; no --rate, --concurrency auto. Machine: {machine_note()}.",
            "",
            "Regenerate: `" + command_line() + "`",
            "",
            table,
            "",
            f"Updates/s with --read-before = {ratio:.1%} of half the plain run's (bar: within "
            f"10%, i.e. 90% to 110%): {'met' if 0.9 <= ratio <= 1.1 else 'MISSED'}.",
            "",
        ]
    )
    suffix = "_quick" if args.quick else ""
    (args.out / f"read_before{suffix}.md").write_text(text, encoding="utf-8")
    (args.out / f"read_before{suffix}.json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
