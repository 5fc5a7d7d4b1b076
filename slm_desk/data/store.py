"""The local SQLite store: run history, the review queue, eval sets, calibration profiles, escalation calls.

Every outcome is written in one transaction (run row, queue item, eval-set row), so an interrupt never leaves
half of it. The schema is versioned with `PRAGMA user_version` and migrated forward on open.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slm_desk.contract.results import RunResult
from slm_desk.data.learning_tables import LearningTables
from slm_desk.errors import ConfigError

if TYPE_CHECKING:
    from slm_desk.contract.calibration import Profile  # numpy: read only where a profile is, not on every start

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
    """
    CREATE TABLE pool (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        task TEXT NOT NULL, task_version INTEGER NOT NULL, input TEXT NOT NULL, output TEXT NOT NULL,
        source TEXT NOT NULL,
        UNIQUE (task, task_version, input)
    );
    CREATE TABLE heads (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        task TEXT NOT NULL, task_version INTEGER NOT NULL, report TEXT NOT NULL, model BLOB NOT NULL
    );
    """,
    # sentence embeddings of pool and review inputs, so that retraining never embeds an input twice
    """
    CREATE TABLE embeddings (
        model TEXT NOT NULL, digest BLOB NOT NULL, vector BLOB NOT NULL,
        PRIMARY KEY (model, digest)
    ) WITHOUT ROWID;
    """,
]


def _unusable(path: Path, exc: BaseException) -> ConfigError:
    """A history database slm-desk cannot open or write, as a message that names the fix."""
    if path.is_dir():
        problem = "it is a folder, not a file"
    elif path.exists() and not os.access(path, os.R_OK | os.W_OK):
        problem = "you cannot read and write it (its permissions, or an immutable or read-only file)"
    elif "readonly" in str(exc) or "read-only" in str(exc):
        problem = "it is read-only (its folder, the file system, or a journal file beside it)"
    elif isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        problem = "it is not a SQLite database (damaged, or another file in its place)"
    else:
        problem = str(exc)
    return ConfigError(
        f"cannot use the history database {path}: {problem}",
        "it keeps the history, the review queue, example pools and trained heads: make it a file you can read and "
        f"write (chmod u+rw), or move it aside to start a new one (mv {path} {path}.bad)",
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


class _Connection(sqlite3.Connection):
    """A connection whose failed writes name the fix: a database that opened but cannot be written (immutable, on
    a read-only file system, even for root) is the person's to fix, never an internal error."""

    database: Path

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            if _unwritable(exc):
                raise _unusable(self.database, exc) from exc
            raise

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.OperationalError as exc:
            if _unwritable(exc):
                raise _unusable(self.database, exc) from exc
            raise


def _unwritable(exc: sqlite3.OperationalError) -> bool:
    return any(word in str(exc) for word in ("readonly", "read-only", "disk I/O error", "unable to open"))


