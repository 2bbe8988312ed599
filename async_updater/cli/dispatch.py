"""``async-updater COMMAND ...``: parse, dispatch to the command, and map errors to exit codes
(``exits.py``): an ``UpdaterError`` exits with its ``exit_code``, Ctrl-C outside a run with 130."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from ..errors import SafetyStop, UpdaterError
from ..runner import run
from .commands import (
    complete,
    completion_command,
    merge_command,
    operations_command,
    plot_command,
    report_command,
    undo_command,
)
from .demo import demo_command
from .exits import EXIT_INTERRUPTED
from .parser import build_parser
from .run import run_command
from .streams import outliving_output

__all__ = ["main"]

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": lambda args: run(lambda: run_command(args)),
    "demo": lambda args: run(lambda: demo_command(args)),
    "report": report_command,
    "merge-reports": merge_command,
    "operations": operations_command,
    "completion": lambda args: completion_command(args.shell),
    "undo": undo_command,
    "plot": plot_command,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # a shell asks for completions (argcomplete's protocol)
        complete(parser)
    if argv[:1] == ["mock-server"]:
        # Its options are the mock's own, parsed by it: argparse's REMAINDER does not take
        # arguments that start with "--" (``mock-server --port 0`` was refused as unknown).
        from ..testing.mock.cli import main as mock_main

        return mock_main(argv[1:])
    args = parser.parse_args(argv)
    with outliving_output():  # (a console closed mid-run must not stop it, nor a stop)
        try:
            return _COMMANDS[args.command](args)
        except UpdaterError as exc:
            what = "safety stop" if isinstance(exc, SafetyStop) else "error"
            print(f"async-updater: {what}: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("async-updater: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
