"""One benchmark client per process, so its CPU time and peak RSS are its own.

    python -m benchmarks.clients KIND --url URL --csv USERS.csv [--rate R] [--concurrency C]
        [--attempts N] [--loop asyncio|uvloop] [--time-limit S] [--report PATH]
        [--limit-scope global|account]

KIND is one of ``CLIENTS``. The process sets itself up (imports, client, credentials from the
environment), prints ``READY`` and waits for a line on standard input, so the harness can reset
the server and start its clock first. It then reads the CSV, sends every row, and prints one
JSON line with what it saw (its own counts, wall time, CPU seconds from ``getrusage``, peak RSS
and, for async_updater, its per-second timeline). Nothing here prints credentials.

The non-async_updater clients are what a user would write without this project: every row
read from the CSV, one coroutine per row under an ``asyncio.Semaphore`` gathered at once
(aiobotocore), or one task per row in a thread pool (boto3).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

CLIENTS = (
    "async_updater",
    "async_updater-cognito",
    "aiobotocore-adaptive",
    "aiobotocore-legacy",
    "aiobotocore-standard",
    "boto3-threads",
)
_TRUE = frozenset({"true", "1", "yes"})


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb(usage: resource.struct_rusage) -> float:
    """Peak resident memory of this program. Linux's ``ru_maxrss`` survives ``execve``: a child
    spawned by a harness holding 450 MB (the expected state of a million users) reported 494 MB
    though it never used more than ~140 MB itself. ``VmHWM`` belongs to the address space the
    exec created, so it is this program's own; ``ru_maxrss`` is the fallback off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return usage.ru_maxrss / 1024  # kilobytes on Linux, bytes on macOS: Linux is what we run


