"""``async-updater demo``: the whole job against the embedded mock server on sample data."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TextIO

from ..aws.credentials import StaticCredentials
from ..errors import ConfigError, InputError
from ..io.source import CsvSource
from ..model import UserRecord
from ..reporting.undo import write_undo
from .exits import EXIT_FAILED, EXIT_OK
from .parser import (
    build_parser,
)
from .run import (
    run_command,
)


async def demo_command(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Preview, run and undo against the embedded mock server, checking the server's state
    after the run (every user as asked) and after the undo (every user as before the run)."""
    from ..operations.chime import ChimeUpdateUserSettings
    from ..testing.mock import MockChimeServer, initial_settings
    from ..testing.mock.config import MockConfig
    from ..testing.sample import generate_users

    out = out or sys.stdout
    if args.users < 1 or args.accounts < 1 or not args.server_limit > 0:
        raise ConfigError("--users, --accounts and --server-limit must be > 0")
    folder = Path(args.out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out: cannot create {folder}: {exc.strerror}") from None
    users_csv = folder / "users.csv"
    n = generate_users(users_csv, args.users, args.accounts, seed=7)
    access_key, secret = "AKIDDEMO", "demo-secret-not-a-real-key"
    credentials = StaticCredentials(access_key, secret)
    mock_config = MockConfig(
        credentials={access_key: secret},
        rate_limit=args.server_limit,
        latency_ms=15.0,
        latency_jitter_ms=5.0,
        fault_rate=0.02,
        seed=7,
    )
    print(
        f"demo: {n} users over {args.accounts} accounts in {users_csv}; mock server limit "
        f"{args.server_limit:g} req/s, 15 ms latency, 2% injected 500/503; client ceiling "
        f"{3 * args.server_limit:g} req/s (3x too high on purpose). Each user already has "
        "settings on the server; the demo previews the change, runs it, then undoes it.",
        file=out,
    )
    expected = _expected_settings(users_csv)
    async with MockChimeServer(mock_config) as server:

        async def run_step(title: str, shown: list[str], extra: list[str]) -> int:
            print(f"\n== {title}: async-updater {shlex.join(shown)}", file=out)
            # The demo's own settings: none from the operator's ASYNC_UPDATER_* variables.
            run_args = build_parser(environ={}).parse_args(
                [
                    *shown,
                    *("--endpoint-url", server.url, "--overwrite"),
                    *("--rate", str(3 * args.server_limit), "--concurrency", "32"),
                    *extra,
                    *(["--no-progress"] if args.no_progress else []),
                ]
            )
            return await run_command(run_args, credentials=credentials, out=out)

        plan, report = folder / "plan.csv", folder / "report.csv"
        codes = [
            await run_step(
                "1. preview (reads every user, writes nothing)",
                ["run", str(users_csv), "--dry-run", "--read-before", "--report", str(plan)],
                [],
            )
        ]
        writes_before = server.counters["accepted"]
        print(f"server check: {writes_before} writes during the preview", file=out)
        reads_before = dict(server.read_counts)
        codes.append(
            await run_step(
                "2. run (reads each user, then writes it)",
                ["run", str(users_csv), "--read-before", "--report", str(report)],
                [
                    *("--timeline", str(folder / "timeline.jsonl")),
                    *("--summary-json", str(folder / "summary.json")),
                ],
            )
        )
        wrong = sum(1 for key, want in expected.items() if server.applied.get(key) != want)
        twice = sum(1 for c in server.apply_counts.values() if c > 1)
        read_once = sum(
            1 for key in expected if server.read_counts[key] - reads_before.get(key, 0) == 1
        )
        print(
            f"server check: {len(expected) - wrong}/{len(expected)} users hold the requested "
            f"settings; {twice} applied more than once; {read_once}/{len(expected)} users read "
            f"exactly once by the run; server saw {server.counters['throttled']} throttled and "
            f"{server.counters['faults']} faulted requests",
            file=out,
        )

        undo_csv = folder / "undo.csv"
        print(
            f"\n== 3. undo: async-updater undo {report} --out {undo_csv}",
            file=out,
        )
        outcome = write_undo(report, undo_csv, ChimeUpdateUserSettings(), overwrite=True)
        for warning in outcome.warnings():
            print(f"warning: {warning}", file=out)
        print(f"wrote {outcome.written} users to {undo_csv}", file=out)
        codes.append(EXIT_FAILED if outcome.left_out else EXIT_OK)
        codes.append(
            await run_step(
                "4. run the undo file",
                ["run", str(undo_csv), "--report", str(folder / "undo-report.csv")],
                [],
            )
        )
        restored = sum(1 for a, u in expected if server.settings(a, u) == initial_settings(a, u))
        print(
            f"round trip: {restored}/{len(expected)} users hold the settings they had before "
            "the run",
            file=out,
        )
    if wrong or restored != len(expected) or writes_before:
        return EXIT_FAILED
    return max(codes)


def _expected_settings(path: Path) -> dict[tuple[str, str], dict[str, bool]]:
    expected: dict[tuple[str, str], dict[str, bool]] = {}
    for item in CsvSource(path):
        if isinstance(item, UserRecord):
            expected[(item.account_id, item.user_id)] = {
                "InboundCalling": item.inbound_calling,
                "OutboundCalling": item.outbound_calling,
                "SMS": item.sms,
            }
    return expected
