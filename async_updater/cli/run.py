"""``async-updater run``: lock the report, prepare or resume it, run with progress, print the
summary."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

from ..aws.credentials import CredentialProvider
from ..config import UpdaterConfig, check_read_support
from ..errors import ReportError, RowError, SafetyStop
from ..io import before as before_states
from ..io.before import BeforeJournal
from ..io.keyindex import KeyIndex
from ..io.lock import ReportLock
from ..io.meta import input_fingerprint, write_meta
from ..io.report import ReportSink, open_report
from ..io.resume import ResumeState
from ..io.source import CsvSource, Shard, ShardBasis
from ..model import Result, RowRecord, RunSummary
from ..operations.aws_model import ModelOperation
from ..operations.base import Operation
from ..pipeline.updater import Updater
from ..reporting.progress import ProgressDisplay
from ..reporting.summary import format_summary
from ..transport.base import Transport
from ..transport.http import AiohttpTransport
from .exits import EXIT_INTERRUPTED, exit_code
from .options import (
    config_from_args,
    default_report_path,
    operation_from_args,
)
from .resume import (
    resume_text,
)
from .signals import GracefulStop


async def run_command(
    args: argparse.Namespace,
    *,
    credentials: CredentialProvider | None = None,
    out: TextIO | None = None,
) -> int:
    """``async-updater run``: the exit code, or an ``UpdaterError`` for ``main`` to report (a
    ``SafetyStop`` after the summary is printed)."""
    out = out or sys.stdout
    operation = operation_from_args(args)
    # One limit for everything: split by user, so shards are even whatever the accounts. A
    # limit per account: split by account, so no account's limit spans two shards. (The
    # basis comes from the option itself: the config is built under the report's lock.)
    basis = ShardBasis.for_scope(args.limit_scope)
    shard = Shard.parse(args.shard, basis) if args.shard else None
    source = CsvSource(args.input, operation, shard=shard)
    report_path = Path(args.report) if args.report else default_report_path(args.input, args.format)
    if report_path.is_dir():
        raise ReportError(f"--report: {report_path} is a directory")
    if report_path.resolve() == Path(args.input).resolve():
        raise ReportError("--report: the report must not be the input file")
    _check_writable(report_path)
    # One run per report, decided before anything slow (the AWS configuration, the input's
    # fingerprint, credentials) and before the report is touched: a second run must leave at
    # once, having sent nothing and changed nothing.
    with ReportLock(report_path, notice=_notice):
        config = config_from_args(args, operation)
        check_read_support(config, operation)
        return await _run_locked(args, operation, config, source, report_path, credentials, out)


def _notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _run_locked(
    args: argparse.Namespace,
    operation: Operation,
    config: UpdaterConfig,
    source: CsvSource,
    report_path: Path,
    credentials: CredentialProvider | None,
    out: TextIO,
) -> int:
    transport = _model_transport(args, operation, config, source)
    meta = _run_meta(args, operation, source)
    _check_outputs(args, report_path)
    stop: SafetyStop | None = None
    # Credentials are resolved before the report is touched: a run that cannot sign must
    # leave an existing report exactly as it was.
    updater = Updater(config, operation=operation, credentials=credentials, transport=transport)
    async with _closing(transport), updater:
        skip, befores = _prepare_report(args, config, report_path, meta)
        sink = _StopWhenUnwritable(
            open_report(report_path, args.format, append=args.resume), updater
        )
        if not args.resume:
            write_meta(report_path, meta)
        try:
            with GracefulStop(updater):
                summary = await _run_with_progress(updater, source, sink, skip, befores, args)
        except SafetyStop as exc:
            # The run finished what was in flight and the report holds every answer: the
            # summary and the resume command are as useful as after Ctrl-C.
            stop = exc
            summary = updater.summary()
        finally:
            try:
                sink.close()
            finally:
                if befores is not None:
                    befores.close()
    if befores is not None and stop is None and not summary.interrupted and not config.dry_run:
        # Every row has its outcome, each captured state is in its row: the journal is spent.
        # (A plan's rows are not carried by a resume, so after one the journal stays; after a
        # safety stop the resume needs it.)
        before_states.discard(report_path)
    summary = dataclasses.replace(
        summary,
        report_path=str(report_path),
        safety_stop=None if stop is None else stop.reason.text,
    )
    _write_figures(args, updater, summary)
    print(
        format_summary(
            summary, next_command=resume_text(args, report_path), dry_run=config.dry_run
        ),
        file=out,
    )
    if stop is not None:
        raise stop
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if source.rows == 0:
        print(f"{args.input} has a header but no rows: nothing to do", file=out)
    return exit_code(summary)


def _model_transport(
    args: argparse.Namespace, operation: Operation, config: UpdaterConfig, source: CsvSource
) -> Transport | None:
    """For an operation from botocore's model: the template meets the model on the first row
    now, before the report is touched, and a transport reads errors with botocore's parser."""
    if not isinstance(operation, ModelOperation):
        return None
    check_first_row(operation, CsvSource(args.input, operation, shard=source.shard))
    return AiohttpTransport(
        config.endpoint_url,
        concurrency=config.max_concurrency,
        timeout=config.timeout,
        connect_timeout=config.connect_timeout,
        error_parser=operation.error_parser,
    )


