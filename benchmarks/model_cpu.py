"""Client CPU per request: an operation serialized by botocore from its model (Cognito
AdminUpdateUserAttributes, awsJson1.1) against Chime's hand-written fast path, side by side.

Two mock servers in their own processes, one in Chime mode and one in Cognito mode, both with no
rate limit and ~5 ms latency; async_updater in its own process per run, through its library API
with a CSV report, 64 requests in flight, the same number of users. Runs alternate between the
two so a busy neighbour on the machine weighs on both alike; the median run of each stands.
CPU per request = the client's own ``getrusage`` over its run / requests the server counted.
Bar: the model operation within 1.5x the fast path.

    python -m benchmarks.model_cpu             # 20,000 users, 3 runs each, a few minutes
    python -m benchmarks.model_cpu --quick     # 2,000 users, 1 run each
"""

from __future__ import annotations

import argparse
import csv
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

BAR = 1.5
VARIANTS = (
    ("chime", "async_updater", "Chime UpdateUserSettings, fast path (restJson1)"),
    ("cognito", "async_updater-cognito", "Cognito AdminUpdateUserAttributes, model (awsJson1.1)"),
)


def cognito_input(path: Path, users: int) -> dict[tuple[str, str], dict[str, str]]:
    """A Cognito CSV (pool,username,email,team) and what the server should hold after it."""
    wanted: dict[tuple[str, str], dict[str, str]] = {}
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pool", "username", "email", "team"])
        for i in range(users):
            pool, user = f"us-east-1_pool{i % 10}", f"user-{i:07d}"
            email, team = f"user{i}@example.com", f"team {i % 13}"
            w.writerow([pool, user, email, team])
            wanted[(pool, user)] = {"email": email, "custom:team": team}
    return wanted


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in VARIANTS}
    mock_args = ["--latency-ms", str(args.latency_ms), "--verify-fraction", str(args.verify)]
    with tempfile.TemporaryDirectory(prefix="model-cpu-") as tmp:
        chime_csv, cognito_csv = Path(tmp) / "chime.csv", Path(tmp) / "cognito.csv"
        generate_input(chime_csv, args.users, accounts=10, seed=2)
        inputs = {
            "chime": (chime_csv, expected_settings(chime_csv)),
            "cognito": (cognito_csv, cognito_input(cognito_csv, args.users)),
        }
        duration = 2 * args.repeat * 400
        with (
            MockServer(*mock_args, duration=duration) as chime_mock,
            MockServer(*mock_args, "--api", "cognito", duration=duration) as cognito_mock,
        ):
            mocks = {"chime": chime_mock, "cognito": cognito_mock}
            for _ in range(args.repeat):
                for name, client, _ in VARIANTS:
                    path, wanted = inputs[name]
                    run = run_client(
                        mocks[name],
                        client,
                        path,
                        wanted,  # type: ignore[arg-type]
                        rate=1_000_000,
                        concurrency=args.concurrency,
                        time_limit=300,
                        report=Path(tmp) / f"{name}.report.csv",
                    )
                    requests = run.server["counters"].get("requests", 0)
                    row = {
                        "variant": name,
                        "requests": requests,
                        "ok_rows": run.result["ok"],
                        "lost": run.check.lost,
                        "wall_s": run.result["wall_s"],
                        "cpu_s": run.result["cpu_run_s"],
                        "cpu_us_per_request": 1e6 * run.result["cpu_run_s"] / requests,
                        "requests_per_s": requests / run.result["wall_s"],
                        "mock_cpu_share": run.mock_cpu_s / run.result["wall_s"],
                    }
                    runs[name].append(row)
                    print(json.dumps(row, default=lambda x: round(x, 4)), flush=True)
    rows = []
    for name, _, label in VARIANTS:
        ordered = sorted(runs[name], key=lambda r: r["cpu_us_per_request"])
        chosen = dict(ordered[len(ordered) // 2])
        chosen["label"] = label
        chosen["spread_us"] = [round(r["cpu_us_per_request"], 1) for r in ordered]
        chosen["rps_median"] = statistics.median(r["requests_per_s"] for r in ordered)
        rows.append(chosen)
    return rows


def verdict(rows: list[dict[str, Any]]) -> str:
    chime, cognito = rows
    ratio = cognito["cpu_us_per_request"] / chime["cpu_us_per_request"]
    return (
        f"model operation / fast path = {ratio:.2f}x CPU per request "
        f"({cognito['cpu_us_per_request']:.0f} vs {chime['cpu_us_per_request']:.0f} µs; "
        f"bar <= {BAR}x: {'met' if ratio <= BAR else 'MISSED'}); lost: "
        f"{chime['lost']} and {cognito['lost']}"
    )


def write_markdown(path: Path, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    table = markdown_table(
        ["operation", "requests", "lost", "CPU µs/request", "runs (µs)", "requests/s", "mock CPU"],
        [
            [
                r["label"],
                r["requests"],
                r["lost"],
                f"{r['cpu_us_per_request']:.0f}",
                ", ".join(f"{x:.0f}" for x in r["spread_us"]),
                f"{r['rps_median']:.0f}",
                f"{100 * r['mock_cpu_share']:.0f}%",
            ]
            for r in rows
        ],
    )
    text = [
        "# Client CPU per request: model operation vs Chime fast path",
        "",
        f"Run {now_utc()}; {args.users} users per run, mocks with no rate limit, "
        f"{args.latency_ms:g} ms latency, --verify-fraction {args.verify:g}; async_updater with "
        f"{args.concurrency} requests in flight and a CSV report; {args.repeat} run(s) each, "
        "alternating, median by CPU per request.",
        "",
        f"Machine: {machine_note()}. Versions: {versions()}.",
        "",
        "Regenerate: `" + command_line() + "`",
        "",
        table,
        "",
        "Bar: " + verdict(rows) + ".",
        "",
    ]
    path.write_text("\n".join(text), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("model_cpu", __doc__, "2,000 users, one run each")
    parser.add_argument("--users", type=int, help="users per run (default 20000; quick 2000)")
    parser.add_argument("--repeat", type=int, help="runs per operation (default 3; quick 1)")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--verify", type=float, default=0.05, help="mock --verify-fraction")
    args = parser.parse_args(argv)
    args.users = args.users or (2000 if args.quick else 20000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    rows = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    write_markdown(args.out / f"model_cpu{suffix}.md", rows, args)
    (args.out / f"model_cpu{suffix}.json").write_text(json.dumps(rows, indent=1), "utf-8")
    print(verdict(rows))
    print(f"wrote {args.out / f'model_cpu{suffix}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
