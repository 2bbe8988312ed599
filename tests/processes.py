"""Real processes for tests: the mock server in its own process (read through ``/_mock/``) and
``async-updater run`` as a subprocess with credentials from its environment, as an operator
runs it. Every wait is bounded; every process is killed on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from async_updater.io.reader import read_report
from async_updater.io.source import CsvSource
from async_updater.model import UserRecord

CONCURRENCY = 32
MOCK_KEY, MOCK_SECRET = "AKIDMOCK", "mock-secret"
# The console script ``async-updater`` lives next to the interpreter running the tests.
BIN = Path(sys.executable).parent


class MockProcess:
    """``python -m async_updater.testing.mock`` in its own process, read through /_mock/."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "async_updater.testing.mock", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else ""
        if "listening on " not in line:
            self.close()
            raise RuntimeError(f"the mock server did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].strip()

    def _call(self, path: str, body: bytes | None = None) -> Any:
        req = urllib.request.Request(self.url + path, data=body, method="POST" if body else "GET")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def reset(self) -> None:
        self._call("/_mock/reset", b"{}")

    def limits(self, **changes: Any) -> dict[str, Any]:
        """Change the mock's limits (or latency) at run time; what it applies now."""
        applied: dict[str, Any] = self._call("/_mock/limits", json.dumps(changes).encode())
        return applied

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self._call("/_mock/state")
        return state

    def counters(self) -> dict[str, int]:
        counters: dict[str, int] = self.state()["counters"]
        return counters

    def wait_until_idle(self, limit: float = 30.0) -> None:
        """Poll until the server handles no request and holds no client connection but the
        asking one: after a client died, every request it had on the wire has landed."""
        deadline = time.monotonic() + limit
        while True:
            state = self.state()
            if state["in_flight"] == 0 and state["connections"] <= 1:
                return
            assert time.monotonic() < deadline, (
                f"the mock is still busy after {limit} s: {state['in_flight']} requests in "
                f"flight, {state['connections']} connections"
            )
            time.sleep(0.01)

    def applied(self) -> dict[tuple[str, str], tuple[dict[str, bool], int]]:
        return {(a, u): (settings, n) for a, u, settings, n in self._call("/_mock/applied")}

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@contextlib.contextmanager
def mock_process(*args: str) -> Iterator[MockProcess]:
    server = MockProcess(*args)
    try:
        yield server
    finally:
        server.close()


def cli_env(tmp: Path, **overrides: str) -> dict[str, str]:
    """The environment of an operator's shell: the mock's credentials in ``AWS_*`` variables
    (``overrides`` replace them), no shared AWS files, and the console script on ``PATH``."""
    empty = tmp / "empty-aws-file"
    empty.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        AWS_ACCESS_KEY_ID=MOCK_KEY,
        AWS_SECRET_ACCESS_KEY=MOCK_SECRET,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_CONFIG_FILE=str(empty),
    )
    env.update(overrides)
    return env


