"""Client CPU per request, throughput and peak memory with no rate limit.

The mock server (own process, no limit, ~5 ms latency) answers every client in turn; each client
runs in its own process with 64 requests in flight over the same input. Per client:

- CPU seconds per request: the client's own ``getrusage`` (user + system) over its run, divided
  by the requests the server counted;
- requests/s: requests the server counted / the client's wall time;
- peak RSS of the client process (``VmHWM``: ``ru_maxrss`` would count the harness it was
  spawned from);
- the mock's CPU over the same run as a share of one core, read from /proc: if it is near 100%
  the mock, not the client, set the pace (the table flags it).

async_updater runs through its library API (``Updater.run`` with a ``CsvReport`` sink, so the
report it always writes is in its figures), once on asyncio's loop and once on uvloop.

    python -m benchmarks.cpu             # 20,000 users per client, a few minutes
    python -m benchmarks.cpu --quick     # 2,000 users, under a minute
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
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

# (client, loop) pairs; uvloop is skipped when it is not installed.
VARIANTS = (
    ("async_updater", "asyncio"),
    ("async_updater", "uvloop"),
    ("aiobotocore-adaptive", "asyncio"),
    ("aiobotocore-standard", "asyncio"),
    ("aiobotocore-legacy", "asyncio"),
    ("boto3-threads", "threads"),
)
MOCK_BOUND = 0.85  # mock CPU share of one core above which the mock probably set the pace


def _have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    variants = [
        (c, loop)
        for c, loop in VARIANTS
        if c in args.clients and (loop != "uvloop" or _have_uvloop())
    ]
    rows: list[dict[str, Any]] = []
    mock_args = ["--latency-ms", str(args.latency_ms), "--verify-fraction", str(args.verify)]
    with tempfile.TemporaryDirectory(prefix="cpu-bench-") as tmp:
        csv_path = Path(tmp) / "users.csv"
        generate_input(csv_path, args.users, accounts=10, seed=2)
        wanted = expected_settings(csv_path)
        with MockServer(*mock_args, duration=len(variants) * args.repeat * 400) as mock:
            for client, loop in variants:
                runs = []
                for _ in range(args.repeat):
                    run = run_client(
                        mock,
                        client,
                        csv_path,
                        wanted,
                        rate=1_000_000,
                        concurrency=args.concurrency,
                        loop="asyncio" if loop == "threads" else loop,
                        time_limit=300,
                        report=Path(tmp) / "report.csv" if client == "async_updater" else None,
                    )
                    requests = run.server["counters"].get("requests", 0)
                    wall = float(run.result["wall_s"])
                    runs.append(
                        {
                            "client": client,
                            "loop": loop,
                            "requests": requests,
                            "ok_rows": run.result["ok"],
                            "failed_rows": run.result["failed"],
                            "lost": run.check.lost,
                            "wall_s": wall,
                            "cpu_s": run.result["cpu_run_s"],
                            "cpu_ms_per_request": 1000 * run.result["cpu_run_s"] / requests,
                            "requests_per_s": requests / wall,
                            "client_cpu_share": run.result["cpu_run_s"] / wall,
                            "mock_cpu_share": run.mock_cpu_s / wall,
                            "maxrss_mb": run.result["maxrss_mb"],
                            "cpu_setup_s": run.result["cpu_setup_s"],
                        }
                    )
                    print(json.dumps(runs[-1], default=lambda x: round(x, 4)), flush=True)
                # The median run by CPU per request stands for the variant.
                runs.sort(key=lambda r: r["cpu_ms_per_request"])
                chosen = dict(runs[len(runs) // 2])
                chosen["runs"] = len(runs)
                chosen["cpu_ms_spread"] = [round(r["cpu_ms_per_request"], 4) for r in runs]
                chosen["rps_median"] = statistics.median(r["requests_per_s"] for r in runs)
                rows.append(chosen)
    return rows


def _label(row: dict[str, Any]) -> str:
    return f"{row['client']} ({row['loop']})"


def bars(rows: list[dict[str, Any]]) -> list[str]:
    aio = [r for r in rows if r["client"].startswith("aiobotocore")]
    ours = [r for r in rows if r["client"] == "async_updater"]
    if not aio or not ours:
        return ["- Bars need async_updater and at least one aiobotocore client in the run."]
    # Compare with the aiobotocore mode that did best on each measure: the harder test.
    best_cpu = min(aio, key=lambda r: r["cpu_ms_per_request"])
    best_rps = max(aio, key=lambda r: r["requests_per_s"])
    out = []
    for r in ours:
        cpu_ratio = r["cpu_ms_per_request"] / best_cpu["cpu_ms_per_request"]
        rps_ratio = r["requests_per_s"] / best_rps["requests_per_s"]
        out.append(
            f"- {_label(r)}: CPU/request {100 * cpu_ratio:.1f}% of {_label(best_cpu)}'s "
            f"(bar <= 25%: {'met' if cpu_ratio <= 0.25 else 'MISSED'}); requests/s "
            f"{rps_ratio:.2f}x {_label(best_rps)}'s (bar >= 4x: "
            f"{'met' if rps_ratio >= 4 else 'MISSED'})"
            + (
                f"; the mock used {100 * r['mock_cpu_share']:.0f}% of a core, so it may have "
                "capped this client's requests/s"
                if r["mock_cpu_share"] >= MOCK_BOUND
                else ""
            )
            + "."
        )
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_label(r) for r in rows]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 0.5 * len(rows) + 1.8), sharey=True)
    colours = ["tab:blue" if r["client"] == "async_updater" else "tab:gray" for r in rows]
    panels = [
        (ax1, [1000 * r["cpu_ms_per_request"] for r in rows], "client CPU per request (µs)",
         "CPU per request (lower is better)", "{:.0f}"),
        (ax2, [r["requests_per_s"] for r in rows], "requests/s",
         "throughput, 64 in flight, 5 ms latency (higher is better)", "{:.0f}"),
        (ax3, [r["maxrss_mb"] for r in rows], "peak RSS (MB)", "client peak memory", "{:.0f}"),
    ]  # fmt: skip
    for ax, values, xlabel, title, fmt in panels:
        bars = ax.barh(labels, values, color=colours)
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=3, fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, max(values) * 1.18)
        ax.grid(axis="x", alpha=0.3)
    ax1.invert_yaxis()  # first client on top
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_markdown(path: Path, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    table = markdown_table(
        [
            "client",
            "requests",
            "lost",
            "wall s",
            "client CPU s",
            "CPU µs/request",
            "requests/s",
            "client CPU share",
            "mock CPU share",
            "peak RSS MB",
        ],
        [
            [
                _label(r),
                r["requests"],
                r["lost"],
                f"{r['wall_s']:.2f}",
                f"{r['cpu_s']:.2f}",
                f"{1000 * r['cpu_ms_per_request']:.0f}",
                f"{r['requests_per_s']:.0f}",
                f"{100 * r['client_cpu_share']:.0f}%",
                f"{100 * r['mock_cpu_share']:.0f}%"
                + (" (mock-bound?)" if r["mock_cpu_share"] >= MOCK_BOUND else ""),
                f"{r['maxrss_mb']:.0f}",
            ]
            for r in rows
        ],
    )
    text = [
        "# Client CPU per request",
        "",
        f"Run {now_utc()}; {args.users} users over 10 accounts per client, mock with no rate "
        f"limit, {args.latency_ms:g} ms latency, --verify-fraction {args.verify:g}; "
        f"{args.concurrency} requests in flight for every client (async_updater "
        "--concurrency, aiobotocore Semaphore + max_pool_connections, boto3 threads + pool); "
        f"median of {args.repeat} run(s) per client by CPU per request.",
        "",
        f"Machine: {machine_note()}. Versions: {versions()}.",
        "",
        "Regenerate: `" + command_line() + "`",
        "",
        "CPU = the client process's own getrusage (user + system) from the start signal to the "
        "end of its run (imports, client construction and credential lookup excluded); "
        "requests as counted by the server. Mock CPU share = the mock's CPU over the run / "
        "wall time (1.0 = one core busy); client CPU share likewise for the client.",
        "",
        table,
        "",
        "## Bars",
        "",
        *bars(rows),
        "",
        "![cpu](cpu.png)" if not args.quick else "![cpu](cpu_quick.png)",
        "",
    ]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("cpu", __doc__, "small sizes, under a minute")
    parser.add_argument("--users", type=int, help="users per client (default 20000; quick 2000)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument(
        "--verify",
        type=float,
        default=0.05,
        help="mock --verify-fraction: share of signatures recomputed (default 0.05, for headroom)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per client (median kept)")
    parser.add_argument(
        "--clients",
        nargs="+",
        default=sorted({c for c, _ in VARIANTS}),
        choices=sorted({c for c, _ in VARIANTS}),
    )
    args = parser.parse_args(argv)
    args.users = args.users or (2000 if args.quick else 20000)
    if args.quick:
        args.clients = [c for c in args.clients if c in ("async_updater", "aiobotocore-adaptive")]
    rows = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    plot(rows, args.out / f"cpu{suffix}.png")
    write_markdown(args.out / f"cpu{suffix}.md", rows, args)
    (args.out / f"cpu{suffix}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    for line in bars(rows):
        print(line)
    print(f"wrote {args.out / f'cpu{suffix}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
