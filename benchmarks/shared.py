"""Shards sharing one limit through Redis, side by side with the same shards each on its own.

Every run starts one mock server (its own process; one global limit, ~20 ms latency) and N
shards of one input as separate ``async-updater run --shard K/N`` processes, all started at
once, each with a ceiling 3x the limit (``--rate``). With ``--shared-limit`` they share one
real ``redis-server`` (started here on a free loopback port). The shards run at a lower CPU
priority than the mock and Redis (``--client-nice``, default 10), which stand for remote
services: on a small machine the clients would otherwise starve the mock's process, and its
clock would run behind theirs. Runs:

  retry-after  8 shards, every 429 carries Retry-After: 1   (shared, then not shared)
  plain        8 shards, no Retry-After                     (shared, then not shared)
  redis-killed 4 shards sharing, Redis killed (kill -9) 6 s into the run

Per run: goodput (users applied with the right settings per second of the server's busy
time, from its first request to its last accepted one, over the limit: the shards' own
start-up is not rate control), throttled share, requests sent inside an announced cool-down
(arriving more than 50 ms after a 429 with Retry-After and before it ended: in the pause's
first half, shards late to stop; in its second, shards back too soon), lost users, every
shard's exit code, and how soon the mock answered (the 99th percentile: its set 20 +- 2 ms,
or more if it was starved).

    python -m benchmarks.shared                 # the full runs (~5 minutes)
    python -m benchmarks.shared --quick         # small sizes
    python -m benchmarks.shared --events DIR    # also keep each run's mock event log
    python -m benchmarks.shared --client-nice 0 # everything at one CPU priority
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from async_updater.testing.redis_server import RedisServer
from benchmarks.common import (
    MockServer,
    answer_latency,
    bench_parser,
    check_applied,
    client_env,
    command_line,
    cooldown_violations_split,
    expected_settings,
    generate_input,
    lower_priority,
    machine_note,
    markdown_table,
    now_utc,
)

LIMIT = 800.0
# The shards run this much below the CPU priority of the mock server and Redis, which stand
# for remote services: on one small machine, eight busy clients would otherwise starve the
# server's process, so that it sees their requests late and in clumps (measured on 2 cores:
# its answers p99 134 ms instead of 20 +- 2 ms, and 5.7% of requests throttled against
# 1.2-1.4% in runs where it kept up), which no remote server of one client's would do.
CLIENT_NICE = 10
ROOT = Path(__file__).resolve().parents[1]


def run_shards(
    mock: MockServer,
    csv_path: Path,
    out: Path,
    *,
    shards: int,
    redis_url: str | None,
    retry_after: float | None,
    kill_redis: RedisServer | None = None,
    kill_after: float = 6.0,
    time_limit: float = 300.0,
    events_to: Path | None = None,
    nice: int = CLIENT_NICE,
) -> dict[str, Any]:
    mock.reset(rate_limit=LIMIT, burst=LIMIT / 10, retry_after=retry_after)
    procs: list[subprocess.Popen[str]] = []
    env = client_env()
    started = time.monotonic()
    for k in range(shards):
        cmd = [
            sys.executable, "-m", "async_updater", "run", str(csv_path),
            "--endpoint-url", mock.url, "--shard", f"{k}/{shards}", "--rate", str(3 * LIMIT),
            "--report", str(out / f"shard{k}.csv"), "--overwrite", "--no-progress",
            "--summary-json", str(out / f"shard{k}.json"), "--max-failures", "100%",
        ]  # fmt: skip
        if redis_url:
            cmd += ["--shared-limit", redis_url]
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=lower_priority(nice),
            )
        )
    killer = None
    if kill_redis is not None:
        killer = threading.Timer(kill_after, kill_redis.kill)
        killer.start()
    codes = []
    notices = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=time_limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        codes.append(proc.returncode)
        notices += [line for line in err.splitlines() if "shared limit" in line]
    if killer is not None:
        killer.cancel()
    wall = time.monotonic() - started
    state = mock.get("/_mock/state")
    events = mock.get("/_mock/events")["events"]
    check = check_applied(expected_settings(csv_path), mock.get("/_mock/applied"))
    arrivals = [e[0] for e in events]
    accepted_at = [e[0] for e in events if e[4] == 204]
    busy = (max(accepted_at) - min(arrivals)) if accepted_at else wall
    took = answer_latency(events, 0.99)
    counters = state["counters"]
    requests = counters.get("requests", 0)
    late_to_stop, too_soon = (
        cooldown_violations_split(events, retry_after, 0.05) if retry_after else (0, 0)
    )
    if events_to is not None:  # the mock's log of the run, to trace what the table only counts
        events_to.write_text(json.dumps(events), encoding="utf-8")
    return {
        "shards": shards,
        "shared": bool(redis_url),
        "retry_after": retry_after,
        "redis_killed": kill_redis is not None,
        "exit_codes": codes,
        "wall_s": wall,
        "busy_s": busy,
        "applied": check.applied_right,
        "lost": check.lost,
        "applied_twice": check.applied_twice,
        "goodput": check.applied_right / busy / LIMIT if busy else 0.0,
        "throttled_share": counters.get("throttled", 0) / requests if requests else 0.0,
        "requests": requests,
        "violations_50ms": late_to_stop + too_soon,
        "violations_late_to_stop": late_to_stop,
        "violations_back_too_soon": too_soon,
        "mock_answer_p99_s": took,
        "nice": nice,
        "notices": sorted(set(n.partition("shared limit: ")[2][:60] for n in notices)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("shared", __doc__, "small sizes")
    parser.add_argument("--users", type=int, help="users (default 20000; quick 4000)")
    parser.add_argument(
        "--events",
        type=Path,
        metavar="DIR",
        help="also write each run's mock event log (arrived, answered, account, user, status) "
        "to DIR, one JSON file per run",
    )
    parser.add_argument(
        "--client-nice",
        type=int,
        default=CLIENT_NICE,
        metavar="N",
        help=f"run the shards N steps below the CPU priority of the mock server and Redis, as "
        f"nice(1) does (default {CLIENT_NICE}: they stand for remote services, which the "
        "clients must not starve; 0 runs everything at one priority)",
    )
    args = parser.parse_args(argv)
    users = args.users or (4000 if args.quick else 20000)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    if args.events is not None:
        args.events.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shared-bench-") as tmp:
        work = Path(tmp)
        csv_path = work / "users.csv"
        generate_input(csv_path, users, accounts=16, seed=3)
        with MockServer(
            "--rate-limit", str(LIMIT), "--latency-ms", "20", "--jitter-ms", "2",
            "--record-events", duration=3600,
        ) as mock:  # fmt: skip
            plan = [
                ("retry-after", 8, True, 1.0, False),
                ("retry-after", 8, False, 1.0, False),
                ("plain", 8, True, None, False),
                ("plain", 8, False, None, False),
                ("redis-killed", 4, True, None, True),
            ]
            for name, shards, shared, retry_after, kill in plan:
                with RedisServer(work / f"redis-{len(rows)}") as redis:
                    row = run_shards(
                        mock,
                        csv_path,
                        work,
                        shards=shards,
                        redis_url=redis.url if shared else None,
                        retry_after=retry_after,
                        kill_redis=redis if kill else None,
                        nice=args.client_nice,
                        events_to=(
                            None
                            if args.events is None
                            else args.events / f"{len(rows) + 1}-{name}-{shards}.json"
                        ),
                    )
                row["run"] = name
                rows.append(row)
                shown = {k: v for k, v in row.items() if k != "notices"}
                print(json.dumps(shown, default=lambda x: round(x, 3)), flush=True)
    table = markdown_table(
        ["run", "shards", "shared limit", "goodput / capacity", "throttled", "in cool-downs",
         "lost", "exit codes", "busy s", "mock answers, p99"],
        [
            [r["run"], r["shards"], "yes" if r["shared"] else "no", f"{r['goodput']:.1%}",
             f"{r['throttled_share']:.1%}",
             f"{r['violations_50ms']} ({r['violations_late_to_stop']}/"
             f"{r['violations_back_too_soon']})", r["lost"],
             " ".join(map(str, r["exit_codes"])), f"{r['busy_s']:.1f}",
             f"{r['mock_answer_p99_s'] * 1000:.0f} ms"]
            for r in rows
        ],
    )  # fmt: skip
    text = "\n".join(
        [
            "# Shards sharing one limit",
            "",
            f"Run {now_utc()}; {users} users, mock limit {LIMIT:g}/s (burst {LIMIT / 10:g}), "
            "20 ms +- 2 ms latency, every shard `--rate 2400` (3x the limit), the shards "
            f"{args.client_nice} steps below the CPU priority of the mock and Redis (`nice`). "
            f"Machine: {machine_note()}.",
            "",
            "Regenerate: `" + command_line() + "`",
            "",
            table,
            "",
            "Goodput: users applied right / the server's busy time / the limit. In cool-downs: "
            "requests arriving more than 50 ms after a 429 with Retry-After and within it (in "
            "brackets: in the first half of the pause, the shards late to stop / in the second, "
            "back too soon). Mock answers, p99: how long after a request arrived the mock "
            "answered it, 99th percentile (20 +- 2 ms is set: more is its process starved of "
            "the CPU, its clock behind the clients').",
            "",
        ]
        + [f"- {r['run']} ({r['shards']} shards): notices {r['notices']}" for r in rows]
    )
    suffix = "_quick" if args.quick else ""
    (args.out / f"shared{suffix}.md").write_text(text + "\n", encoding="utf-8")
    (args.out / f"shared{suffix}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
