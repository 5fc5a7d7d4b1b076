"""The SQLite store: migrations from older databases, and one transaction per outcome."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from slm_desk.contract.results import RunResult, Tokens
from slm_desk.data.store import MIGRATIONS, Store

# the runs table exactly as the first release created it (no user_version set)
FIRST_RELEASE = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    task TEXT NOT NULL, task_version INTEGER NOT NULL, model TEXT NOT NULL, input TEXT NOT NULL,
    output TEXT, rejected_output TEXT, valid INTEGER NOT NULL, errors TEXT NOT NULL, confidence REAL,
    decision TEXT NOT NULL, reason TEXT NOT NULL, attempts INTEGER NOT NULL, latency_ms INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_task ON runs (task, created_at);
"""


def result(**changes: object) -> RunResult:
    base = dict(
        task="guard",
        task_version=1,
        model="m",
        input="hello",
        output={"label": "safe", "span": None},
        valid=True,
        errors=[],
        decision="accept",
        reason="ok",
        attempts=1,
        latency_ms=5,
        tokens=Tokens(),
    )
    return RunResult(**{**base, **changes})  # type: ignore[arg-type]


def test_a_first_release_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(FIRST_RELEASE)
    old.execute(
        "INSERT INTO runs (task, task_version, model, input, valid, errors, decision, reason, attempts,"
        " latency_ms, prompt_tokens, cached_tokens, completion_tokens) VALUES"
        " ('guard', 1, 'm', 'old run', 1, '[]', 'accept', 'ok', 1, 5, 1, 0, 1)"
    )
    old.commit()
    old.close()
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    store.record(result(decision="review"))
    assert [r["input"] for r in store.runs()] == ["hello", "old run"]
    assert store.db.execute("SELECT count(*) FROM review").fetchone()[0] == 1
    store.close()
    Store(path).close()  # opening again migrates nothing and fails on nothing


def test_an_outcome_is_written_whole(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite3")
    store.record(result(valid=False, output=None, rejected_output="{", errors=["bad"], decision="review"))
    counts = [store.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("runs", "review", "evalset")]
    assert counts == [1, 1, 1]
