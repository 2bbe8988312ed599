"""Rate-limit scenes: every client against the same throttling mock server, one after another.

Scenes (each client sees a freshly reset server with the same settings):

  a  global limit 800/s, ~20 ms latency, async_updater --rate 2400 (3x too high)
  b  as a, but the limit drops 800 -> 300/s mid-run and comes back (POST /_mock/limits)
  c  as a, plus 5% of admitted requests answered 500/503
  d  as a, every 429 carries Retry-After: 1; the server records every request, and the check
     counts requests that arrived inside a cool-down the server had announced (see below)

Per scene and client: goodput as a share of the server's capacity (users applied with the right
settings per second of the client's run, divided by the limit; for b the limit integrated over
the run), share of requests throttled (server counters), lost updates (valid input users not
applied with the right settings, read back from the server), failed rows (the client's own
count), wall time. One PNG per scene and ``rate_scenes.md`` go to benchmarks/results/.

Cool-down check (scene d). The server sends a 429 with ``Retry-After: 1`` at time r (its
``responded`` time). A request that arrives at the server at a time a with r + tol < a < r + 1
for some such r is a *violation*: the client sent it after it had been told to wait. ``tol``
(default 50 ms) allows for requests the client had already sent, or was writing, when the 429
reached it: loopback delivery is sub-millisecond, but on a loaded two-core machine either event
loop can lag by tens of milliseconds. Counts for tol = 10 ms and 100 ms are reported too.

    python -m benchmarks.rate_scenes            # full run, ~15-25 minutes
    python -m benchmarks.rate_scenes --quick    # small sizes, under a minute
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ClientRun,
    MockServer,
    bench_parser,
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

ALL_CLIENTS = (
    "async_updater",
    "aiobotocore-adaptive",
    "aiobotocore-legacy",
    "aiobotocore-standard",
    "boto3-threads",
)
QUICK_CLIENTS = ("async_updater", "aiobotocore-adaptive")
FOLLOW_WITHIN_S = 2.0
RECOVER_WITHIN_S = 10.0


@dataclass
class Scene:
    key: str
    title: str
    limit: float
    fault_rate: float = 0.0
    retry_after: float | None = None
    # (seconds after the start, new limit): the harness POSTs these while the client runs.
    changes: list[tuple[float, float]] = field(default_factory=list)

    @property
    def mock_args(self) -> list[str]:
        args = ["--rate-limit", str(self.limit), "--latency-ms", "20", "--jitter-ms", "2"]
        if self.retry_after is not None:
            args += ["--record-events"]
        return args

    @property
    def limits(self) -> dict[str, Any]:
        return {
            "rate_limit": self.limit,
            "burst": self.limit / 10,
            "fault_rate": self.fault_rate,
            "retry_after": self.retry_after,
        }


def scenes(quick: bool) -> list[Scene]:
    drop, back = (1.0, 2.5) if quick else (6.0, 14.0)
    return [
        Scene("a", "limit 800/s, rate 2400/s", 800),
        Scene(
            "b",
            f"limit 800 -> 300/s at {drop:g} s -> 800/s at {back:g} s",
            800,
            changes=[(drop, 300.0), (back, 800.0)],
        ),
        Scene("c", "limit 800/s + 5% injected 500/503", 800, fault_rate=0.05),
        Scene("d", "limit 800/s, Retry-After: 1 on every 429", 800, retry_after=1.0),
    ]


def capacity(limit: float, changes: Sequence[tuple[float, float]], duration: float) -> float:
    """Requests the server allowed in [0, duration]: the limit integrated over time."""
    total, at, rate = 0.0, 0.0, limit
    for when, new in changes:
        if when >= duration:
            break
        total += (when - at) * rate
        at, rate = when, new
    return total + max(0.0, duration - at) * rate


def follow_and_recover(
    run: ClientRun, changes: Sequence[tuple[float, float]]
) -> tuple[float | None, float | None]:
    """Seconds from the drop until the allowed rate is <= 1.1x the new limit, and from the
    restore until it is >= 0.9x the restored limit; None if it never got there."""
    samples = run.result.get("rate_samples")
    if not samples or len(changes) < 2:
        return None, None
    # Sample times count from the client's start; the changes from the server's reset.
    offset = run.result.get("go_offset_s", 0.0)
    (drop_at, low), (back_at, high) = changes[0], changes[1]
    follow = recover = None
    for t, rate in samples:
        t += offset
        if follow is None and drop_at <= t < back_at and rate <= 1.1 * low:
            follow = t - drop_at
        if recover is None and t >= back_at and rate >= 0.9 * high:
            recover = t - back_at
    return follow, recover


def summarise(scene: Scene, run: ClientRun) -> dict[str, Any]:
    res, counters = run.result, run.server["counters"]
    wall = float(res["wall_s"])
    changes = run.limit_changes
    allowed = capacity(scene.limit, changes, wall)
    requests = counters.get("requests", 0)
    row: dict[str, Any] = {
        "client": run.label,
        "goodput_share": run.check.applied_right / allowed if allowed else 0.0,
        "applied_per_s": run.check.applied_right / wall if wall else 0.0,
        "throttled_share": counters.get("throttled", 0) / requests if requests else 0.0,
        "requests": requests,
        "faults": counters.get("faults", 0),
        "lost": run.check.lost,
        "applied_twice": run.check.applied_twice,
        "failed_rows": res["failed"],
        "ok_rows": res["ok"],
        "errors": res.get("errors", {}),
        "wall_s": wall,
        "timed_out": res.get("timed_out", False),
        "client_cpu_s": res["cpu_run_s"],
        "mock_cpu_s": run.mock_cpu_s,
    }
    if scene.key == "b":
        row["follow_s"], row["recover_s"] = follow_and_recover(run, changes)
    if run.events is not None and scene.retry_after is not None:
        row["cooldowns_announced"] = sum(1 for e in run.events if e[4] == 429)
        for tol in (0.01, 0.05, 0.1):
            row[f"violations_{int(tol * 1000)}ms"] = cooldown_violations(
                run.events, scene.retry_after, tol
            )
    return row


def plot_scene(scene: Scene, runs: list[ClientRun], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.6 * len(runs)), sharex=True)
    if len(runs) == 1:
        axes = [axes]
    for ax, run in zip(axes, runs, strict=True):
        timeline = run.server["timeline"]
        seconds = sorted(int(s) for s in timeline)
        end = max(seconds[-1] + 1 if seconds else 0, float(run.result["wall_s"]))
        steps = [(0.0, scene.limit), *run.limit_changes]
        ax.step(
            [t for t, _ in steps] + [end],
            [r for _, r in steps] + [steps[-1][1]],
            where="post",
            color="black",
            linestyle="--",
            label="server limit",
        )
        ax.plot(
            [s + 0.5 for s in seconds],
            [timeline[str(s)]["accepted"] for s in seconds],
            color="tab:green",
            label="accepted (server)",
        )
        ax.plot(
            [s + 0.5 for s in seconds],
            [timeline[str(s)]["throttled"] for s in seconds],
            color="tab:red",
            label="429s (server)",
        )
        samples = run.result.get("rate_samples")
        if samples:
            offset = run.result.get("go_offset_s", 0.0)
            ax.plot(
                [t + offset for t, _ in samples],
                [r for _, r in samples],
                color="tab:blue",
                linewidth=1,
                label="allowed rate (async_updater, 0.1 s samples)",
            )
        points = run.result.get("timeline")
        if points:
            start = run.result.get("go_offset_s", 0.0) + run.result.get("timeline_offset_s", 0.0)
            ax.plot(
                [p["second"] + start + 0.5 for p in points],
                [p["allowed_rate"] for p in points],
                "o",
                color="tab:blue",
                markersize=3,
                label="allowed rate (async_updater Timeline, per s)",
            )
        ax.set_ylabel("requests/s")
        ax.set_title(run.label, fontsize=10)
        top = max(scene.limit * 1.6, *(timeline[str(s)]["throttled"] for s in seconds), 1)
        ax.set_ylim(0, min(top, scene.limit * 4))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=7)
    axes[-1].set_xlabel("seconds since the server was reset (client start)")
    fig.suptitle(f"scene {scene.key}: {scene.title}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _opt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def write_markdown(
    path: Path, all_rows: dict[str, list[dict[str, Any]]], scene_list: list[Scene], args: Any
) -> None:
    headers = [
        "scene",
        "client",
        "goodput / capacity",
        "applied/s",
        "throttled",
        "requests",
        "lost",
        "applied twice",
        "failed rows",
        "wall s",
        "client CPU s",
    ]
    rows = []
    for scene in scene_list:
        for row in all_rows.get(scene.key, []):
            rows.append(
                [
                    scene.key,
                    row["client"] + (" (timed out)" if row["timed_out"] else ""),
                    _pct(row["goodput_share"]),
                    f"{row['applied_per_s']:.0f}",
                    _pct(row["throttled_share"]),
                    row["requests"],
                    row["lost"],
                    row["applied_twice"],
                    row["failed_rows"],
                    f"{row['wall_s']:.1f}",
                    f"{row['client_cpu_s']:.1f}",
                ]
            )
    parts = [
        "# Rate-limit scenes",
        "",
        f"Run {now_utc()}; {args.users} users over 10 accounts per client; "
        "mock latency 20 ms +- 2 ms, burst = limit/10; "
        f"async_updater --rate {args.rate:g} --concurrency {args.concurrency}; "
        f"aiobotocore max_pool_connections and Semaphore {args.concurrency}; "
        f"boto3 {args.concurrency} threads (adaptive retry mode); "
        f"{args.attempts} attempts per row for every client.",
        "",
        f"Machine: {machine_note()}. Versions: {versions()}.",
        "",
        "Regenerate: `" + command_line() + "`",
        "",
        "Scenes: " + "; ".join(f"**{s.key}** {s.title}" for s in scene_list) + ".",
        "",
        "Goodput / capacity = users applied with the right settings / wall time of the client's "
        "run / server limit (scene b: the limit integrated over the run). Throttled = 429s / "
        "requests, both counted by the server. Lost = valid input users the server does not "
        "hold with the right settings afterwards. Failed rows = the client's own count.",
        "",
        markdown_table(headers, rows),
        "",
    ]
    bars = []
    for row in all_rows.get("a", []):
        if row["client"].startswith("async_updater"):
            ok = row["goodput_share"] >= 0.95 and row["throttled_share"] <= 0.03 and not row["lost"]
            bars.append(
                f"- Scene a bar (goodput >= 95%, throttled <= 3%, 0 lost): "
                f"{'met' if ok else 'MISSED'} (goodput {_pct(row['goodput_share'])}, "
                f"throttled {_pct(row['throttled_share'])}, lost {row['lost']})."
            )
    for row in all_rows.get("b", []):
        if row["client"].startswith("async_updater"):
            follow, recover = row.get("follow_s"), row.get("recover_s")
            ok_f = follow is not None and follow <= FOLLOW_WITHIN_S
            ok_r = recover is not None and recover <= RECOVER_WITHIN_S
            bars.append(
                f"- Scene b: allowed rate <= 1.1x the new limit {_opt(follow)} s after the drop "
                f"(bar <= {FOLLOW_WITHIN_S:g} s: {'met' if ok_f else 'MISSED'}); >= 90% of the "
                f"restored limit {_opt(recover)} s after the restore (bar <= "
                f"{RECOVER_WITHIN_S:g} s: {'met' if ok_r else 'MISSED'}). Measured on the "
                "allowed rate sampled every 0.1 s in the client process."
            )
    d_rows = [r for r in all_rows.get("d", []) if "cooldowns_announced" in r]
    if d_rows:
        bars.append(
            "- Scene d cool-downs: a violation is a request arriving at the server more than "
            "tol after a 429 with Retry-After: 1 was sent and less than 1 s after it."
        )
        bars.append("")
        bars.append(
            markdown_table(
                ["client", "429s sent", "violations tol 10 ms", "tol 50 ms", "tol 100 ms"],
                [
                    [
                        r["client"],
                        r["cooldowns_announced"],
                        r["violations_10ms"],
                        r["violations_50ms"],
                        r["violations_100ms"],
                    ]
                    for r in d_rows
                ],
            )
        )
    parts += ["## Bars", "", *bars, ""]
    parts += ["## Plots", ""]
    parts += [f"![scene {s.key}](rate_scene_{s.key}.png)" for s in scene_list if s.key in all_rows]
    parts += ["", "## Errors seen by each client", ""]
    for scene in scene_list:
        for row in all_rows.get(scene.key, []):
            if row["errors"]:
                parts.append(f"- {scene.key} / {row['client']}: {row['errors']}")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("rate_scenes", __doc__, "small sizes, under a minute")
    parser.add_argument("--users", type=int, help="users per run (default 20000; quick 1500)")
    parser.add_argument("--scenes", default="abcd", help="which scenes, e.g. 'ab' (default all)")
    parser.add_argument(
        "--clients", nargs="+", choices=ALL_CLIENTS, help="which clients (default all)"
    )
    parser.add_argument("--rate", type=float, default=2400.0, help="async_updater --rate")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--attempts", type=int, default=8, help="attempts per row (all clients)")
    parser.add_argument("--time-limit", type=float, help="per client run (default 180 s)")
    args = parser.parse_args(argv)
    args.users = args.users or (1500 if args.quick else 20000)
    clients = args.clients or (QUICK_CLIENTS if args.quick else ALL_CLIENTS)
    time_limit = args.time_limit or (15.0 if args.quick else 180.0)
    scene_list = [s for s in scenes(args.quick) if s.key in args.scenes]
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    all_rows: dict[str, list[dict[str, Any]]] = {}
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rate-scenes-") as tmp:
        csv_path = Path(tmp) / "users.csv"
        generate_input(csv_path, args.users, accounts=10, seed=1)
        wanted = expected_settings(csv_path)
        for scene in scene_list:
            runs: list[ClientRun] = []
            with MockServer(*scene.mock_args, duration=len(clients) * (time_limit + 150)) as mock:
                for client in clients:
                    started = time.monotonic()
                    run = run_client(
                        mock,
                        client,
                        csv_path,
                        wanted,
                        rate=args.rate,
                        concurrency=args.concurrency,
                        attempts=args.attempts,
                        time_limit=time_limit,
                        limits=scene.limits,
                        schedule=[(at, {"rate_limit": r}) for at, r in scene.changes],
                        events=scene.retry_after is not None,
                    )
                    runs.append(run)
                    row = summarise(scene, run)
                    all_rows.setdefault(scene.key, []).append(row)
                    shown = {k: v for k, v in row.items() if k != "errors"}
                    print(
                        f"scene {scene.key} {client}: "
                        + json.dumps(shown, default=lambda x: round(x, 3))
                        + f" ({time.monotonic() - started:.0f} s)",
                        flush=True,
                    )
            plot_scene(scene, runs, args.out / f"rate_scene_{scene.key}{suffix}.png")
            raw[scene.key] = [
                {
                    "summary": summarise(scene, run),
                    "server_timeline": run.server["timeline"],
                    "client_timeline": run.result.get("timeline"),
                    "rate_samples": run.result.get("rate_samples"),
                    "limit_changes": run.limit_changes,
                }
                for run in runs
            ]
    md = args.out / f"rate_scenes{suffix}.md"
    write_markdown(md, all_rows, scene_list, args)
    if suffix:
        text = md.read_text(encoding="utf-8").replace(".png)", f"{suffix}.png)")
        md.write_text(text, encoding="utf-8")
    (args.out / f"rate_scenes{suffix}.json").write_text(json.dumps(raw), encoding="utf-8")
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
