"""The command that finishes a run, derived from the run parser's own options."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .parser import (
    long_option,
    run_parser,
)

# Options of ``run`` that a resume must not repeat, and why: ``--resume`` is added anyway;
# ``--overwrite`` would empty the report the resume continues; ``--dry-run`` would only plan
# it; ``--timeline`` and ``--summary-json`` describe one invocation, and the resume would
# overwrite the figures of the run it continues. Every other option is repeated when it
# differs from its default, so a new option is resumed unless it is added here.
NOT_RESUMED = frozenset({"resume", "overwrite", "dry_run", "timeline", "summary_json"})


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
    run = run_parser()
    for action in run.options():
        if not action.option_strings or action.dest in NOT_RESUMED or action.dest == "report":
            continue
        if action.default == argparse.SUPPRESS:  # --help
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        if _holds_secret(value):
            variable = run.env_vars.get(action.dest, f"ASYNC_UPDATER_{action.dest.upper()}")
            cmd += [long_option(action), EnvRef(variable, action.dest)]
        else:
            cmd += _spelled(action, value, repeats=run.repeats(action))
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


def _spelled(action: argparse.Action, value: Any, *, repeats: bool) -> list[str]:
    """``value`` as the arguments that give it to ``action`` again."""
    option = long_option(action)
    if action.nargs == 0:  # store_true, store_false, store_const; count repeats the flag
        return [option] * (value if isinstance(value, int) and not isinstance(value, bool) else 1)
    if isinstance(value, list):
        if repeats:
            return [part for item in value for part in _option_value(option, item)]
        return [option, *(str(v) for v in value)]
    return _option_value(option, value)


def _option_value(option: str, value: Any) -> list[str]:
    if isinstance(value, list):
        return [option, *(str(v) for v in value)]
    text = str(value)
    # A value that starts with "-" would be read as an option: glue it on.
    return [f"{option}={text}"] if text.startswith("-") else [option, text]
