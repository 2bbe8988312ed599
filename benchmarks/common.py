"""Shared harness: the mock server in its own process, clients in theirs, and the checks.

Everything binds 127.0.0.1. Every process started here has a time limit (the mock gets
``--duration``, clients ``--time-limit`` and a wall-clock kill), so a benchmark stops by itself.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# The mock's default test credentials (not a secret); clients read them from the environment.
_MOCK_KEY_ID = "AKIDMOCK"
_MOCK_SECRET_VALUE = "mock-secret"
_TICKS = os.sysconf("SC_CLK_TCK")
_TRUE = frozenset({"true", "1", "yes"})


def client_env() -> dict[str, str]:
    """The environment of a client process: the mock's credentials and nothing else of AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=_MOCK_KEY_ID,
        AWS_SECRET_ACCESS_KEY=_MOCK_SECRET_VALUE,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        PYTHONPATH=str(ROOT),
    )
    return env


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man proc).
    return (int(fields[11]) + int(fields[12])) / _TICKS


class MockServer:
    """``python -m async_updater.testing.mock`` in a child process, with admin calls."""

    def __init__(self, *args: str, duration: float = 3600.0) -> None:
        self.args = ("--port", "0", "--duration", str(duration), *args)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> MockServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "async_updater.testing.mock", *self.args],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=client_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on " not in line:
            self.__exit__()
            raise RuntimeError(f"the mock server did not start: {line!r}")
        self.url = line.rsplit(" ", 1)[1].strip()
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def reset(self, **limits: Any) -> None:
        if limits:
            self.post("/_mock/limits", limits)
        self.post("/_mock/reset")


@dataclass
class ClientRun:
    """One client's run against a freshly reset server: its own figures and the server's."""

    client: str
    result: dict[str, Any]
    server: dict[str, Any]
    check: Check
    mock_cpu_s: float
    reset_at: float  # time.monotonic() in the harness when the server was reset
    limit_changes: list[tuple[float, float]] = field(default_factory=list)  # (s since reset, r)
    events: list[list[Any]] | None = None

    @property
    def label(self) -> str:
        loop = self.result.get("loop", "")
        return f"{self.client} ({loop})" if self.client == "async_updater" else self.client


@dataclass(frozen=True)
class Check:
    """Server state against the input: what was lost and what was applied more than once."""

    valid_rows: int
    applied_right: int
    lost: int
    wrong_settings: int
    applied_twice: int
    extra: int  # users applied that are not in the input (should never happen)


def generate_input(path: Path, users: int, accounts: int = 10, seed: int = 1) -> None:
    from async_updater.testing.sample import generate_users

    if not path.exists():
        generate_users(path, users, accounts, seed=seed)


def expected_settings(path: Path) -> dict[tuple[str, str], dict[str, bool]]:
    """Users and settings of every valid row (first occurrence of a user wins, like the tool)."""
    wanted: dict[tuple[str, str], dict[str, bool]] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row in csv.DictReader(f):
            key = (row["account_id"], row["user_id"])
            if key in wanted or not key[0] or not key[1]:
                continue
            wanted[key] = {
                "InboundCalling": row["inbound_calling"].strip().lower() in _TRUE,
                "OutboundCalling": row["outbound_calling"].strip().lower() in _TRUE,
                "SMS": row["sms"].strip().lower() in _TRUE,
            }
    return wanted


def check_applied(
    wanted: dict[tuple[str, str], dict[str, bool]], applied: Iterable[Sequence[Any]]
) -> Check:
    right = wrong = twice = extra = 0
    for account, user, settings, count in applied:
        expected = wanted.get((account, user))
        if expected is None:
            extra += 1
            continue
        if settings == expected:
            right += 1
        else:
            wrong += 1
        if count > 1:
            twice += 1
    return Check(len(wanted), right, len(wanted) - right, wrong, twice, extra)


