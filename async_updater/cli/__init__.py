"""The command line, ``async-updater`` (also ``python -m async_updater``).

``parser.py`` builds the parser (options, environment variables); ``dispatch.py`` runs a
command and maps errors to exit codes (``exits.py``); ``run.py`` is ``async-updater run``
(with ``options.py`` turning options into a config and an operation, ``signals.py`` for Ctrl-C,
``streams.py`` for a console that goes away mid-run, ``resume.py`` for the command that
finishes a run); ``commands.py`` and ``demo.py`` the rest.
"""

from .demo import demo_command
from .dispatch import main
from .exits import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SAFETY_STOP,
    EXIT_USAGE,
    exit_code,
)
from .options import config_from_args, endpoint_from, operation_from_args
from .parser import SHELLS, build_parser, environment_variables, run_parser, version
from .resume import NOT_RESUMED, EnvRef, resume_command, resume_text
from .run import run_command

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SAFETY_STOP",
    "EXIT_USAGE",
    "NOT_RESUMED",
    "SHELLS",
    "EnvRef",
    "build_parser",
    "config_from_args",
    "demo_command",
    "endpoint_from",
    "environment_variables",
    "exit_code",
    "main",
    "operation_from_args",
    "resume_command",
    "resume_text",
    "run_command",
    "run_parser",
    "version",
]
