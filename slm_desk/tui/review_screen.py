"""Review queue: answers the policy would not accept. Accept, correct (validated as you type) or reject."""

from __future__ import annotations

import json

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from slm_desk.data import review
from slm_desk.errors import SlmDeskError
from slm_desk.tui.base import DeskScreen
from slm_desk.tui.modals import CorrectAnswer


class ReviewScreen(DeskScreen):
    SUB_TITLE = "Review"
    MODE = "review"
    BINDINGS = [
        Binding("a", "accept", "Accept"),
        Binding("c", "correct", "Correct"),
        Binding("x", "reject", "Reject"),
        Binding("ctrl+l", "reload", "Reload"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield DataTable(id="queue", cursor_type="row", zebra_stripes=True)
        yield Static("", id="detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#queue", DataTable).add_columns("id", "task", "input", "reason")
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        table = self.query_one("#queue", DataTable)
        table.clear()
        self.items = {item["id"]: item for item in review.pending(self.desk.store)}
        for item in self.items.values():
            cells = [str(item["id"]), item["task"], item["input"].replace("\n", " ")[:40], item["reason"][:70]]
            table.add_row(*map(Text, cells), key=str(item["id"]))  # user and model text: never markup
        self.query_one("#detail", Static).update(
            f"{len(self.items)} pending   a accept the shown answer   c correct it   x reject the input"
            if self.items
            else "nothing to review"
        )

    def _current(self) -> dict | None:
        table = self.query_one("#queue", DataTable)
        if not self.items:
            self.notify("the queue is empty")
            return None
        return self.items[int(str(table.get_row_at(table.cursor_row)[0]))]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is None or not self.items:
            return
        item = self.items[int(str(event.row_key.value))]
        candidate = json.loads(item["candidate"]) if item["candidate"] else None
        shown = candidate if isinstance(candidate, str) else json.dumps(candidate, ensure_ascii=False)
        self.query_one("#detail", Static).update(
            Text.assemble(
                ("input  ", "bold"),
                item["input"],
                "\n",
                ("answer ", "bold"),
                str(shown),
                "\n",
                ("why    ", "bold"),
                item["reason"],
            )
        )

    def _do(self, action: str, *args: object) -> None:
        item = self._current()
        if item is None:
            return
        try:
            getattr(review, action)(self.desk.store, item["id"], *args)
        except SlmDeskError as exc:
            hint = "press c to give the right answer" if action == "accept" else exc.hint  # the app's keys, not CLI
            self.notify(hint, title=exc.message, severity="error")
            return
        self.notify(f"item {item['id']}: {action}ed")
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
