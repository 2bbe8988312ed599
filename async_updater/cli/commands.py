"""The commands around a run: report, operations, merge-reports, undo, plot, completion."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from ..aws.catalog import describe_operation, list_operations, list_services
from ..errors import ConfigError
from ..model import Status
from ..reporting.merge import merge_reports
from ..reporting.plot import plot_timeline, read_timeline
from ..reporting.summary import format_report_summary, summarize_report
from ..reporting.undo import write_undo
from .exits import EXIT_FAILED, EXIT_OK
from .options import operation_from_args

__all__ = [
    "complete",
    "completion_command",
    "merge_command",
    "operations_command",
    "plot_command",
    "report_command",
    "undo_command",
]


def complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit; without argcomplete, nothing to say."""
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def completion_command(shell: str, *, out: TextIO | None = None) -> int:
    """``completion SHELL``: the script that makes SHELL complete ``async-updater``."""
    try:
        from argcomplete.shell_integration import shellcode
    except ImportError:
        raise ConfigError(
            "completion: needs argcomplete (pip install 'async-updater[completion]', or "
            "pipx inject async-updater argcomplete)"
        ) from None
    print(shellcode(["async-updater"], shell=shell), file=out or sys.stdout)
    return EXIT_OK


def report_command(args: argparse.Namespace) -> int:
    summary = summarize_report(args.report)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(format_report_summary(summary))
    bad = summary.counts.get(Status.FAILED.value, 0) + summary.counts.get(Status.INVALID.value, 0)
    return EXIT_FAILED if bad else EXIT_OK


def operations_command(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """``operations``: the services; ``operations SERVICE``: its operations;
    ``operations SERVICE:Op``: the input shape and a params template skeleton."""
    out = out or sys.stdout
    what = (args.what or "").strip()
    if not what:
        lines = list_services()
    elif ":" in what:
        lines = [describe_operation(what)]
    else:
        lines = list_operations(what.lower())
    print("\n".join(lines), file=out)
    return EXIT_OK


def merge_command(args: argparse.Namespace) -> int:
    written, warnings = merge_reports(args.reports, args.output)
    for warning in warnings:
        print(f"async-updater: warning: {warning}", file=sys.stderr)
    print(f"wrote {written} rows from {len(args.reports)} reports to {args.output}")
    return EXIT_OK


def undo_command(args: argparse.Namespace) -> int:
    outcome = write_undo(args.report, args.out, operation_from_args(args), overwrite=args.overwrite)
    for warning in outcome.warnings():
        print(f"async-updater: warning: {warning}", file=sys.stderr)
    print(
        f"wrote {outcome.written} users to {args.out}: 'async-updater run {args.out}' puts "
        "them back the way they were before the run"
        + (f" ({outcome.left_out} updated users left out)" if outcome.left_out else "")
    )
    return EXIT_FAILED if outcome.left_out else EXIT_OK


def plot_command(args: argparse.Namespace) -> int:
    plot_timeline(read_timeline(args.timeline), args.out, title=args.title)
    print(f"wrote {args.out}")
    return EXIT_OK
