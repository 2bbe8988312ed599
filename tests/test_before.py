"""The before-state journal: what a run appends before each write survives the process, and
the stores answer ``captured`` with the first state kept for a user."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from async_updater.io.before import BeforeJournal, MemoryBeforeStore, discard, journal_path

STATE = '{"inbound_calling": false, "outbound_calling": true, "sms": false}'


def test_memory_store_keeps_the_first_state_of_each_user() -> None:
    store = MemoryBeforeStore()
    assert store.captured("a", "u") is None
    store.record("a", "u", STATE)
    store.record("a", "u", '{"sms": true}')
    assert store.captured("a", "u") == STATE
    assert store.captured("a", "v") is None


def test_a_flushed_journal_line_survives_the_process_being_killed(tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    code = (
        "import os, sys\n"
        "from async_updater.io.before import BeforeJournal\n"
        f"j = BeforeJournal.start({str(report)!r})\n"
        f"j.record('acct', 'ü/1', {STATE!r})\n"
        "j.flush()\n"
        f"j.record('acct', 'unflushed', {STATE!r})\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert done.returncode == -9
    lines = journal_path(report).read_text(encoding="ascii").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"account_id": "acct", "user_id": "ü/1", "before": json.loads(STATE)}
    ]


def test_a_fresh_journal_replaces_an_earlier_one_and_discard_removes_it(tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    journal_path(report).write_text('{"account_id": "a", "user_id": "old", "before": {}}\n')
    journal = BeforeJournal.start(report)
    assert journal.captured("a", "old") is None
    journal.close()
    assert journal_path(report).read_text() == ""
    discard(report)
    assert not journal_path(report).exists()
    discard(report)  # nothing to remove: fine