def _rss_mb() -> float:
    """Resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * resource.getpagesize() / 2**20


def _read_rows(path: str) -> list[tuple[str, str, dict[str, bool]]]:
    """The whole CSV as (account, user, Telephony settings): what a hand-written script does."""
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            rows.append(
                (
                    row["account_id"],
                    row["user_id"],
                    {
                        "InboundCalling": row["inbound_calling"].strip().lower() in _TRUE,
                        "OutboundCalling": row["outbound_calling"].strip().lower() in _TRUE,
                        "SMS": row["sms"].strip().lower() in _TRUE,
                    },
                )
            )
    return rows


_T0 = [0.0]


def _wait_for_go() -> None:
    print("READY", flush=True)
    if not sys.stdin.readline():
        raise SystemExit("the harness went away before starting the run")
    _T0[0] = time.monotonic()


# The Cognito client's params template (its CSV: pool,username,email,team).
COGNITO_TEMPLATE = {
    "UserPoolId": "{pool}",
    "Username": "{username}",
    "UserAttributes": [
        {"Name": "email", "Value": "{email}"},
        {"Name": "custom:team", "Value": "{team}"},
    ],
}


async def _run_async_updater(args: argparse.Namespace, *, cognito: bool = False) -> dict[str, Any]:
    """async_updater through its library API: Chime's fast path, or (``cognito``) Cognito
    AdminUpdateUserAttributes serialized by botocore from its model, as the CLI builds it."""
    from async_updater import CsvReport, CsvSource, LimitScope, Updater, UpdaterConfig
    from async_updater.aws_operation import ModelOperation
    from async_updater.transport import AiohttpTransport

    config = UpdaterConfig(
        endpoint_url=args.url,
        rate=args.rate,
        concurrency=args.concurrency,
        max_attempts=args.attempts,
        limit_scope=LimitScope(args.limit_scope),
    )
    operation = None
    transport = None
    if cognito:
        operation = ModelOperation("cognito-idp:AdminUpdateUserAttributes", COGNITO_TEMPLATE)
        transport = AiohttpTransport(
            args.url, concurrency=args.concurrency, error_parser=operation.error_parser
        )
    out: dict[str, Any] = {}
    # Credentials from the environment, like the CLI.
    async with Updater(config, operation=operation, transport=transport) as updater:
        _wait_for_go()
        cpu0, t0 = _cpu(), time.monotonic()
        sink = CsvReport(args.report) if args.report else None
        timed_out = False
        samples: list[tuple[float, float]] = []
        rss: list[tuple[float, int, float]] = []

        async def sample_rate() -> None:
            # Finer than the per-second timeline, to time how fast the rate follows a change.
            n = 0
            while True:
                t = round(time.monotonic() - t0, 3)
                samples.append((t, round(updater.rate, 1)))
                if n % 10 == 0:
                    rss.append((t, updater.stats.done, _rss_mb()))
                n += 1
                await asyncio.sleep(0.1)

        sampler = asyncio.ensure_future(sample_rate())
        try:
            source = CsvSource(args.csv, operation) if operation else CsvSource(args.csv)
            run = asyncio.ensure_future(updater.run(source, sink))
            done, _ = await asyncio.wait({run}, timeout=args.time_limit)
            if not done:
                timed_out = True
                updater.stop(cancel_in_flight=True)
            summary = await run
        finally:
            sampler.cancel()
            if sink is not None:
                sink.close()
            if transport is not None:
                await transport.close()
        wall, cpu = time.monotonic() - t0, _cpu() - cpu0
        counts = {k: v for k, v in summary.counts.items() if v}
        out.update(
            ok=summary.counts.get("updated", 0),
            failed=summary.counts.get("failed", 0) + summary.counts.get("invalid", 0),
            counts=counts,
            errors={code: n for code, n, _ in summary.top_errors},
            wall_s=wall,
            cpu_run_s=cpu,
            timed_out=timed_out,
            client_requests=summary.requests,
            client_throttles=summary.throttles,
            rate_cuts=summary.cuts,
            cooldowns=summary.cooldowns,
            timeline=[
                {
                    "second": p.second,
                    "sent": p.sent,
                    "accepted": p.accepted,
                    "throttled": p.throttled,
                    "allowed_rate": p.allowed_rate,
                }
                for p in updater.stats.timeline.points
            ],
            timeline_offset_s=updater.stats.timeline.start - t0,
            rate_samples=samples,
            rss_samples=rss,
        )
    return out


def _botocore_config(args: argparse.Namespace, mode: str) -> Any:
    from botocore.config import Config

    # botocore's ``max_attempts`` counts retries, not the first try: N - 1 gives N attempts.
    return Config(
        retries={"mode": mode, "max_attempts": args.attempts - 1},
        max_pool_connections=args.concurrency,
        connect_timeout=5,
        read_timeout=30,
    )


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


async def _run_aiobotocore(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    from aiobotocore.session import get_session

    session = get_session()
    async with session.create_client(
        "chime",
        region_name="us-east-1",
        endpoint_url=args.url,
        config=_botocore_config(args, mode),
    ) as client:
        _wait_for_go()
        cpu0, t0 = _cpu(), time.monotonic()
        rows = _read_rows(args.csv)
        semaphore = asyncio.Semaphore(args.concurrency)
        errors: Counter[str] = Counter()

        async def update(account: str, user: str, settings: dict[str, bool]) -> bool:
            async with semaphore:
                try:
                    await client.update_user_settings(
                        AccountId=account, UserId=user, UserSettings={"Telephony": settings}
                    )
                except Exception as exc:  # a user's script counts the failure and moves on
                    errors[_error_code(exc)] += 1
                    return False
                return True

        tasks = [asyncio.ensure_future(update(*row)) for row in rows]
        done, pending = await asyncio.wait(tasks, timeout=args.time_limit)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        ok = sum(1 for t in done if not t.cancelled() and t.result())
        return _outcome(ok, errors, t0, cpu0, unfinished=len(pending))


def _run_boto3_threads(args: argparse.Namespace) -> dict[str, Any]:
    import concurrent.futures as cf

    import boto3  # type: ignore[import-untyped]

    client = boto3.session.Session().client(
        "chime",
        region_name="us-east-1",
        endpoint_url=args.url,
        config=_botocore_config(args, "adaptive"),
    )
    _wait_for_go()
    cpu0, t0 = _cpu(), time.monotonic()
    rows = _read_rows(args.csv)
    errors: Counter[str] = Counter()

    def update(row: tuple[str, str, dict[str, bool]]) -> bool:
        account, user, settings = row
        try:
            client.update_user_settings(
                AccountId=account, UserId=user, UserSettings={"Telephony": settings}
            )
        except Exception as exc:  # a user's script counts the failure and moves on
            errors[_error_code(exc)] += 1  # Counter += under the GIL: close enough for counts
            return False
        return True

    pool = cf.ThreadPoolExecutor(max_workers=args.concurrency)
    futures = [pool.submit(update, row) for row in rows]
    _, pending = cf.wait(futures, timeout=args.time_limit)
    pool.shutdown(wait=True, cancel_futures=True)
    ok = sum(1 for f in futures if f.done() and not f.cancelled() and f.result())
    unfinished = sum(1 for f in futures if f.cancelled())
    return _outcome(ok, errors, t0, cpu0, unfinished=unfinished, timed_out=bool(pending))


def _outcome(
    ok: int,
    errors: Counter[str],
    t0: float,
    cpu0: float,
    *,
    unfinished: int,
    timed_out: bool | None = None,
) -> dict[str, Any]:
    """What an aiobotocore or boto3 client run reports, measured up to now."""
    return {
        "ok": ok,
        "failed": sum(errors.values()),
        "errors": dict(errors),
        "wall_s": time.monotonic() - t0,
        "cpu_run_s": _cpu() - cpu0,
        "timed_out": bool(unfinished) if timed_out is None else timed_out,
        "unfinished": unfinished,
    }


def _run_loop(factory: Callable[[], Coroutine[Any, Any, dict[str, Any]]], loop: str) -> Any:
    if loop == "uvloop":
        import uvloop

        return uvloop.run(factory())
    return asyncio.run(factory())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clients", description=__doc__)
    parser.add_argument("kind", choices=CLIENTS)
    parser.add_argument("--url", required=True, help="mock server base URL (loopback)")
    parser.add_argument("--csv", required=True, help="input CSV")
    parser.add_argument("--rate", type=float, default=1000.0, help="async_updater --rate")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--attempts", type=int, default=8, help="attempts per row, first included")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--time-limit", type=float, default=300.0, help="give up after (s)")
    parser.add_argument("--report", help="async_updater: write its CSV report here")
    parser.add_argument(
        "--limit-scope",
        choices=("global", "account"),
        default="global",
        help="async_updater: one rate limit for the run, or one per account",
    )
    args = parser.parse_args(argv)
    cpu_start = _cpu()
    kind = args.kind
    if kind.startswith("async_updater"):
        cognito = kind == "async_updater-cognito"
        result = _run_loop(lambda: _run_async_updater(args, cognito=cognito), args.loop)
    elif kind.startswith("aiobotocore-"):
        mode = kind.partition("-")[2]
        result = _run_loop(lambda: _run_aiobotocore(args, mode), args.loop)
    else:
        result = _run_boto3_threads(args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.update(
        client=kind,
        t0_monotonic=_T0[0],
        loop=args.loop if kind != "boto3-threads" else "threads",
        cpu_total_s=usage.ru_utime + usage.ru_stime,
        cpu_setup_s=_cpu() - cpu_start - result["cpu_run_s"],
        maxrss_mb=_peak_rss_mb(usage),
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
