"""The local SQLite history: one row per run, written in its own transaction so an interrupt never leaves half a row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from slm_desk.results import RunResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    task TEXT NOT NULL,
    task_version INTEGER NOT NULL,
    model TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    rejected_output TEXT,
    valid INTEGER NOT NULL,
    errors TEXT NOT NULL,
    confidence REAL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_task ON runs (task, created_at);
"""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def record(self, result: RunResult) -> int:
        with self._db:
            cursor = self._db.execute(
                """INSERT INTO runs (task, task_version, model, input, output, rejected_output, valid, errors,
                   confidence, decision, reason, attempts, latency_ms, prompt_tokens, cached_tokens, completion_tokens)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    result.task,
                    result.task_version,
                    result.model,
                    result.input,
                    None if result.output is None else json.dumps(result.output),
                    result.rejected_output,
                    int(result.valid),
                    json.dumps(result.errors),
                    result.confidence,
                    result.decision,
                    result.reason,
                    result.attempts,
                    result.latency_ms,
                    result.tokens.prompt,
                    result.tokens.cached,
                    result.tokens.completion,
                ),
            )
        return int(cursor.lastrowid or 0)

    def runs(self, task: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, args = ("WHERE task = ?", [task]) if task else ("", [])
        rows = self._db.execute(f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT ?", [*args, limit])
        return [dict(row) for row in rows]

    def close(self) -> None:
        self._db.close()
