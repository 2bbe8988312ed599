"""The console may go away before the run does: ``async-updater run ... | tee log`` whose
``tee`` was killed, a log shipper that died, a parent process gone. Python ignores SIGPIPE, so
every later write raises ``BrokenPipeError``: in a notice, in the progress line, in the Ctrl-C
handler (which then never stopped the run), in the summary (exit 1 for a run that went well).
The report file is the run's record, not the console: once a stream's reader is gone, its
descriptor is pointed at ``/dev/null`` and the run goes on, stops on a signal, and exits with
its own code."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["Outliving", "outliving_output"]


class Outliving:
    """A text stream whose writes outlive its reader (see the module doc)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        """The reader closed its end: from now on the bytes go nowhere, quietly (also those
        still buffered, and the interpreter's own flush at exit)."""
        with contextlib.suppress(OSError, ValueError):  # (no descriptor: a test's capture)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()  # what was buffered goes to /dev/null now

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)  # isatty, fileno, encoding... of the real stream


@contextlib.contextmanager
def outliving_output() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` outlive their readers while the block runs."""
    saved = sys.stdout, sys.stderr
    guarded = Outliving(saved[0]), Outliving(saved[1])
    sys.stdout, sys.stderr = guarded
    try:
        yield
    finally:
        for stream in guarded:
            stream.flush()  # here, not at the interpreter's exit (exit code 120 if gone)
        sys.stdout, sys.stderr = saved
