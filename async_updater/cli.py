"""Command line: ``async-updater run USERS.csv ...`` and friends. Maps errors to exit codes:
0 every row updated or unchanged, 1 some rows failed or invalid, 2 usage/input/credentials/
report locked, 3 safety stop, 130 interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

from . import __version__
from .aws.catalog import describe_operation, list_operations, list_services
from .aws.credentials import CredentialProvider, StaticCredentials
from .aws.endpoint import resolve_endpoint
from .config import DEFAULT_ENDPOINT, LimitScope, UpdaterConfig, check_read_support
from .errors import ConfigError, InputError, ReportError, RowError, SafetyStop, UpdaterError
from .io import before as before_states
from .io.before import BeforeJournal
from .io.lock import ReportLock
from .io.meta import input_fingerprint, write_meta
from .io.report import FORMATS, ReportSink, open_report
from .io.resume import ResumeState
from .io.source import CsvSource, Shard, ShardBasis, count_data_lines
from .model import Result, RowRecord, RunSummary, Status, UserRecord
from .operations.aws_model import ModelOperation
from .operations.base import Operation
from .operations.generic import GenericOperation, load_operation, parse_read_fields
from .pipeline.run import Updater
from .pipeline.safety import (
    DEFAULT_MAX_FAILURES,
    DEFAULT_REJECTIONS_IN_A_ROW,
    MIN_ANSWERED_FOR_SHARE,
)
from .ratelimit import DEFAULT_MAX_CONCURRENCY
from .reporting.merge import merge_reports
from .reporting.plot import plot_timeline, read_timeline
from .reporting.progress import ProgressDisplay
from .reporting.summary import format_report_summary, format_summary, summarize_report
from .reporting.undo import write_undo
from .transport.http import AiohttpTransport, Transport

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SAFETY_STOP",
    "EXIT_USAGE",
    "SHELLS",
    "EnvRef",
    "environment_variables",
    "main",
    "resume_command",
    "version",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SAFETY_STOP = 3
EXIT_INTERRUPTED = 130

# Options of ``run`` that a resume must not repeat, and why: ``--resume`` is added anyway;
# ``--overwrite`` would empty the report the resume continues; ``--dry-run`` would only plan
# it; ``--timeline`` and ``--summary-json`` describe one invocation, and the resume would
# overwrite the figures of the run it continues. Every other option is repeated when it
# differs from its default, so a new option is resumed unless it is added here.
NOT_RESUMED = frozenset({"resume", "overwrite", "dry_run", "timeline", "summary_json"})

# The shells ``async-updater completion`` writes a script for (argcomplete's).
SHELLS = ("bash", "zsh", "fish")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

_RUN_EPILOG = f"""\
input CSV: header account_id,user_id,inbound_calling,outbound_calling,sms (UTF-8, BOM ok);
  booleans true/false (also 1/0, yes/no). Bad rows are reported 'invalid' with their line and
  field, and the run goes on. A user listed twice: the first row is applied, later ones 'invalid'.
report columns: account_id,user_id,status,http_status,error_code,message,attempts,latency_ms,
  request_id,before; status is updated, unchanged, failed, invalid (planned or unchanged with
  --dry-run); before is the user's state read before writing (JSON), with --read-before.
  One row per input row.
preview, run, undo: 'run --dry-run --read-before' reads every user and reports who would
  change (planned) and who already is as asked (unchanged), sending no write; 'run
  --read-before' records each user's state in 'before' (add --skip-unchanged to write only
  users who differ); 'undo REPORT --out UNDO.csv' writes the input that restores every updated
  user, and 'run UNDO.csv' applies it:
    async-updater run users.csv --dry-run --read-before --report preview.csv
    async-updater run users.csv --read-before --report migration.csv
    async-updater undo migration.csv --out undo.csv
    async-updater run undo.csv
exit codes: 0 all updated (or unchanged); 1 some failed or invalid; 2 usage error, unreadable
  input, no credentials, report locked by another run or not writable (disk full); 3 safety
  stop (credentials rejected, failure budget spent, clock that cannot be corrected); 130
  interrupted. After 3 and 130 the report is flushed: the summary prints the --resume command
  to finish.
