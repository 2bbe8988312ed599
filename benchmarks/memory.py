"""Memory stays flat in the input size: a large input through async_updater, and a small one.

The input is generated once (deterministic, cached in the temp dir) and run through async_updater
(library API, CSV report written to disk as the CLI does) against the mock server in its own
process with no rate limit and 1 ms latency. Afterwards the server's applied state is compared
with the input: nothing may be lost or applied twice. The client's peak RSS (``VmHWM``, its own) and
its RSS sampled once a second are reported; the bar is peak RSS <= 150 MB at 1,000,000 rows.

    python -m benchmarks.memory                  # 1,000,000 and 10,000 rows (several minutes)
    python -m benchmarks.memory --rows 200000    # another large size
    python -m benchmarks.memory --quick          # 30,000 and 3,000 rows, under a minute
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
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


def input_file(rows: int) -> Path:
    """The cached input of ``rows`` users (generated on first use)."""
    folder = Path(tempfile.gettempdir()) / "async_updater_bench"
    folder.mkdir(exist_ok=True)
    path = folder / f"users_{rows}.csv"
    if not path.exists():
        started = time.monotonic()
        partial = path.with_suffix(".partial")
        generate_input(partial, rows, accounts=100, seed=3)
        partial.rename(path)
        print(f"generated {path} in {time.monotonic() - started:.0f} s", flush=True)
    return path


def measure(rows: int, concurrency: int, loop: str) -> dict[str, Any]:
    csv_path = input_file(rows)
    wanted = expected_settings(csv_path)
    with (
        tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp,
        MockServer("--latency-ms", "1", "--verify-fraction", "0.05", duration=3600) as mock,
    ):
        run = run_client(
            mock,
            "async_updater",
            csv_path,
            wanted,
            rate=1_000_000,
            concurrency=concurrency,
            loop=loop,
            time_limit=3000,
            report=Path(tmp) / "report.csv",
        )
        with open(Path(tmp) / "report.csv", encoding="utf-8") as report:
            report_lines = sum(1 for _ in report) - 1  # less the header
    del wanted
    res = run.result
    return {
        "rows": rows,
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
            label=f"{r['rows']:,} rows (peak {r['maxrss_mb']:.0f} MB)",
        )
    ax.axhline(BAR_MB, color="red", linestyle="--", label=f"bar: {BAR_MB:.0f} MB")
    ax.set_xscale("symlog", linthresh=1000)
    ax.set_xlim(left=0)  # symlog would otherwise show an empty negative half
    ax.set_xlabel("rows finished (linear to 1,000, then log scale)")
    ax.set_ylabel("client RSS (MB)")
    ax.set_ylim(0, BAR_MB * 1.3)
    ax.set_title("async_updater client memory while it runs (sampled once a second)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_markdown(path: Path, results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    table = markdown_table(
        [
            "rows",
            "input MB",
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
                f"{r['input_mb']:.0f}",
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
    big = max(results, key=lambda r: r["rows"])
    small = min(results, key=lambda r: r["rows"])
    ok = big["maxrss_mb"] <= BAR_MB and all(r["lost"] == 0 for r in results)
    lines = [
        "# Memory in the input size",
        "",
        f"Run {now_utc()}; async_updater on {args.loop} (library API, CSV report on disk, "
        f"--concurrency {args.concurrency}, no rate limit) against the mock (no limit, 1 ms "
        "latency, --verify-fraction 0.05) in its own process.",
        "",
        f"Machine: {machine_note()}. Versions: {versions()}.",
        "",
        "Regenerate: `" + command_line() + "`",
        "",
        table,
        "",
        f"- Bar (peak RSS <= {BAR_MB:.0f} MB at {big['rows']:,} rows, 0 lost): "
        f"{'met' if ok else 'MISSED'}: peak {big['maxrss_mb']:.0f} MB against "
        f"{small['maxrss_mb']:.0f} MB at {small['rows']:,} rows "
        f"({big['maxrss_mb'] - small['maxrss_mb']:+.0f} MB for "
        f"{big['rows'] / small['rows']:.0f}x the rows).",
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
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    rows = args.rows or (30_000 if args.quick else 1_000_000)
    small = args.small or (3_000 if args.quick else 10_000)
    results = []
    for n in (small, rows):
        result = measure(n, args.concurrency, args.loop)
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
