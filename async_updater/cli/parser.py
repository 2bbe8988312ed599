"""The command line's parser: its commands and options, environment variables the AWS CLI's way."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..config import DEFAULT_ENDPOINT, LimitScope
from ..io.report import FORMATS
from ..pipeline.safety import (
    DEFAULT_MAX_FAILURES,
    DEFAULT_REJECTIONS_IN_A_ROW,
    MIN_ANSWERED_FOR_SHARE,
)
from ..ratelimit import DEFAULT_MAX_CONCURRENCY
from .exits import EXIT_USAGE

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


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors, as the contract wants; only the wording is ours.

    Options added with ``add_env_argument`` also take their value from an environment variable,
    the AWS CLI's way: the flag on the command line wins over the variable, the variable over
    the default, and ``--help`` names it. The variables are read at parse time from ``environ``
    (``os.environ`` unless given), converted and checked as the flag's value would be."""

    def __init__(self, *args: Any, environ: Mapping[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.environ = os.environ if environ is None else environ
        self.env_vars: dict[str, str] = {}  # dest -> variable
        self.commands: dict[str, Parser] = {}  # name -> parser, for a parser with commands

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

    def options(self) -> list[argparse.Action]:
        """This parser's arguments, in the order they were added (``--help`` included)."""
        return list(self._actions)

    def repeats(self, action: argparse.Action) -> bool:
        """Whether each use of ``action``'s option adds to its value (``append``, ``extend``)."""
        kinds = (self._registry_get("action", "append"), self._registry_get("action", "extend"))
        return isinstance(action, kinds)

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


def build_parser(environ: Mapping[str, str] | None = None) -> Parser:
    """The CLI's parser; ``environ`` is where the options' environment variables are read
    (default ``os.environ``; ``{}`` gives the built-in defaults)."""
    parser = Parser(
        prog="async-updater",
        description=(
            "Apply per-user settings (Amazon Chime UpdateUserSettings or any SigV4 PUT) from a "
            "CSV file, as fast as the API allows, and write a per-user report."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    parser.commands = sub.choices

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


def _add_run_options(p: Parser) -> None:
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
            f"{DEFAULT_MAX_CONCURRENCY}, sized from the rate and the measured latency); each "
            "holds a connection, so an open file: the open-files limit (ulimit -n) is raised "
            "as far as needed where the hard limit allows, else it caps this"
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


def environment_variables() -> dict[str, str]:
    """Every environment variable the CLI's options read, with the option it gives."""
    found: dict[str, str] = {}
    for parser in build_parser(environ={}).commands.values():
        for action in parser.options():
            if action.dest in parser.env_vars:
                found[parser.env_vars[action.dest]] = long_option(action)
    return found


def run_parser() -> Parser:
    """The ``run`` parser with its built-in defaults (no environment)."""
    return build_parser(environ={}).commands["run"]


def long_option(action: argparse.Action) -> str:
    return next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
