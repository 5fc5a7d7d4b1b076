"""Review queue: answers the policy would not accept, in the order a label teaches most (or as they came).
Accept, correct (validated as you type, or one key per label), reject; undo the last verdict."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from slm_desk import apart
from slm_desk.contract.tasks import Task, load_task
from slm_desk.data import review
from slm_desk.errors import SlmDeskError
from slm_desk.tui.base import DeskScreen
from slm_desk.tui.messages import HeadRetrained
from slm_desk.tui.modals import CorrectAnswer
from slm_desk.tui.widgets import answer_line

REPEAT_S = 0.5  # the same label key again within this is a double press, not a second verdict
QUEUE_SHOWN = 100  # items listed at once (the header says the true total)


class ReviewScreen(DeskScreen):
    SUB_TITLE = "Review"
    MODE = "review"
    BINDINGS = [
        Binding("a", "accept", "Accept"),
        Binding("c", "correct", "Correct"),
        Binding("x", "reject", "Reject"),
        Binding("u", "undo", "Undo"),
        Binding("o", "order", "Order"),
        Binding("ctrl+l", "reload", "Reload", show=False),  # the queue reloads by itself; the key stays
        *[Binding(str(n), f"label({n})", "Label", show=n == 1, key_display="1-9") for n in range(1, 10)],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.teaching_order = True
        self.done: list[review.Done] = []  # verdicts given here, newest last: `u` undoes them one by one
        self.retraining: set[str] = set()  # tasks whose head is retraining in the background
        self.last_label: tuple[int, float] = (0, 0.0)  # the last label key and when it was pressed
        self.items: dict[int, dict[str, Any]] = {}
        self.ordered = False  # the table shows the teaching order (not yet: the worker is ordering it)
        self.resolved: set[int] = set()  # verdicts given since the queue was read: the worker's order leaves them out

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield DataTable(id="queue", cursor_type="row", zebra_stripes=True)
        yield Static("", id="detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#queue", DataTable).add_columns("id", "task", "input", "reason")  # filled on resume

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        """The queue as it came, at once (a cheap read), then in teaching order when the worker that orders it is
        done: ordering asks the task's head about every item, which took seconds on the event loop."""
        queue = review.pending(self.desk.store, limit=QUEUE_SHOWN)
        self.resolved.clear()
        self._show(queue, ordered=False)
        if self.teaching_order and queue:
            self.order_queue()

    @work(thread=True, exclusive=True, exit_on_error=False, group="review-order", name="order")
    def order_queue(self) -> None:
        queue = self.desk.review_queue(teaching_order=True)
        self.app.call_from_thread(self._ordered, queue)

    def _ordered(self, queue: list[dict[str, Any]]) -> None:
        if not self.teaching_order:  # `o` switched to arrival order meanwhile
            return
        self._show([item for item in queue if item["id"] not in self.resolved], ordered=True)

    def _show(self, queue: list[dict[str, Any]], ordered: bool) -> None:
        """Fill the table, the cursor staying on the item it was on (or its place when that item is gone)."""
        table = self.query_one("#queue", DataTable)
        row, current = table.cursor_row, self._current_id()
        if not self.ordered and row == 0:  # the provisional first row: the ordered queue starts at its own top
            current = None
        table.clear()
        self.items = {item["id"]: item for item in queue}
        self.ordered = ordered
        for item in queue:
            cells = [str(item["id"]), item["task"], item["input"].replace("\n", " ")[:40], _why_first(item)]
            table.add_row(*map(Text, cells), key=str(item["id"]))  # user and model text: never markup
        if table.row_count:
            ids = list(self.items)
            table.move_cursor(row=ids.index(current) if current in self.items else min(row, table.row_count - 1))
        self._header()

    def _header(self) -> None:
        total = self.desk.store.pending_count()
        count = f"showing {len(self.items)} of {total} pending" if total > len(self.items) else f"{total} pending"
        if not self.teaching_order:
            order = "as they came (o: teaching order)"
        elif self.ordered:
            order = "teaching order (o: as they came)"
        else:
            order = "as they came until the teaching order is ready"
        self.query_one("#detail", Static).update(
            f"{count}, {order}   a accept   c correct   1-9 label   x reject   u undo"
            if self.items
            else "nothing to review" + ("   u undoes the last verdict" if self.done else "")
        )

    def _current_id(self) -> int | None:
        table = self.query_one("#queue", DataTable)
        if not table.row_count:
            return None
        return int(str(table.get_row_at(min(table.cursor_row, table.row_count - 1))[0]))

    def _resolved(self, item_id: int) -> None:
        """A verdict was given: its row leaves the table; the rest keep their order and the cursor its place."""
        self.resolved.add(item_id)
        self.items.pop(item_id, None)
        table = self.query_one("#queue", DataTable)
        row = table.cursor_row
        with contextlib.suppress(Exception):  # RowDoesNotExist: a reload already dropped it
            table.remove_row(str(item_id))
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
        self._header()

    def action_order(self) -> None:
        self.teaching_order = not self.teaching_order
        self.action_reload()

    def worker_stopped(self, worker: Any, reason: str) -> None:
        if worker.name == "order":  # the queue stays as it came; say why it is not in teaching order
            self.ordered = False
            self._header()

    def _current(self) -> dict | None:
        table = self.query_one("#queue", DataTable)
        if not self.items or not table.row_count:
            self.notify("the queue is empty")
            return None
        return self.items.get(int(str(table.get_row_at(min(table.cursor_row, table.row_count - 1))[0])))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # a highlight is posted before it is handled: two keys at machine speed reload the table in between, and
        # the row it names may be gone (resolved); the highlight of the row now under the cursor follows it
        item = self.items.get(int(str(event.row_key.value))) if event.row_key is not None else None
        if item is None:
            return
        candidate = json.loads(item["candidate"]) if item["candidate"] else None
        shown = candidate if isinstance(candidate, str) else json.dumps(candidate, ensure_ascii=False)
        parts: list[str | tuple[str, str]] = [("input  ", "bold"), item["input"], "\n", ("answer ", "bold"), str(shown)]
        if item.get("head_answer") is not None:
            parts += ["\n", ("head   ", "bold"), json.dumps(item["head_answer"], ensure_ascii=False)]
        parts += ["\n", ("why    ", "bold"), item["reason"]]
        keys = _label_keys(item["task"])
        if keys:
            parts += ["\n", ("keys   ", "bold"), "  ".join(f"{n} {label}" for n, label in enumerate(keys[1], 1))]
        self.query_one("#detail", Static).update(Text.assemble(*parts))

    def _do(self, action: str, output_text: str | None = None) -> None:
        item = self._current()
        if item is None:
            return
        try:
            done = review.give(self.desk.store, item["id"], action, output_text)
        except SlmDeskError as exc:
            if "was already" in exc.message:  # resolved elsewhere (the CLI, another app): the list was stale
                self.notify("the queue is reloaded", title=exc.message, severity="warning")
                self.action_reload()
                return
            hint = "press c to give the right answer" if action == "accept" else exc.hint  # the app's keys, not CLI
            self.notify(hint, title=exc.message, severity="error")
            return
        self.done.append(done)
        verb = {"accept": "accepted", "correct": "corrected", "reject": "rejected"}[action]
        said = f"item {item['id']}: {verb}"
        if done.output is not None:
            said += f" as {answer_line(done.output)}"
        if done.replaced:
            before = json.dumps(done.pool_before, ensure_ascii=False)
            said += f"; it replaces the earlier label {before} of this input in the pool"
        self.notify(said + "   (u undoes it)")
        self._resolved(item["id"])
        if done.output is not None:
            self._maybe_retrain(item["task"])

    def _maybe_retrain(self, task_name: str) -> None:
        """Enough new labels since the head was trained ([teach] retrain_after): retrain it in the background."""
        try:
            task = load_task(task_name)
        except SlmDeskError:
            return
        new = self.desk.due_for_retraining(task)
        if new is None or task.name in self.retraining:
            return
        self.retraining.add(task.name)
        report = self.desk.head_report(task)
        before = report.heldout_accuracy if report is not None else None
        self.notify(f"{new} new labels for {task.name}: retraining its head in the background")
        self.retrain(task, before)

    @work(thread=True, exit_on_error=False, group="teach", name="retrain")
    def retrain(self, task: Task, before: float | None) -> None:
        try:  # no model measured here: what was measured stays; in a process of its own, so labelling goes on
            outcome = apart.train(self.desk.config, task, keep_policy=True)
        finally:
            self.app.call_from_thread(lambda: self.retraining.discard(task.name))
        self.app.post_message(HeadRetrained(task.name))  # thread-safe: the open Teach screen shows the new head
        was = f" (was {before:.1%})" if before is not None else ""
        self.app.call_from_thread(
            self.notify,
            f"{task.name}'s head retrained on {outcome.n_train} items: "
            f"held-out accuracy {outcome.heldout_accuracy:.1%}{was}",
        )

    def action_label(self, number: int) -> None:
        now = time.monotonic()
        last, self.last_label = self.last_label, (number, now)
        if last[0] == number and now - last[1] < REPEAT_S:  # a key pressed twice by mistake labels one item, not two
            self.notify(f"{number} was pressed twice: the second press is ignored (read the next item first)")
            return
        item = self._current()
        if item is None:
            return
        keys = _label_keys(item["task"])
        if keys is None:
            self.notify(f"{item['task']} has no single label field: press c to correct it", severity="warning")
            return
        field, labels = keys
        if number > len(labels):
            self.notify(f"{item['task']} has {len(labels)} labels: press 1-{len(labels)}", severity="warning")
            return
        candidate = json.loads(item["candidate"]) if item["candidate"] else None
        output = {**(candidate if isinstance(candidate, dict) else {}), field: labels[number - 1]}
        if output == candidate:  # the label the answer already has: that is agreeing with it, not correcting it
            self._do("accept")
        else:
            self._do("correct", json.dumps(output))

    def action_undo(self) -> None:
        if not self.done:
            self.notify("nothing to undo")
            return
        done = self.done.pop()
        review.undo(self.desk.store, done)
        self.notify(f"item {done.item['id']}: {done.action} undone; it is pending again")
        self.action_reload()

    def action_accept(self) -> None:
        self._do("accept")

    def action_reject(self) -> None:
        self._do("reject")

    def action_correct(self) -> None:
        item = self._current()
        if item is None:
            return

        def saved(output: dict | None) -> None:
            if output is not None:
                self._do("correct", json.dumps(output))

        self.app.push_screen(CorrectAnswer(item), saved)


def _label_keys(task_name: str) -> tuple[str, list[str]] | None:
    """A task with exactly one label field: that field and its labels, in the order keys 1-9 choose them."""
    try:
        task = load_task(task_name)
    except SlmDeskError:
        return None
    if len(task.labels) != 1:
        return None
    field, risks = next(iter(task.labels.items()))
    return field, list(risks)[:9]


def _why_first(item: dict[str, Any]) -> str:
    """Why the item is where it is in teaching order, and the reason it was queued."""
    marks = []
    if item.get("disagrees"):
        marks.append("head disagrees")
    if item.get("high_risk"):
        marks.append("high-risk")
    if item.get("confidence") is not None:
        marks.append(f"conf {item['confidence']:.2f}")
    return "; ".join([*marks, item["reason"]])[:70]