def run_client(
    mock: MockServer,
    client: str,
    csv_path: Path,
    wanted: dict[tuple[str, str], dict[str, bool]],
    *,
    rate: float | None = 1000.0,
    concurrency: int | str = 64,
    limit_scope: str = "global",
    attempts: int = 8,
    loop: str = "asyncio",
    time_limit: float = 300.0,
    limits: dict[str, Any] | None = None,
    schedule: Sequence[tuple[float, dict[str, Any]]] = (),
    events: bool = False,
    report: Path | None = None,
) -> ClientRun:
    """Start ``client`` in its own process, reset the server (with ``limits``) when the client is
    ready, apply ``schedule`` (seconds after the start, limits to POST), and collect.
    ``rate`` None gives async_updater no ceiling; ``concurrency`` may be ``"auto"`` for it."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.clients",
        client,
        "--url",
        mock.url,
        "--csv",
        str(csv_path),
        "--concurrency",
        str(concurrency),
        "--limit-scope",
        limit_scope,
        "--attempts",
        str(attempts),
        "--loop",
        loop,
        "--time-limit",
        str(time_limit),
    ]
    if rate is not None:
        cmd += ["--rate", str(rate)]
    if report is not None:
        cmd += ["--report", str(report)]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=client_env()
    )
    assert proc.stdin is not None and proc.stdout is not None
    # The client may hang only up to its own limit plus set-up and tear-down; then it is killed.
    killer = threading.Timer(time_limit + 120, proc.kill)
    killer.start()
    try:
        line = proc.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"{client} did not get ready: {line!r}")
        mock.reset(**(limits or {}))
        reset_at = time.monotonic()
        cpu0 = mock.cpu_s()
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        changes: list[tuple[float, float]] = []
        for at, change in schedule:
            delay = reset_at + at - time.monotonic()
            if delay > 0 and _wait_or_exit(proc, delay):
                break
            mock.post("/_mock/limits", change)
            if "rate_limit" in change:
                changes.append((time.monotonic() - reset_at, float(change["rate_limit"])))
        out = proc.stdout.read()
        proc.wait()
        mock_cpu = mock.cpu_s() - cpu0
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{client} exited with {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["go_offset_s"] = result["t0_monotonic"] - reset_at
    server = mock.get("/_mock/state")
    check = check_applied(wanted, mock.get("/_mock/applied"))
    recorded = mock.get("/_mock/events")["events"] if events else None
    return ClientRun(client, result, server, check, mock_cpu, reset_at, changes, recorded)


def cooldown_violations(
    events: Sequence[Sequence[Any]], retry_after: float, tol: float, *, per_account: bool = False
) -> int:
    """Requests arriving more than ``tol`` after a 429 and less than ``retry_after`` after it.

    ``events`` are ``/_mock/events`` rows (arrived, responded, account, user, status). With
    ``per_account`` a 429 announces a cool-down for its own account's bucket only."""
    return sum(cooldown_violations_split(events, retry_after, tol, per_account=per_account))


def cooldown_violations_split(
    events: Sequence[Sequence[Any]], retry_after: float, tol: float, *, per_account: bool = False
) -> tuple[int, int]:
    """``cooldown_violations`` in two: (late to stop, back too soon). Each request inside a
    cool-down is put by how long after the latest 429 answered before it (less ``tol``) it
    arrived: in the first half of the pause, the client had not stopped yet; in the second,
    it had stopped and resumed before the pause was over. The two have different causes."""
    announced: dict[str, list[float]] = {}
    for event in events:
        if event[4] == 429:
            announced.setdefault(event[2] if per_account else "", []).append(event[1])
    for times in announced.values():
        times.sort()
    late_to_stop = too_soon = 0
    for event in events:
        arrived = event[0]
        times = announced.get(event[2] if per_account else "", [])
        i = bisect.bisect_right(times, arrived - tol)
        if i and arrived - times[i - 1] < retry_after:
            if arrived - times[i - 1] < retry_after / 2:
                late_to_stop += 1
            else:
                too_soon += 1
    return late_to_stop, too_soon


def lower_priority(steps: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that starts a child process ``steps`` below this one's CPU priority,
    as ``nice -n steps`` does (None for 0: the same priority)."""
    if not steps:
        return None

    def lower() -> None:
        os.nice(steps)

    return lower


def answer_latency(events: Sequence[Sequence[Any]], share: float) -> float:
    """The ``share`` quantile of how long the mock took to answer a request (its event log:
    answered less arrived, seconds): its set latency, unless its process was starved of the
    CPU (its clock then runs behind the clients' and its bucket sees their requests late)."""
    if not events:
        return 0.0
    took = sorted(event[1] - event[0] for event in events)
    return took[min(len(took) - 1, int(share * len(took)))]


def _wait_or_exit(proc: subprocess.Popen[str], seconds: float) -> bool:
    """Sleep ``seconds`` unless the process ends first; True if it ended."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def machine_note() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    loadavg = os.getloadavg()[0]
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs ({cpu}), "
        f"Python {platform.python_version()}; load average at start {loadavg:.2f} "
        "(other jobs share this machine: compare the ratios within a table, not across runs)"
    )


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("aiohttp", "aiobotocore", "botocore", "boto3", "uvloop"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def now_utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def command_line() -> str:
    return " ".join(["python -m benchmarks." + Path(sys.argv[0]).stem, *sys.argv[1:]])


def bench_parser(module: str, doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """A benchmark script's parser: its docstring as help, ``--quick`` and ``--out``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    return parser