class Run:
    """One ``python -m async_updater run`` process with credentials from the environment.
    ``Run.command`` starts any command line instead (e.g. one a summary printed)."""

    def __init__(
        self,
        tmp: Path,
        users_csv: Path,
        report: Path,
        url: str,
        *extra: str,
        env: dict[str, str] | None = None,
        closed_output: bool = False,
    ) -> None:
        argv = [
            *(sys.executable, "-m", "async_updater", "run", str(users_csv)),
            *("--endpoint-url", url, "--report", str(report), "--no-progress"),
            *("--rate", "2000", "--concurrency", str(CONCURRENCY), *extra),
        ]
        self.spawn(tmp, argv, report, env, closed_output)

    @classmethod
    def command(
        cls, tmp: Path, argv: list[str], report: Path, env: dict[str, str] | None = None
    ) -> Run:
        run = cls.__new__(cls)
        run.spawn(tmp, argv, report, env)
        return run

    def spawn(
        self,
        tmp: Path,
        argv: list[str],
        report: Path,
        env: dict[str, str] | None,
        closed_output: bool = False,
    ) -> None:
        """Start ``argv``; its output goes to files, or with ``closed_output`` to pipes whose
        reader goes away at once (a ``| tee`` killed, a parent gone): nothing is kept."""
        n = len(list(tmp.glob("run-*.out")))
        self.out_path, self.err_path = tmp / f"run-{n}.out", tmp / f"run-{n}.err"
        self.report = report
        self.started = time.monotonic()
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            pipe = subprocess.PIPE
            self.proc = subprocess.Popen(
                argv,
                env=env or cli_env(tmp),
                stdout=pipe if closed_output else out,
                stderr=pipe if closed_output else err,
                cwd=tmp,
            )
        if closed_output:
            assert self.proc.stdout is not None and self.proc.stderr is not None
            self.proc.stdout.close()
            self.proc.stderr.close()

    def wait_for_rows(self, rows: int, limit: float = 60.0) -> None:
        """Poll the report until it holds ``rows`` data rows (the process must still run)."""
        deadline = time.monotonic() + limit
        seen, offset = -1, 0  # the header line counts -1
        while seen < rows:
            assert self.proc.poll() is None, f"the run ended early: {self.stderr()}"
            assert time.monotonic() < deadline, f"only {seen} rows after {limit} s"
            if self.report.exists():
                with open(self.report, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                offset += len(chunk)
                seen += chunk.count(b"\n")
            time.sleep(0.002)

    def wait_for_stderr(self, text: str, limit: float = 30.0) -> None:
        """Poll the run's stderr until it holds ``text`` (the process must still run)."""
        deadline = time.monotonic() + limit
        while text not in self.stderr():
            assert self.proc.poll() is None, f"the run ended early: {self.stderr()}"
            assert time.monotonic() < deadline, f"no {text!r} on stderr after {limit} s"
            time.sleep(0.005)

    async def await_rows(self, rows: int, limit: float = 30.0) -> None:
        """``wait_for_rows`` for a test whose own loop serves the run."""
        deadline = time.monotonic() + limit
        while not self.report.exists() or len(list(read_report(self.report))) < rows:
            assert self.proc.poll() is None, f"the run ended early: {self.stderr()}"
            assert time.monotonic() < deadline, f"fewer than {rows} rows after {limit} s"
            await asyncio.sleep(0.02)

    async def await_exit(self, limit: float) -> int | None:
        """The exit code, or None if the process still runs after ``limit`` seconds."""
        deadline = time.monotonic() + limit
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.proc.poll()

    def finish(self, limit: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout=limit)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stdout(self) -> str:
        return self.out_path.read_text()

    def stderr(self) -> str:
        return self.err_path.read_text()


def expected_state(path: Path) -> dict[tuple[str, str], dict[str, bool]]:
    out = {}
    for item in CsvSource(path):
        assert isinstance(item, UserRecord)
        out[(item.account_id, item.user_id)] = {
            "InboundCalling": item.inbound_calling,
            "OutboundCalling": item.outbound_calling,
            "SMS": item.sms,
        }
    return out


def report_keys(report: Path, status: str = "updated") -> set[tuple[str, str]]:
    return {(r.account_id, r.user_id) for r in read_report(report) if r.status == status}


def assert_finished(report: Path, mock: MockProcess, expected: dict[Any, Any]) -> dict[Any, int]:
    """The report holds one ``updated`` row per input user and the server holds the input;
    returns the server's apply count per user."""
    rows = list(read_report(report))
    assert len(rows) == len(expected)
    assert {(r.account_id, r.user_id) for r in rows} == set(expected)
    assert {r.status for r in rows} == {"updated"}
    applied = mock.applied()
    assert {key: settings for key, (settings, _) in applied.items()} == expected
    return {key: n for key, (_, n) in applied.items()}


def one_error_line(err: str, prefix: str = "async-updater: error: ") -> str:
    """The last line of stderr, which must be the only error line, start with ``prefix``, and
    come with no traceback."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines, "nothing on stderr"
    errors = [line for line in lines if line.startswith("async-updater: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    assert lines[-1].startswith(prefix), err
    return lines[-1].removeprefix(prefix)


@contextlib.contextmanager
def small_disk(path: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` mounted at ``path``: a real disk that fills up (ENOSPC). Skips
    the test where mounting is not allowed (it needs root, or a user namespace)."""
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], timeout=30, check=False)