class Store(LearningTables):
    """Runs, the review queue, eval sets, calibration profiles and escalation calls; the pool and the heads
    come from `LearningTables`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if not path.exists():  # every logged input is in here: readable by its owner only
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            # the TUI records from worker threads, one at a time; Python's sqlite3 here is built serialized
            if path.exists() and not os.access(path, os.R_OK | os.W_OK):  # root too: an immutable file
                raise PermissionError(f"cannot write {path}")
            self.db = sqlite3.connect(
                path, timeout=30, check_same_thread=False, isolation_level=None, factory=_Connection
            )
            self.db.database = path
            self.db.row_factory = sqlite3.Row
            self._wal()
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise _unusable(path, exc) from exc
        self.db.isolation_level = "DEFERRED"  # back to Python's default: `with self.db` is one transaction
        # one connection, several threads (a --concurrency batch records while workers log escalations):
        # a transaction must not take in another thread's statements
        self.writing = threading.RLock()

    def _wal(self, wait_s: float = 30.0) -> None:
        """Turn on write-ahead logging. On a brand-new file this takes a lock that SQLite does not wait for (the
        busy timeout covers writes, not this), so several processes creating one store retry here themselves."""
        deadline = time.monotonic() + wait_s
        pause = 0.01
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.25)

    def _migrate(self) -> None:
        """Bring the schema forward under one write lock: two processes opening a new store never race."""
        if self.db.execute("PRAGMA user_version").fetchone()[0] >= len(MIGRATIONS):
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]  # again: another process may have won
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")
            self.db.execute("COMMIT")
        except BaseException:
            # a Ctrl-C can land before BEGIN took effect: roll back only what began, and let the interrupt through
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def record(self, result: RunResult, source: str = "run") -> int:
        """Store one outcome: the run; a review item when it needs a person; eval-set rows for what we learn."""
        with self.writing, self.db:
            return self._record(result, source)

    def record_many(self, results: list[RunResult], source: str = "run") -> list[int]:
        """Many outcomes in one transaction (a batch): all of them are stored, or none."""
        with self.writing, self.db:
            return [self._record(result, source) for result in results]

    def forget_runs(self, run_ids: list[int]) -> None:
        """Take back runs that were recorded but never delivered (the reader closed the pipe first)."""
        if not run_ids:
            return
        marks = ",".join("?" * len(run_ids))
        with self.writing, self.db:
            for table, column in (("review", "run_id"), ("evalset", "run_id"), ("runs", "id")):
                self.db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", run_ids)

    def _record(self, result: RunResult, source: str) -> int:
        run_id = self._insert_run(result)
        if result.decision == "review":
            candidate = result.output if result.output is not None else result.rejected_output
            self.db.execute(
                "INSERT INTO review (run_id, task, task_version, input, candidate, reason, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, result.task, result.task_version, result.input, _json(candidate), result.reason, source),
            )
        if not result.valid:
            self._add_example(
                result.task, result.task_version, result.input, None, "validation_failure", "unlabelled", run_id
            )
        elif result.escalated and result.answered_by == "escalation":  # only the larger model's valid answer
            self._add_example(
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
                round(r.ms),
                r.tokens.prompt,
                r.tokens.cached,
                r.tokens.completion,
                int(r.escalated),
                _json(r.escalation),
            ),
        )
        return int(cursor.lastrowid or 0)

    def _add_example(
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

    def count_runs(self, search: str | None = None) -> int:
        """How many runs the history holds (matching `search`): the true total beside a capped list."""
        where, args = (
            ("WHERE input LIKE ? OR output LIKE ? OR reason LIKE ?", [f"%{search}%"] * 3) if search else ("", [])
        )
        return int(self.db.execute(f"SELECT count(*) FROM runs {where}", args).fetchone()[0])

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
        with self.writing, self.db:
            self.db.execute("INSERT INTO escalation_calls (endpoint, ok) VALUES (?, ?)", (endpoint, int(ok)))

    # -- calibration profiles ---------------------------------------------------------------------------------------

    def save_calibration(self, profile: Profile) -> None:
        with self.writing, self.db:
            self.db.execute(
                "INSERT INTO calibrations (task, task_version, model, profile) VALUES (?, ?, ?, ?)",
                (profile.task, profile.task_version, profile.model, profile.model_dump_json()),
            )

    def calibration_json(self, task: str, version: int, model: str) -> str | None:
        row = self.db.execute(
            "SELECT profile FROM calibrations WHERE task = ? AND task_version = ? AND model = ?"
            " ORDER BY id DESC LIMIT 1",
            (task, version, model),
        ).fetchone()
        return str(row[0]) if row else None

    def calibration(self, task: str, version: int, model: str) -> Profile | None:
        """The newest calibration Profile of a task version on a model, or None."""
        from slm_desk.contract.calibration import Profile

        text = self.calibration_json(task, version, model)
        return Profile.model_validate_json(text) if text else None

    # -- the review queue ---------------------------------------------------------------------------------------------

    def pending_reviews(self, task: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Pending items, oldest first, each with the calibrated confidence of the run that queued it."""
        where, args = ("AND review.task = ?", [task]) if task else ("", [])
        rows = self.db.execute(
            "SELECT review.*, runs.confidence AS confidence FROM review LEFT JOIN runs ON runs.id = review.run_id"
            f" WHERE review.status = 'pending' {where} ORDER BY review.id LIMIT ?",
            [*args, limit],
        )
        return [dict(row) for row in rows]

    def pending_count(self, task: str | None = None) -> int:
        """How many items wait for a person (every one, not the first page)."""
        where, args = ("AND task = ?", [task]) if task else ("", [])
        return int(self.db.execute(f"SELECT count(*) FROM review WHERE status = 'pending' {where}", args).fetchone()[0])

    def pool_output(self, task: str, version: int, text: str) -> Any:
        """The pool's answer for this input, or None when the pool does not have it."""
        row = self.db.execute(
            "SELECT output FROM pool WHERE task = ? AND task_version = ? AND input = ?", (task, version, text.rstrip())
        ).fetchone()
        return json.loads(row[0]) if row else None

    def reopen_review(self, item: dict[str, Any], pool_before: Any) -> None:
        """Undo a verdict: the item pending again, its label out of the eval set, the pool as it was before."""
        with self.writing, self.db:
            self.db.execute(
                "UPDATE review SET status = 'pending', final_output = NULL, resolved_at = NULL WHERE id = ?",
                (item["id"],),
            )
            self.db.execute("DELETE FROM evalset WHERE run_id = ? AND source LIKE 'review_%'", (item["run_id"],))
            invalid = self.db.execute("SELECT valid = 0 FROM runs WHERE id = ?", (item["run_id"],)).fetchone()
            if invalid and invalid[0]:  # the placeholder an invalid answer left, as `record` wrote it
                self._add_example(
                    item["task"],
                    item["task_version"],
                    item["input"],
                    None,
                    "validation_failure",
                    "unlabelled",
                    item["run_id"],
                )
            key = (item["task"], item["task_version"], item["input"].rstrip())
            if pool_before is None:
                self.db.execute("DELETE FROM pool WHERE task = ? AND task_version = ? AND input = ?", key)
            else:
                self.db.execute(
                    "UPDATE pool SET output = ? WHERE task = ? AND task_version = ? AND input = ?",
                    (json.dumps(pool_before, ensure_ascii=False), *key),
                )

    def review_item(self, item_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM review WHERE id = ?", (item_id,)).fetchone()
        return dict(row) if row else None

    def resolve_review(self, item: dict[str, Any], status: str, output: Any, label: str) -> None:
        """A person's verdict: the queue item closed, and the eval-set placeholder replaced by their label."""
        with self.writing, self.db:
            self.db.execute(
                "UPDATE review SET status = ?, final_output = ?, resolved_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                " WHERE id = ?",
                (status, _json(output), item["id"]),
            )
            self.db.execute("DELETE FROM evalset WHERE run_id = ? AND label = 'unlabelled'", (item["run_id"],))
            self._add_example(
                item["task"], item["task_version"], item["input"], output, f"review_{status}", label, item["run_id"]
            )

    def reviewed(self, task: str, source: str | None = None) -> list[dict[str, Any]]:
        """Accepted and corrected review items of a task: {"input", "output", "status", "task_version"}."""
        where, args = ("AND source = ?", [source]) if source else ("", [])
        rows = self.db.execute(
            "SELECT input, final_output, status, task_version FROM review WHERE task = ? "
            f"AND status IN ('accepted', 'corrected') {where} ORDER BY id",
            [task, *args],
        )
        return [
            {
                "input": r["input"],
                "output": json.loads(r["final_output"]),
                "status": r["status"],
                "task_version": r["task_version"],
            }
            for r in rows
        ]

    # -- the eval set ----------------------------------------------------------------------------------------------

    def labelled(self, task: str, labels: tuple[str, ...]) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT input, output, label, source, id FROM evalset"
            f" WHERE task = ? AND label IN ({','.join('?' * len(labels))}) ORDER BY id",
            (task, *labels),
        )
        return [dict(row) for row in rows]

    def label_counts(self, task: str) -> dict[str, int]:
        rows = self.db.execute("SELECT label, count(*) FROM evalset WHERE task = ? GROUP BY label", (task,))
        return {row[0]: row[1] for row in rows}

    def close(self) -> None:
        self.db.close()