safety stops: {DEFAULT_REJECTIONS_IN_A_ROW} credentials rejections in a row with no success
  between them (401; 403 about credentials, signature, token or access), or more failed rows
  than --max-failures allows. One run per report: a second run exits 2 naming the holder.
credentials: the standard AWS chain (AWS_* environment variables, --profile / AWS_PROFILE,
  shared config and credentials files, SSO, container and instance roles).
any AWS operation: --aws-operation SERVICE:Operation --params-template params.json sends one
  request per row, serialized by botocore from the service's model, e.g.
    --aws-operation cognito-idp:AdminUpdateUserAttributes --params-template params.json
  with params.json {{"UserPoolId": "{{pool}}", "Username": "{{username}}",
                    "UserAttributes": [{{"Name": "email", "Value": "{{email}}"}}]}}
  The CSV then has the columns the template names. The endpoint comes from botocore's resolver
  for the service and --region, unless --endpoint-url, AWS_ENDPOINT_URL_<SERVICE_ID> or
  AWS_ENDPOINT_URL say otherwise. 'async-updater operations SERVICE:Operation' shows the input
  shape and a template to start from.
"""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors, as the contract wants; only the wording is ours.

    Options added with ``add_env_argument`` also take their value from an environment variable,
    the AWS CLI's way: the flag on the command line wins over the variable, the variable over
    the default, and ``--help`` names it. The variables are read at parse time from ``environ``
    (``os.environ`` unless given), converted and checked as the flag's value would be."""

    def __init__(self, *args: Any, environ: Mapping[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.environ = os.environ if environ is None else environ
        self.env_vars: dict[str, str] = {}  # dest -> variable

    def add_env_argument(self, *flags: str, env: str, **kwargs: Any) -> argparse.Action:
        action = self.add_argument(*flags, **kwargs)
        action.help = f"{action.help} [env: {env}]"
        self.env_vars[action.dest] = env
        return action

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # A value in the namespace before parsing is what argparse keeps unless the command
        # line gives the option (a subcommand's parser is called with no namespace).
        namespace = argparse.Namespace() if namespace is None else namespace
        for action in self._actions:
            var = self.env_vars.get(action.dest)
            text = self.environ.get(var, "").strip() if var else ""
            if var and text and not hasattr(namespace, action.dest):
                setattr(namespace, action.dest, self._from_env(action, var, text))
        return super().parse_known_args(args, namespace)

    def _from_env(self, action: argparse.Action, var: str, text: str) -> Any:
        option = action.option_strings[-1]
        if action.nargs == 0:  # a flag: on or off
            if text.lower() not in _TRUE | _FALSE:
                self.error(f"{var}={text!r}: expected 1/0, true/false, yes/no or on/off")
            return action.const if text.lower() in _TRUE else action.default
        try:
            value = action.type(text) if callable(action.type) else text
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            why = f" ({exc})" if isinstance(exc, argparse.ArgumentTypeError) else ""
            self.error(f"{var}={text!r}: not a valid value for {option}{why}")
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            self.error(f"{var}={text!r}: {option} takes one of {choices}")
        return value

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def version(distribution: str = "async-updater") -> str:
    """The installed distribution's version; the source tree's when it is not installed (run
    from a checkout through ``PYTHONPATH``)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return __version__


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; ``environ`` is where the options' environment variables are read
    (default ``os.environ``; ``{}`` gives the built-in defaults)."""
    parser = _Parser(
        prog="async-updater",
        description=(
            "Apply per-user settings (Amazon Chime UpdateUserSettings or any SigV4 PUT) from a "
            "CSV file, as fast as the API allows, and write a per-user report."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser(
        "run",
        help="apply the settings in a CSV file and write a report",
        description="Send one signed PUT per user in USERS.csv and write a per-user report.",
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        environ=environ,
    )
    run.add_argument("input", metavar="USERS.csv", help="input CSV file")
    _add_run_options(run)

    demo = sub.add_parser(
        "demo",
        environ=environ,
        help="run the whole job against the embedded mock server on sample data",
        description=(
            "Start the embedded mock Chime server (it verifies every SigV4 signature, throttles "
            "with 429s and injects faults), generate sample users, run the job, check the "
            "server's state against the input, and print the summary."
        ),
    )
    demo.add_argument("--users", type=int, default=2000, help="sample users (default 2000)")
    demo.add_argument("--accounts", type=int, default=5, help="sample accounts (default 5)")
    demo.add_argument(
        "--server-limit", type=float, default=300.0, help="mock server limit, req/s (default 300)"
    )
    demo.add_argument("--out", default="demo-output", help="folder for the sample CSV and report")
    demo.add_env_argument(
        "--no-progress",
        action="store_true",
        env="ASYNC_UPDATER_NO_PROGRESS",
        help="no live progress display",
    )

    rep = sub.add_parser(
        "report",
        help="summarise a finished or partial report (sends nothing)",
        description="Print the summary of a report: counts per status, top error codes, "
        "latency percentiles.",
    )
    rep.add_argument("report", metavar="REPORT", help="a report file (CSV or JSON Lines)")
    rep.add_argument("--json", action="store_true", help="print the summary as JSON")

    merge = sub.add_parser(
        "merge-reports",
        help="combine the reports of --shard runs into one",
        description="Combine shard reports into one report; refuses reports of different "
        "inputs or overlapping users, warns about missing shards.",
    )
    merge.add_argument("output", metavar="OUT", help="merged report to write")
    merge.add_argument("reports", metavar="REPORT", nargs="+", help="shard reports")

    undo = sub.add_parser(
        "undo",
        help="write the input file that restores every updated user of a report",
        description="From the 'before' column of a report made with --read-before, write an "
        "input CSV that puts every 'updated' user back to the state it had before that run. "
        "Running it (async-updater run UNDO.csv) is a normal run. Exit 1 if some updated "
        "users have no before-state (they are named and left out).",
        epilog="For a generic operation, give the same operation options as the run "
        "(--path-template, --read-path-template, --read-field, ...).",
    )
    undo.add_argument("report", metavar="REPORT", help="a run's report (CSV or JSON Lines)")
    undo.add_argument("--out", required=True, metavar="UNDO.csv", help="input file to write")
    undo.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists instead of refusing"
    )
    _add_operation_options(undo)

    plot = sub.add_parser(
        "plot",
        help="draw a --timeline file as a PNG (needs matplotlib)",
        description="Plot requests per second, throttling, errors, the allowed rate and "
        "requests in flight over time.",
    )
    plot.add_argument("timeline", metavar="TIMELINE", help="a file written by run --timeline")
    plot.add_argument("--out", required=True, metavar="PNG", help="image file to write")
    plot.add_argument("--title", default="async-updater run", help="plot title")

    ops = sub.add_parser(
        "operations",
        help="list the AWS services and operations --aws-operation can send (sends nothing)",
        description=(
            "Without an argument, list the services botocore has models for; with SERVICE, its "
            "operations; with SERVICE:Operation, the operation's input shape (required members "
            "marked *) and a --params-template skeleton to start from."
        ),
    )
    ops.add_argument("what", nargs="?", metavar="SERVICE[:Operation]", help="what to show")

    comp = sub.add_parser(
        "completion",
        help="print the shell completion script for bash, zsh or fish (needs argcomplete)",
        description="Print the script that completes async-updater's commands and options in "
        "SHELL; load it from the shell's start-up file: bash: eval \"$(async-updater completion "
        'bash)" in ~/.bashrc; zsh: eval "$(async-updater completion zsh)" in ~/.zshrc; fish: '
        "async-updater completion fish > ~/.config/fish/completions/async-updater.fish. Needs "
        "the completion extra (argcomplete) where async-updater is installed.",
    )
    comp.add_argument("shell", choices=SHELLS, help="the shell to complete in")

    mock = sub.add_parser(
        "mock-server",
        help="serve the mock Chime server on 127.0.0.1 (for trying things by hand)",
        add_help=False,
    )
    mock.add_argument("args", nargs=argparse.REMAINDER)  # main() hands them to the mock as they are
    return parser


def _add_run_options(p: _Parser) -> None:
    p.add_argument(
        "--report",
        metavar="PATH",
        help="report file (default: USERS.report.csv next to the input; .jsonl for jsonl)",
    )
    p.add_env_argument(
        "--format",
        choices=FORMATS,
        default="csv",
        env="ASYNC_UPDATER_FORMAT",
        help="report format (default csv)",
    )
    p.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="API endpoint (default: $AWS_ENDPOINT_URL_<SERVICE>, else $AWS_ENDPOINT_URL, "
        f"else {DEFAULT_ENDPOINT} for Chime)",
    )
    p.add_argument(
        "--region",
        default=None,
        help="signing region (default: $AWS_REGION, else $AWS_DEFAULT_REGION or the profile's, "
        "else us-east-1)",
    )
    p.add_argument(
        "--profile", default=None, help="AWS profile for credentials (default: $AWS_PROFILE)"
    )
    p.add_env_argument(
        "--rate",
        env="ASYNC_UPDATER_RATE",
        type=float,
        default=None,
        metavar="PER_SEC",
        help=(
            "optional ceiling on requests/s per limit scope (default: none). Without it the "
            "limiter discovers the server's limit: it starts low, doubles each round trip "
            "until the first throttle, then holds just under the limit it measured"
        ),
    )
    p.add_env_argument(
        "--concurrency",
        env="ASYNC_UPDATER_CONCURRENCY",
        type=_concurrency,
        default=None,
        metavar="N|auto",
        help=(
            "ceiling on requests in flight (default auto: up to "
            f"{DEFAULT_MAX_CONCURRENCY}, sized from the rate and the measured latency)"
        ),
    )
    p.add_env_argument(
        "--max-attempts",
        env="ASYNC_UPDATER_MAX_ATTEMPTS",
        type=int,
        default=8,
        metavar="N",
        help="attempts per user before it is reported failed (default 8)",
    )
    p.add_env_argument(
        "--limit-scope",
        env="ASYNC_UPDATER_LIMIT_SCOPE",
        choices=[s.value for s in LimitScope],
        default="global",
        help="one rate limiter for the whole run (default), or one per account",
    )
    p.add_env_argument(
        "--shared-limit",
        metavar="URL",
        env="ASYNC_UPDATER_SHARED_LIMIT",
        help=(
            "share the limit through Redis (redis:// or rediss:// URL): every process with the "
            "same URL, endpoint and limit scope paces as one client (rate, cuts, cool-downs, "
            "admission). Needs the redis extra"
        ),
    )
    p.add_env_argument(
        "--timeout",
        env="ASYNC_UPDATER_TIMEOUT",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="per-request timeout (default 30)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an earlier run: users already 'updated' in the report are not sent again",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing report instead of refusing"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the input and report each user as 'planned'; send no write. With "
        "--read-before, a plan: read every user and report it 'planned' (would change) or "
        "'unchanged', and sum up who would change which field",
    )
    p.add_argument(
        "--read-before",
        action="store_true",
        help="read each user's state before writing it (signed, rate-limited and retried like "
        "a write, in the same limit) and record it in the report's 'before' column, so that "
        "'undo' can restore it; a failed read fails the row (code Read:...) and sends no write",
    )
    p.add_argument(
        "--skip-unchanged",
        action="store_true",
        help="with --read-before (implied): do not write users already as asked; report them "
        "'unchanged', so a re-run of the same file writes nothing",
    )
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="only handle the rows of shard K of N (0-based): split by user, or by account "
        "with --limit-scope account",
    )
    p.add_env_argument(
        "--max-failures",
        env="ASYNC_UPDATER_MAX_FAILURES",
        default=str(DEFAULT_MAX_FAILURES),
        metavar="N|P%",
        help=(
            "failure budget: stop (exit 3, resumable) once more than N rows have failed, or more "
            f"than P%% of the rows with an outcome, counted after {MIN_ANSWERED_FOR_SHARE} of "
            "them (default %(default)s; 100%% turns it off)"
        ),
    )
    _add_operation_options(p)
    p.add_argument("--timeline", metavar="PATH", help="write per-second figures (JSON Lines) here")
    p.add_argument("--summary-json", metavar="PATH", help="write the summary as JSON here")
    p.add_env_argument(
        "--no-progress",
        action="store_true",
        env="ASYNC_UPDATER_NO_PROGRESS",
        help="no live progress display (it is also off when stderr is not a terminal)",
    )


def _add_operation_options(p: argparse.ArgumentParser) -> None:
    """The options that choose the operation: shared by ``run`` and ``undo``."""
    g = p.add_argument_group(
        "other operations",
        "Chime UpdateUserSettings is the default. --aws-operation sends any AWS operation, "
        "serialized by botocore from its model, with parameters from --params-template. "
        "--path-template switches to a generic SigV4 call per row: {column} placeholders in "
        "the path are percent-encoded as one segment; the body template is a JSON file whose "
        "strings may be placeholders, typed as {column:bool}, {column:int}, {column:float}, "
        "{column:json} or text {column}. To read users' state (--read-before, "
        "--skip-unchanged, undo) of a generic operation: --read-path-template for the GET, and "
        "one --read-field COLUMN=/json/pointer for every column the write sets.",
    )
    g.add_argument(
        "--aws-operation",
        metavar="SERVICE:OPERATION",
        help="an AWS operation by its botocore name, e.g. cognito-idp:AdminUpdateUserAttributes "
        "(see 'async-updater operations')",
    )
    g.add_argument(
        "--params-template",
        metavar="FILE",
        help="JSON file of the operation's input parameters with {column} placeholders; an "
        "untyped placeholder takes the type of the member it fills",
    )
    g.add_argument(
        "--operation", default="", metavar="NAME", help="a registered operation (entry point)"
    )
    g.add_argument("--method", default="PUT", help="HTTP method for --path-template (default PUT)")
    g.add_argument("--service", help="SigV4 signing name for --path-template, e.g. execute-api")
    g.add_argument("--path-template", metavar="TEMPLATE", help="e.g. /v1/users/{user_id}/flags")
    g.add_argument("--body-template", metavar="FILE", help="JSON body template file")
    g.add_argument(
        "--id-column",
        metavar="COLUMN",
        help="column shown as user_id in the report (default: the last path placeholder; with "
        "--aws-operation, the column filling a Username/UserName/UserId member, else the first)",
    )
    g.add_argument(
        "--scope-column",
        default="account_id",
        metavar="COLUMN",
        help="column shown as account_id in the report and used by --limit-scope account",
    )
    g.add_argument(
        "--read-path-template",
        metavar="TEMPLATE",
        help="path of the GET that reads a user's state, placeholders as in --path-template",
    )
    g.add_argument(
        "--read-field",
        action="append",
        default=[],
        metavar="COLUMN=POINTER",
        help="where a column's value is in the read's JSON answer, as a JSON pointer, e.g. "
        "enabled=/flags/enabled (repeat for each column the write sets)",
    )


def _concurrency(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value: {text!r} (a whole number, or auto)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # a shell asks for completions (argcomplete's protocol)
        _complete(parser)
    if argv[:1] == ["mock-server"]:
        # Its options are the mock's own, parsed by it: argparse's REMAINDER does not take
        # arguments that start with "--" (``mock-server --port 0`` was refused as unknown).
        from .testing.mock.cli import main as mock_main

        return mock_main(argv[1:])
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return _run_async(lambda: demo_command(args))
        if args.command == "report":
            return report_command(args)
        if args.command == "merge-reports":
            return merge_command(args)
        if args.command == "operations":
            return operations_command(args)
        if args.command == "completion":
            return completion_command(args.shell)
        if args.command == "undo":
            return undo_command(args)
        if args.command == "plot":
            plot_timeline(read_timeline(args.timeline), args.out, title=args.title)
            print(f"wrote {args.out}")
            return EXIT_OK
        return _run_async(lambda: run_command(args))
    except SafetyStop as exc:
        print(f"async-updater: safety stop: {exc}", file=sys.stderr)
        return EXIT_SAFETY_STOP
    except UpdaterError as exc:
        print(f"async-updater: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("async-updater: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _complete(parser: argparse.ArgumentParser) -> None:
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


def _run_async(factory: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop when it is installed (the ``fast`` extra), else asyncio's default loop."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(factory())


def operation_from_args(args: argparse.Namespace) -> Operation:
    if args.aws_operation:
        return _model_operation(args)
    if args.params_template:
        raise ConfigError("--params-template: only used with --aws-operation")
    generic_only = (
        "method",
        "service",
        "body_template",
        "id_column",
        "read_path_template",
        "read_field",
    )
    if not args.path_template:
        used = [f"--{n.replace('_', '-')}" for n in generic_only if _given(args, n)]
        if used:
            raise ConfigError(
                f"{', '.join(used)}: only used with --path-template"
                + (" or --aws-operation" if used == ["--id-column"] else "")
            )
        return load_operation(args.operation)
    if args.operation:
        raise ConfigError("--operation and --path-template cannot be used together")
    if not args.service:
        raise ConfigError("--service: required with --path-template (e.g. execute-api)")
    body = None
    if args.body_template:
        try:
            body = json.loads(Path(args.body_template).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"--body-template: cannot read it ({exc.strerror})") from None
        except ValueError as exc:
            raise ConfigError(f"--body-template: not valid JSON ({exc})") from None
    return GenericOperation(
        service=args.service,
        path_template=args.path_template,
        method=args.method,
        body_template=body,
        id_column=args.id_column,
        scope_column=args.scope_column or None,
        read_path_template=args.read_path_template,
        read_fields=parse_read_fields(args.read_field),
    )


def _model_operation(args: argparse.Namespace) -> ModelOperation:
    clash = [
        f"--{n.replace('_', '-')}"
        for n in (
            "operation",
            "path_template",
            "method",
            "service",
            "body_template",
            "read_path_template",
            "read_field",
        )
        if _given(args, n)
    ]
    if clash:
        raise ConfigError(f"--aws-operation and {', '.join(clash)} cannot be used together")
    if not args.params_template:
        raise ConfigError(
            "--params-template: required with --aws-operation "
            f"(async-updater operations {args.aws_operation} prints a skeleton)"
        )
    try:
        template = json.loads(Path(args.params_template).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--params-template: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"--params-template: not valid JSON ({exc})") from None
    return ModelOperation(
        args.aws_operation,
        template,
        id_column=args.id_column,
        scope_column=args.scope_column or None,
    )


def _given(args: argparse.Namespace, name: str) -> bool:
    value = getattr(args, name)
    return bool(value) and not (name == "method" and value == "PUT")


def endpoint_from(args: argparse.Namespace, service: str) -> str:
    """``--endpoint-url``, else the AWS SDKs' environment variables, else Chime's endpoint."""
    if args.endpoint_url:
        return str(args.endpoint_url)
    env = os.environ
    specific = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
    found = env.get(specific) or env.get("AWS_ENDPOINT_URL")
    if found:
        return found
    if service != "chime":
        raise ConfigError(
            f"--endpoint-url is needed for service {service!r} "
            f"(or set {specific} or AWS_ENDPOINT_URL)"
        )
    return DEFAULT_ENDPOINT


def config_from_args(args: argparse.Namespace, operation: Operation) -> UpdaterConfig:
    region = args.region or _profile_region(args.profile) or "us-east-1"
    if isinstance(operation, ModelOperation):
        # botocore's resolver: the endpoint options and variables as the SDKs read them, then
        # the service's rules; the endpoint may also say which name and region to sign for.
        resolved = resolve_endpoint(
            operation, region, endpoint_url=args.endpoint_url, profile=args.profile
        )
        endpoint, region, service = resolved.url, resolved.signing_region, resolved.signing_name
    else:
        endpoint, service = endpoint_from(args, operation.service), operation.service
    return UpdaterConfig(
        endpoint_url=endpoint,
        region=region,
        profile=args.profile,
        service=service,
        rate=args.rate,
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        limit_scope=LimitScope(args.limit_scope),
        shared_limit=args.shared_limit,
        timeout=args.timeout,
        dry_run=args.dry_run,
        max_failures=args.max_failures,
        read_before=args.read_before,
        skip_unchanged=args.skip_unchanged,
    )


def _profile_region(profile: str | None) -> str | None:
    if os.environ.get("AWS_REGION"):
        return os.environ["AWS_REGION"]
    try:
        from botocore.session import Session

        region = Session(profile=profile).get_config_variable("region")
    except Exception:  # a broken config file is reported when credentials are resolved
        return None
    return region if isinstance(region, str) else None


def default_report_path(input_path: str, fmt: str) -> Path:
    p = Path(input_path)
    return p.with_name(f"{p.stem}.report.{fmt}")


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
    transport: Transport | None = None
    if isinstance(operation, ModelOperation):
        # The template meets the model on the first row now, before the report is touched.
        check_first_row(operation, CsvSource(args.input, operation, shard=source.shard))
        transport = AiohttpTransport(
            config.endpoint_url,
            concurrency=config.max_concurrency,
            timeout=config.timeout,
            connect_timeout=config.connect_timeout,
            error_parser=operation.error_parser,
        )
    meta = {
        "input": str(args.input),
        "input_sha256": input_fingerprint(args.input),
        "operation": operation.name,
        "shard": args.shard,
        "shard_basis": str(source.shard.basis) if source.shard else None,
        "format": args.format,
    }
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
    stop: SafetyStop | None = None
    # Credentials are resolved before the report is touched: a run that cannot sign must
    # leave an existing report exactly as it was.
    updater = Updater(config, operation=operation, credentials=credentials, transport=transport)
    async with _closing(transport), updater:
        skip = None
        befores: BeforeJournal | None = None
        if args.resume:
            state = ResumeState.prepare(
                report_path, args.format, meta, read_before=config.read_before
            )
            skip, befores = state.updated, state.befores
            if state.carried_rows:
                print(
                    f"resuming: {state.carried_rows} users already updated (or unchanged) "
                    f"in {report_path} will not be sent again",
                    file=sys.stderr,
                )
        else:
            # A journal left by an earlier run of this report holds other users' states.
            before_states.discard(report_path)
            if config.read_before and not config.dry_run:
                befores = BeforeJournal.start(report_path)
        sink = _StopWhenUnwritable(
            open_report(report_path, args.format, append=args.resume), updater
        )
        if not args.resume:
            write_meta(report_path, meta)
        try:
            with _signals(updater):
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
    try:
        if args.timeline:
            updater.stats.timeline.write(args.timeline)
        if args.summary_json:
            Path(args.summary_json).write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    except OSError as exc:
        raise ReportError(f"cannot write {exc.filename}: {exc.strerror}") from None
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
    total = count_data_lines(source.path) if mode != "off" else None
    if total is not None and source.shard is not None:
        total = None  # a shard's share of the file is not known up front
    async with ProgressDisplay(updater, total, mode=mode, stream=stream) as display:
        updater.on_notice = display.print
        return await updater.run(source, sink, skip=skip, befores=befores)


class _signals:
    """First SIGINT/SIGTERM: graceful stop. Second, or ``GRACE`` seconds later: abandon the
    requests in flight (a hung server must not hold a stop for the whole --timeout; a process
    supervisor sends SIGTERM once and SIGKILL soon after)."""

    GRACE = 5.0

    def __init__(self, updater: Updater) -> None:
        self.updater = updater
        self.count = 0
        self.installed: list[int] = []
        self.deadline: asyncio.TimerHandle | None = None

    def _handle(self) -> None:
        self.count += 1
        if self.count == 1:
            self._say(
                f"stopping: no new requests; waiting up to {self.GRACE:g} s for those in flight "
                "(press Ctrl-C again to abandon them)"
            )
            self.updater.stop()
            self.deadline = asyncio.get_running_loop().call_later(self.GRACE, self._abandon)
        else:
            self._abandon()

    def _abandon(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self._say("abandoning the requests in flight (a --resume sends them again)")
        self.updater.stop(cancel_in_flight=True)

    def _say(self, message: str) -> None:
        if self.updater.on_notice is not None:
            self.updater.on_notice(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def __enter__(self) -> _signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._handle)
                self.installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        loop = asyncio.get_running_loop()
        for sig in self.installed:
            loop.remove_signal_handler(sig)


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


class EnvRef(str):
    """An argument of the resume command that refers to an environment variable instead of
    giving a value that holds a secret (a password in a URL): printed as ``"$VARIABLE"``."""

    variable: str  # the variable's name
    dest: str  # the option's, in the namespace

    def __new__(cls, variable: str, dest: str) -> EnvRef:
        ref = super().__new__(cls, f"${variable}")
        ref.variable, ref.dest = variable, dest
        return ref


def resume_command(args: argparse.Namespace, report_path: Path) -> list[str]:
    """The command that finishes (or retries the failures of) this run: ``run`` with the same
    input and report, ``--resume``, and every option of the run parser whose value differs
    from its built-in default, in its own spelling (except ``NOT_RESUMED``). Values that came
    from environment variables are spelled out too, so the command does not depend on the
    shell it is pasted in; a value that holds a secret is never printed: it is an ``EnvRef``
    to the option's variable."""
    cmd = ["async-updater", "run", str(args.input), "--report", str(report_path)]
    run = _run_parser()
    for action in run._actions:
        if not action.option_strings or action.dest in NOT_RESUMED or action.dest == "report":
            continue
        if action.default == argparse.SUPPRESS:  # --help
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        if _holds_secret(value):
            variable = run.env_vars.get(action.dest, f"ASYNC_UPDATER_{action.dest.upper()}")
            cmd += [_long_option(action), EnvRef(variable, action.dest)]
        else:
            cmd += _spelled(action, value)
    cmd.append("--resume")
    return cmd


def resume_text(
    args: argparse.Namespace, report_path: Path, environ: Mapping[str, str] | None = None
) -> str:
    """``resume_command`` as shell text, with a line that says which variables to set first
    when a secret it refers to is not already in ``environ`` (default ``os.environ``)."""
    environ = os.environ if environ is None else environ
    cmd = resume_command(args, report_path)
    text = " ".join(f'"{a}"' if isinstance(a, EnvRef) else shlex.quote(a) for a in cmd)
    unset = [
        a.variable
        for a in cmd
        if isinstance(a, EnvRef) and environ.get(a.variable) != getattr(args, a.dest)
    ]
    if unset:
        text += (
            f"\n(set {', '.join(unset)} to this run's value first: it holds a password, so it "
            "is not printed)"
        )
    return text


def _holds_secret(value: Any) -> bool:
    """A URL with a password (``redis://:pw@host``, ``...?password=pw``)."""
    if not isinstance(value, str) or "://" not in value:
        return False
    try:
        parts = urlsplit(value)
        return parts.password is not None or "password" in parse_qs(parts.query)
    except ValueError:  # not a URL after all (a bad port); say nothing of it
        return True


def environment_variables() -> dict[str, str]:
    """Every environment variable the CLI's options read, with the option it gives."""
    found: dict[str, str] = {}
    for parser in _subparsers(build_parser(environ={})).values():
        if isinstance(parser, _Parser):
            for action in parser._actions:
                if action.dest in parser.env_vars:
                    found[parser.env_vars[action.dest]] = _long_option(action)
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the parser has no commands")


def _run_parser() -> _Parser:
    """The ``run`` parser with its built-in defaults (no environment)."""
    parser = _subparsers(build_parser(environ={}))["run"]
    assert isinstance(parser, _Parser)
    return parser


def _long_option(action: argparse.Action) -> str:
    return next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])


def _spelled(action: argparse.Action, value: Any) -> list[str]:
    """``value`` as the arguments that give it to ``action`` again."""
    option = _long_option(action)
    if action.nargs == 0:  # store_true, store_false, store_const; count repeats the flag
        return [option] * (value if isinstance(value, int) and not isinstance(value, bool) else 1)
    if isinstance(value, list):
        if isinstance(action, (argparse._AppendAction, argparse._ExtendAction)):
            return [part for item in value for part in _option_value(option, item)]
        return [option, *(str(v) for v in value)]
    return _option_value(option, value)


def _option_value(option: str, value: Any) -> list[str]:
    if isinstance(value, list):
        return [option, *(str(v) for v in value)]
    text = str(value)
    # A value that starts with "-" would be read as an option: glue it on.
    return [f"{option}={text}"] if text.startswith("-") else [option, text]


def exit_code(summary: RunSummary) -> int:
    if summary.safety_stop:
        return EXIT_SAFETY_STOP
    if summary.interrupted:
        return EXIT_INTERRUPTED
    bad = summary.counts.get(Status.FAILED.value, 0) + summary.counts.get(Status.INVALID.value, 0)
    return EXIT_FAILED if bad else EXIT_OK


async def demo_command(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Preview, run and undo against the embedded mock server, checking the server's state
    after the run (every user as asked) and after the undo (every user as before the run)."""
    from .operations.chime import ChimeUpdateUserSettings
    from .testing.mock import MockChimeServer, initial_settings
    from .testing.mock.config import MockConfig
    from .testing.sample import generate_users

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
