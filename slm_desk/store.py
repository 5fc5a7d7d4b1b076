"""The local SQLite store: run history, the review queue, eval sets, calibration profiles, escalation calls.

Every outcome is written in one transaction (run row, queue item, eval-set row), so an interrupt never leaves
half of it. The schema is versioned with `PRAGMA user_version` and migrated forward on open.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from slm_desk.results import RunResult

MIGRATIONS = [
    # 1: the first release created this table without setting user_version, hence IF NOT EXISTS
    """
    CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        task TEXT NOT NULL, task_version INTEGER NOT NULL, model TEXT NOT NULL, input TEXT NOT NULL,
        output TEXT, rejected_output TEXT, valid INTEGER NOT NULL, errors TEXT NOT NULL, confidence REAL,
        decision TEXT NOT NULL, reason TEXT NOT NULL, attempts INTEGER NOT NULL, latency_ms INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS runs_task ON runs (task, created_at);
    """,
    """
    ALTER TABLE runs ADD COLUMN raw_confidence REAL;
    ALTER TABLE runs ADD COLUMN field_confidence TEXT;
    ALTER TABLE runs ADD COLUMN escalated INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN escalation TEXT;
    CREATE TABLE review (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs (id),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        task TEXT NOT NULL, task_version INTEGER NOT NULL, input TEXT NOT NULL,
        candidate TEXT, reason TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'corrected', 'rejected')),
        final_output TEXT, resolved_at TEXT
    );
    CREATE INDEX review_status ON review (status, id);
    CREATE TABLE evalset (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        task TEXT NOT NULL, task_version INTEGER NOT NULL, input TEXT NOT NULL, output TEXT,
        source TEXT NOT NULL, label TEXT NOT NULL CHECK (label IN ('gold', 'teacher', 'unlabelled', 'rejected')),
        run_id INTEGER REFERENCES runs (id)
    );
    CREATE INDEX evalset_task ON evalset (task, label);
    CREATE TABLE calibrations (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        task TEXT NOT NULL, task_version INTEGER NOT NULL, model TEXT NOT NULL, profile TEXT NOT NULL
    );
    CREATE TABLE escalation_calls (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        endpoint TEXT NOT NULL, ok INTEGER NOT NULL
    );
    """,
    """
    ALTER TABLE review ADD COLUMN source TEXT NOT NULL DEFAULT 'run';
    """,
]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        # the TUI records from worker threads, one at a time; Python's sqlite3 here is built serialized
        self.db = sqlite3.connect(path, timeout=10, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    def record(self, result: RunResult, source: str = "run") -> int:
        """Store one outcome: the run; a review item when it needs a person; eval-set rows for what we learn."""
        with self.db:
            run_id = self._insert_run(result)
            if result.decision == "review":
                candidate = result.output if result.output is not None else result.rejected_output
                self.db.execute(
                    "INSERT INTO review (run_id, task, task_version, input, candidate, reason, source)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, result.task, result.task_version, result.input, _json(candidate), result.reason, source),
                )
            if not result.valid:
                self.add_example(
                    result.task, result.task_version, result.input, None, "validation_failure", "unlabelled", run_id
                )
            elif result.escalated:
                self.add_example(
                    result.task, result.task_version, result.input, result.output, "escalation", "teacher", run_id
                )
        return run_id

    def _insert_run(self, r: RunResult) -> int:
        cursor = self.db.execute(
            """INSERT INTO runs (task, task_version, model, input, output, rejected_output, valid, errors, confidence,
               raw_confidence, field_confidence, decision, reason, attempts, latency_ms, prompt_tokens, cached_tokens,
               completion_tokens, escalated, escalation)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                r.task,
                r.task_version,
                r.model,
                r.input,
                _json(r.output),
                r.rejected_output,
                int(r.valid),
                _json(r.errors),
                r.confidence,
                r.raw_confidence,
                _json(r.field_confidence),
                r.decision,
                r.reason,
                r.attempts,
                r.latency_ms,
                r.tokens.prompt,
                r.tokens.cached,
                r.tokens.completion,
                int(r.escalated),
                _json(r.escalation),
            ),
        )
        return int(cursor.lastrowid or 0)

    def add_example(
        self, task: str, version: int, text: str, output: Any, source: str, label: str, run_id: int | None = None
    ) -> None:
        self.db.execute(
            "INSERT INTO evalset (task, task_version, input, output, source, label, run_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (task, version, text, _json(output), source, label, run_id),
        )

    def runs(self, task: str | None = None, limit: int = 100, search: str | None = None) -> list[dict[str, Any]]:
        clauses, args = [], []
        if task:
            clauses.append("task = ?")
            args.append(task)
        if search:
            clauses.append("(input LIKE ? OR output LIKE ? OR reason LIKE ?)")
            args += [f"%{search}%"] * 3
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.db.execute(f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT ?", [*args, limit])
        return [dict(row) for row in rows]

    def run(self, run_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return dict(row) if row else None

    def escalations_today(self) -> int:
        return int(
            self.db.execute(
                "SELECT count(*) FROM escalation_calls WHERE date(created_at, 'localtime') = date('now', 'localtime')"
            ).fetchone()[0]
        )

    def log_escalation(self, endpoint: str, ok: bool) -> None:
        with self.db:
            self.db.execute("INSERT INTO escalation_calls (endpoint, ok) VALUES (?, ?)", (endpoint, int(ok)))

    def close(self) -> None:
        self.db.close()