def _run_meta(args: argparse.Namespace, operation: Operation, source: CsvSource) -> dict[str, Any]:
    return {
        "input": str(args.input),
        "input_sha256": input_fingerprint(args.input),
        "operation": operation.name,
        "shard": args.shard,
        "shard_basis": str(source.shard.basis) if source.shard else None,
        "format": args.format,
    }


def _check_outputs(args: argparse.Namespace, report_path: Path) -> None:
    if (
        not args.resume
        and report_path.exists()
        and report_path.stat().st_size > 0
        and not args.overwrite
    ):
        raise ReportError(
            f"{report_path} already exists: add --resume to continue that run, "
            "--overwrite to start over, or choose another --report"
        )
    for option, extra in (("--timeline", args.timeline), ("--summary-json", args.summary_json)):
        if extra:  # checked now: finding out after the run would lose these figures
            _check_writable(Path(extra), option)


def _prepare_report(
    args: argparse.Namespace, config: UpdaterConfig, report_path: Path, meta: dict[str, Any]
) -> tuple[KeyIndex | None, BeforeJournal | None]:
    """The users a resume skips and the before-state journal to keep, if any."""
    if args.resume:
        state = ResumeState.prepare(report_path, args.format, meta, read_before=config.read_before)
        if state.carried_rows:
            print(
                f"resuming: {state.carried_rows} users already updated (or unchanged) "
                f"in {report_path} will not be sent again",
                file=sys.stderr,
            )
        return state.updated, state.befores
    # A journal left by an earlier run of this report holds other users' states.
    before_states.discard(report_path)
    if config.read_before and not config.dry_run:
        return None, BeforeJournal.start(report_path)
    return None, None


def _write_figures(args: argparse.Namespace, updater: Updater, summary: RunSummary) -> None:
    try:
        if args.timeline:
            updater.stats.timeline.write(args.timeline)
        if args.summary_json:
            Path(args.summary_json).write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    except OSError as exc:
        raise ReportError(f"cannot write {exc.filename}: {exc.strerror}") from None


class _StopWhenUnwritable:
    """The run's report, guarded: the first result it cannot write (a full disk) stops the run
    there and then, abandoning the requests in flight, whose answers could not be recorded
    either; then the ``ReportError`` goes on up. Without this, what stopped the workers was the
    results generator being finalised once the error had left ``Updater.run`` (a task the
    event loop runs later), and until then they went on sending."""

    __slots__ = ("sink", "updater")

    def __init__(self, sink: ReportSink, updater: Updater) -> None:
        self.sink = sink
        self.updater = updater

    def write(self, result: Result) -> None:
        try:
            self.sink.write(result)
        except ReportError:
            self.updater.stop(cancel_in_flight=True)
            raise

    def flush(self) -> None:
        try:
            self.sink.flush()
        except ReportError:
            self.updater.stop(cancel_in_flight=True)
            raise

    def close(self) -> None:
        self.sink.close()


def check_first_row(operation: ModelOperation, source: CsvSource, *, within: int = 1000) -> None:
    """Build the parameters of the first valid row among the first ``within`` rows, so a
    template that does not fit the model is a ``ConfigError`` before anything is written or
    sent. A bad row is left for the run to report."""
    for n, item in enumerate(source):
        if n >= within:
            return
        if not isinstance(item, RowRecord):
            continue  # an invalid row (a Result): the run reports it
        try:
            operation.params(item)
        except RowError:
            continue
        return


@contextlib.asynccontextmanager
async def _closing(transport: Transport | None) -> AsyncIterator[None]:
    """Close a transport the CLI made for the ``Updater`` (which closes only its own)."""
    try:
        yield
    finally:
        if transport is not None:
            await transport.close()


def _check_writable(path: Path, option: str = "--report") -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ReportError(f"{option}: {path} is a directory")
    if not parent.exists():
        raise ReportError(f"{option}: folder {parent} does not exist")
    if not parent.is_dir():
        raise ReportError(f"{option}: {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise ReportError(f"{option}: cannot write in {parent}")


async def _run_with_progress(
    updater: Updater,
    source: CsvSource,
    sink: Any,
    skip: Any,
    befores: BeforeJournal | None,
    args: argparse.Namespace,
) -> RunSummary:
    stream = sys.stderr
    mode = ProgressDisplay.choose_mode(disabled=args.no_progress, stream=stream)
    total = source.expected_rows() if mode != "off" else None
    async with ProgressDisplay(updater, total, mode=mode, stream=stream) as display:
        updater.on_notice = display.print
        return await updater.run(source, sink, skip=skip, befores=befores)
