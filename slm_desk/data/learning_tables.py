"""The store's tables a task learns from: the example pool and the trained heads.

`Store` inherits these, so every caller keeps one object and every write takes the store's one lock.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

from slm_desk.errors import TaskError

if TYPE_CHECKING:
    import numpy as np  # read only where embeddings are, not on every start


class LearningTables:
    db: sqlite3.Connection  # set by Store.__init__
    writing: threading.RLock

    # -- the example pool (what a task learns from; never what judges it) ----------------------------------------

    def add_to_pool(self, task: str, version: int, items: list[tuple[str, Any, str]]) -> int:
        """Add (input, output, source) items; an input already in the pool keeps its newest output. Returns added.
        An input is the same input whatever whitespace ends it (`echo` adds a newline, a file line may not)."""
        with self.writing, self.db:
            before = self.db.total_changes
            self.db.executemany(
                "INSERT INTO pool (task, task_version, input, output, source) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (task, task_version, input) DO UPDATE SET output = excluded.output,"
                " source = excluded.source",
                [
                    (task, version, text.rstrip(), json.dumps(output, ensure_ascii=False), src)
                    for text, output, src in items
                ],
            )
            return self.db.total_changes - before

    def pool(self, task: str, version: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT id, input, output, source, created_at FROM pool WHERE task = ? AND task_version = ? ORDER BY id",
            (task, version),
        )
        return [{**dict(r), "output": json.loads(r["output"])} for r in rows]

    def pool_and_signature(self, task: str, version: int) -> tuple[list[dict[str, Any]], tuple[int, ...], str]:
        """The pool, its signature and the store's clock, read in one transaction: a label added after is in
        neither, so a head fitted on these items is stale as soon as the pool has more, and the label counts
        toward the next retrain (it was resolved after the returned time)."""
        with self.writing:
            self.db.execute("BEGIN")
            try:
                now = self.db.execute("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')").fetchone()[0]
                return self.pool(task, version), self.pool_signature(task, version), str(now)
            finally:
                self.db.execute("COMMIT")

    def pool_signature(self, task: str, version: int) -> tuple[int, ...]:
        """Changes whenever the pool of a task version does (count, newest id, total output size)."""
        row = self.db.execute(
            "SELECT count(*), coalesce(max(id), 0), coalesce(sum(length(output)), 0) FROM pool"
            " WHERE task = ? AND task_version = ?",
            (task, version),
        ).fetchone()
        return (int(row[0]), int(row[1]), int(row[2]))

    def pool_sources(self, task: str, version: int) -> dict[str, int]:
        """How many pool items came from where: a file, review, distillation."""
        rows = self.db.execute(
            "SELECT source, count(*) FROM pool WHERE task = ? AND task_version = ? GROUP BY source ORDER BY 2 DESC",
            (task, version),
        )
        return {row[0]: row[1] for row in rows}

    def pool_inputs(self, task: str) -> set[str]:
        """Every input any version of the task learned from (eval and calibrate drop these)."""
        return {r[0] for r in self.db.execute("SELECT input FROM pool WHERE task = ?", (task,))}

    def remove_from_pool(self, task: str, version: int, ids: list[int] | None = None) -> int:
        with self.writing, self.db:
            if ids is None:
                cursor = self.db.execute("DELETE FROM pool WHERE task = ? AND task_version = ?", (task, version))
            else:
                cursor = self.db.executemany(
                    "DELETE FROM pool WHERE task = ? AND task_version = ? AND id = ?",
                    [(task, version, i) for i in ids],
                )
            return cursor.rowcount

    def remove_pool_inputs(self, task: str, inputs: list[str]) -> int:
        """Take these inputs out of every version's pool (they are now held out to judge the task)."""
        with self.writing, self.db:
            cursor = self.db.executemany(
                "DELETE FROM pool WHERE task = ? AND input = ?", [(task, i.rstrip()) for i in inputs]
            )
            return cursor.rowcount

    # -- sentence embeddings of what a task learns from (never of `run --no-log` inputs) ---------------------------

    def vectors(self, model: str, texts: list[str]) -> list[np.ndarray | None]:
        """The stored embedding of each text under `model` (its id and file), or None where there is none."""
        import numpy as np

        digests = [_digest(text) for text in texts]
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(digests), 500):  # SQLite's limit on bound parameters
            chunk = digests[start : start + 500]
            rows = self.db.execute(
                f"SELECT digest, vector FROM embeddings WHERE model = ? AND digest IN ({','.join('?' * len(chunk))})",
                [model, *chunk],
            )
            found.update((bytes(d), np.frombuffer(v, dtype=np.float32)) for d, v in rows)
        return [found.get(d) for d in digests]

    def keep_vectors(self, model: str, texts: list[str], vectors: np.ndarray) -> None:
        import numpy as np

        with self.writing, self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO embeddings (model, digest, vector) VALUES (?, ?, ?)",
                [
                    (model, _digest(t), np.asarray(v, dtype=np.float32).tobytes())
                    for t, v in zip(texts, vectors, strict=True)
                ],
            )

    def save_head(self, task: str, version: int, report_json: str, saved: dict[str, Any]) -> None:
        """A trained head: its report, and `saved` (the model and what it was measured with) pickled."""
        blob = pickle.dumps(saved)
        with self.writing, self.db:
            self.db.execute(
                "INSERT INTO heads (task, task_version, report, model) VALUES (?, ?, ?, ?)",
                (task, version, report_json, blob),
            )

    def head_trained_at(self, task: str, version: int) -> str | None:
        """When the newest head of a task version was trained (without reading the model), or None."""
        row = self.db.execute(
            "SELECT max(created_at) FROM heads WHERE task = ? AND task_version = ?", (task, version)
        ).fetchone()
        return row[0] if row else None

    def labels_since(self, task: str, version: int, since: str) -> int:
        """Answers people accepted or corrected in review after `since` (a stored timestamp)."""
        row = self.db.execute(
            "SELECT count(*) FROM review WHERE task = ? AND task_version = ? AND status IN ('accepted', 'corrected')"
            " AND resolved_at > ?",
            (task, version, since),
        ).fetchone()
        return int(row[0])

    def head_report(self, task: str, version: int) -> str | None:
        """The newest trained head's report JSON, without unpickling the model (cheap: no sklearn)."""
        row = self.db.execute(
            "SELECT report FROM heads WHERE task = ? AND task_version = ? ORDER BY id DESC LIMIT 1", (task, version)
        ).fetchone()
        return row[0] if row else None

    def head(self, task: str, version: int) -> tuple[str, Any, str] | None:
        """(report JSON, what `save_head` was given, created_at) of the newest trained head, or None. The pickle is
        our own, written by `train` into the user's 0600 store, never downloaded."""
        row = self.db.execute(
            "SELECT report, model, created_at FROM heads WHERE task = ? AND task_version = ? ORDER BY id DESC LIMIT 1",
            (task, version),
        ).fetchone()
        if not row:
            return None
        try:
            return row[0], pickle.loads(bytes(row[1])), row[2]  # noqa: S301
        except (AttributeError, ModuleNotFoundError, ImportError, pickle.UnpicklingError, EOFError) as exc:
            raise TaskError(  # a head saved by another version of slm-desk (a class it pickled is gone or moved)
                f"the trained head of {task} v{version} cannot be read by this version of slm-desk ({exc})",
                f"retrain it: slm-desk train {task}",
            ) from exc


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
