"""History: every recorded run, searchable; open one to see it in full or run it again."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, Static

from slm_desk.tui.base import DeskScreen
from slm_desk.tui.messages import RerunRequested
from slm_desk.tui.modals import RunDetail


class HistoryScreen(DeskScreen):
    SUB_TITLE = "History"
    MODE = "history"
    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("ctrl+f", "search", "Search"),
        Binding("ctrl+l", "reload", "Reload"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield Input(placeholder="search input, output or reason", id="search")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="count")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#runs", DataTable)
        # the input before the model: at 80 columns the columns to its left left it 11 characters
        table.add_columns("id", "time", "task", "decision", "valid", "input", "model")
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    @on(Input.Changed, "#search")
    def action_reload(self) -> None:
        search = self.query_one("#search", Input).value.strip() or None
        runs = self.desk.store.runs(limit=500, search=search)
        table = self.query_one("#runs", DataTable)
        table.clear()
        for run in runs:
            cells = [
                str(run["id"]),
                run["created_at"][5:16].replace("T", " "),
                run["task"],
                run["decision"],
                "yes" if run["valid"] else "NO",
                run["input"].replace("\n", " ")[:60],
                run["model"],
            ]
            table.add_row(*map(Text, cells), key=str(run["id"]))  # user text: never read as markup
        total = self.desk.store.count_runs(search) if len(runs) >= 500 else len(runs)
        shown = f"{total} run{'s' if total != 1 else ''}" + (f" matching {search!r}" if search else "")
        if total > len(runs):
            shown = f"showing the newest {len(runs)} of {shown}"
        # said here too: while the search box has focus, its own Enter hides the footer's "enter Open"
        self.query_one("#count", Static).update(Text(shown + ("  enter opens the highlighted run" if runs else "")))

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    @on(Input.Submitted, "#search")
    def _to_results(self) -> None:
        """Enter in the search box: the matching runs, with the first one highlighted (Enter again opens it)."""
        self.action_reload()
        self.query_one("#runs", DataTable).focus()

    @on(DataTable.RowSelected, "#runs")
    def action_open(self) -> None:
        table = self.query_one("#runs", DataTable)
        if table.row_count == 0:
            return
        run_id = int(str(table.get_row_at(table.cursor_row)[0]))
        run = self.desk.store.run(run_id)
        if run is None:
            return

        def closed(choice: str | None) -> None:
            if choice == "rerun":
                self.app.post_message(RerunRequested(run["task"], run["input"]))

        self.app.push_screen(RunDetail(run), closed)
