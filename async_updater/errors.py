"""One exception hierarchy: the CLI maps each class to an exit code and a one-line message."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline.safety import StopReason

__all__ = [
    "ConfigError",
    "CredentialsError",
    "InputError",
    "ReportError",
    "ReportLocked",
    "RowError",
    "SafetyStop",
    "StateError",
    "UpdaterError",
]


class UpdaterError(Exception):
    """Base of every error async_updater raises on purpose; ``str(err)`` is one line for humans."""

    exit_code = 2


class ConfigError(UpdaterError, ValueError):
    """An option has a value it cannot take; the message names the option."""


class InputError(UpdaterError):
    """The input as a whole cannot be used (missing file, bad header, not UTF-8 at the start...)."""


class CredentialsError(UpdaterError):
    """No usable AWS credentials were found, or they could not be refreshed."""


class ReportError(UpdaterError):
    """The report cannot be written or, when resuming, read back."""


class ReportLocked(ReportError):
    """Another run holds the report (``holder`` says which: pid, host, since when)."""

    def __init__(self, message: str, holder: str = "") -> None:
        super().__init__(message)
        self.holder = holder


class SafetyStop(UpdaterError):
    """The run stopped early because going on would only do harm (credentials rejected, failure
    budget spent, a clock that cannot be corrected). Requests in flight were finished and the
    report flushed: it is partial and resumable. ``reason`` says why, with the server's answer."""

    exit_code = 3

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason.text)
        self.reason = reason


class RowError(Exception):
    """One input row is invalid. Raised by an operation's row parser, never escapes the source."""

    __slots__ = ("field", "reason")

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class StateError(Exception):
    """A user's state cannot be used: a read's answer is not the shape the operation expects, or
    a before-state cannot be turned back into an input row. Per row, like ``RowError``: the row
    fails (``code`` goes into the report after ``Read:``), the run goes on."""

    __slots__ = ("code",)

    def __init__(self, message: str, code: str = "InvalidState") -> None:
        super().__init__(message)
        self.code = code
