"""The mock's command line: ``python -m async_updater.testing.mock --port 8080`` (loopback only)."""

from __future__ import annotations

import argparse
import asyncio

from ...runner import on_signals, run
from .config import MockApi, MockConfig
from .server import MockChimeServer, is_loopback

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m async_updater.testing.mock",
        description="Serve a mock Amazon Chime UpdateUserSettings and GetUserSettings API on a "
        "loopback address.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    parser.add_argument("--rate-limit", type=float, help="requests/s allowed (default unlimited)")
    parser.add_argument("--burst", type=float, help="bucket size (default rate/10, at least 1)")
    parser.add_argument("--limit-scope", choices=("global", "account"), default="global")
    parser.add_argument("--retry-after", type=float, help="seconds to send in 429 Retry-After")
    parser.add_argument(
        "--retry-after-ms-header",
        action="store_true",
        help="also send x-amz-retry-after (milliseconds) on 429s",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share answered 500/503")
    parser.add_argument(
        "--not-found",
        nargs="+",
        action="extend",
        default=[],
        metavar="USER_ID",
        help="user ids answered 404",
    )
    parser.add_argument("--access-key", default="AKIDMOCK")
    parser.add_argument("--secret-key", default="mock-secret")
    parser.add_argument("--verify-fraction", type=float, default=1.0)
    parser.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="run the server's clock this far ahead of the wall clock (negative: behind)",
    )
    parser.add_argument(
        "--no-date", action="store_true", help="send no Date header (nothing to correct a clock by)"
    )
    parser.add_argument(
        "--record-events",
        action="store_true",
        help="record every handled request (GET /_mock/events returns them)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--api",
        choices=[a.value for a in MockApi],
        default=MockApi.CHIME.value,
        help="chime: Chime UpdateUserSettings (default); cognito: Cognito "
        "AdminUpdateUserAttributes in awsJson1.1, throttling with 400 TooManyRequestsException",
    )
    parser.add_argument("--duration", type=float, help="exit after this many seconds")
    return parser


async def _serve(config: MockConfig, host: str, port: int, duration: float | None) -> int:
    stop = asyncio.Event()
    if duration is not None:
        asyncio.get_running_loop().call_later(duration, stop.set)
    server = MockChimeServer(config)
    url = await server.start(host, port)
    try:
        with on_signals(stop.set):
            print(f"mock chime server listening on {url}", flush=True)
            await stop.wait()
    finally:
        await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a usage error)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"--host {args.host!r} is not a loopback address; the mock only binds those")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a port number")
    if args.duration is not None and not args.duration > 0:
        parser.error("--duration must be > 0")
    try:
        config = MockConfig(
            credentials={args.access_key: args.secret_key},
            rate_limit=args.rate_limit,
            burst=args.burst,
            limit_scope=args.limit_scope,
            retry_after=args.retry_after,
            retry_after_ms_header=args.retry_after_ms_header,
            latency_ms=args.latency_ms,
            latency_jitter_ms=args.jitter_ms,
            fault_rate=args.fault_rate,
            not_found=frozenset(args.not_found),
            verify_fraction=args.verify_fraction,
            clock_offset_s=args.clock_offset,
            send_date=not args.no_date,
            record_events=args.record_events,
            seed=args.seed,
            api=MockApi(args.api),
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return run(lambda: _serve(config, args.host, args.port, args.duration))
    except KeyboardInterrupt:
        return 130
