"""Teach: per task, the example pool (per label or field, and where it came from), the head trained on it and
whether that is stale; import a labelled file, train or retrain the head, remove an item, export the pool, and
let a teacher label unlabelled inputs into the review queue for a cold start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, ProgressBar, Select, Static
from textual.worker import Worker, get_current_worker

from slm_desk import apart
from slm_desk.contract.tasks import Task, load_task, task_names
from slm_desk.errors import Cancelled
from slm_desk.learn.training import MIN_ITEMS
from slm_desk.tui.base import DeskScreen
from slm_desk.tui.modals import AskPath, Confirm, Problems
from slm_desk.tui.widgets import answer_line

SHOWN = 500  # pool items listed (the newest); the counts above the table are over the whole pool
FITTING, ASKING = "fitting the head, step", "asking the small model where the head is unsure, item"
OUTPUT_WIDTH = 30  # at most, per item's answer (the whole ones: `slm-desk examples list`)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class TeachScreen(DeskScreen):
    SUB_TITLE = "Teach"
    MODE = "teach"
    BINDINGS = [
        Binding("i", "import_file", "Import"),
        Binding("t", "train", "Train"),
        Binding("delete", "remove", "Remove"),
        Binding("x", "export", "Export"),
        Binding("d", "distill", "Teacher"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.training = False
        self.phase = ""  # what the progress bar counts now (FITTING, ASKING, or a teacher's labels)
        self.before: float | None = None  # the held-out accuracy of the head being replaced

    def compose(self) -> ComposeResult:
        yield from self.top()
        names = list(task_names())
        first = self.first_task(names, "route-ticket")
        yield Select([(name, name) for name in names], value=first, allow_blank=False, id="task")
        with Horizontal(id="train-row"):
            yield Static("", id="train-phase")
            yield ProgressBar(id="train-progress", show_eta=False)
        yield Static("", id="teach-summary")
        with Horizontal(id="teach-tables"):
            yield DataTable(id="values", zebra_stripes=True, cursor_type="none")
            yield DataTable(id="pool", zebra_stripes=True, cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#train-row").display = False
        self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    @property
    def chosen_task(self) -> Task:
        return load_task(str(self.query_one("#task", Select).value))

    @on(Select.Changed, "#task")
    def reload(self) -> None:
        task = self.chosen_task
        state = self.desk.teaching(task)
        sources = ", ".join(f"{n} from {where}" for where, n in state.sources.items())
        lines = [f"{task.name} v{task.version} pool: {state.pool} items" + (f" ({sources})" if sources else "")]
        if not state.can_train:
            lines.append("no head: its fields are free text; the pool gives each prompt its nearest examples")
        elif state.head is None:
            lines.append("head: not trained (t trains it on the pool)")
        else:
            r = state.head
            lines.append(
                f"head: trained {r.trained_at[:16].replace('T', ' ')} on {r.n_train} items; held-out accuracy "
                f"{r.heldout_accuracy:.1%}, answers {r.heldout_accept_rate:.0%} without the LLM"
            )
        if state.stale:
            lines.append(f"STALE: {state.stale} (t retrains)")
        self.query_one("#teach-summary", Static).update(Text("\n".join(lines)))
        values = self.query_one("#values", DataTable)
        values.clear(columns=True)
        single = len(state.values) == 1  # one field: its name on every row says nothing
        rows = [
            ([value, str(n)] if single else [field, value, str(n)])
            for field, counts in state.values.items()
            for value, n in counts.most_common()
        ]
        headers = ["value", "items"] if single else ["field", "value", "items"]
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
        # at most a third of the screen (the pool needs the rest): the labels give way, every count stays whole
        room = max(16, (self.size.width or 108) // 3) - 2 * len(headers) - 2
        squeeze = max(0, sum(widths) - room)
        widths[-2] = max(6, widths[-2] - squeeze)
        for header, width in zip(headers, widths, strict=True):
            values.add_column(header, width=width)
        for row in rows:
            values.add_row(*(_cut(cell, width) for cell, width in zip(row, widths, strict=True)))
        values.styles.width = sum(widths) + 2 * len(headers) + 2
        self.state = state
        self.fill_pool()

    def on_resize(self) -> None:
        self.fill_pool()

    def fill_pool(self) -> None:
        """The newest pool items, their columns fitted to the table's width: the answer always shows, the input
        takes the rest, and where the item came from only when there is room."""
        state = getattr(self, "state", None)
        if state is None:
            return
        table = self.query_one("#pool", DataTable)
        width = table.size.width or 60
        origin = width >= 48  # where an item came from is what a person weighs first: at 80 columns too
        output = max(12, min(OUTPUT_WIDTH, (width - 8) * 2 // 5))
        text_width = max(10, width - 6 - output - (10 if origin else 0) - 6)
        row = table.cursor_row
        table.clear(columns=True)
        table.add_columns(*(["id", "input", "output", "from"] if origin else ["id", "input", "output"]))
        for item in state.items[-SHOWN:][::-1]:
            cells = [str(item["id"]), _cut(item["input"].replace("\n", " "), text_width)]
            answer = item["output"]
            shown = (
                str(next(iter(answer.values()))) if len(answer) == 1 else answer_line(answer)
            )  # one field: its value
            cells.append(_cut(shown, output))
            table.add_row(*(cells + [item["source"]] if origin else cells))
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.training
        return True

    # -- import, remove, export --------------------------------------------------------------------------------

    def action_import_file(self) -> None:
        task = self.chosen_task

        def chosen(path: str | None) -> None:
            if path:
                self.import_file(task, Path(path).expanduser())

        self.app.push_screen(
            AskPath(f'A JSONL file of {{"input", "output"}} lines to add to {task.name}\'s pool:'), chosen
        )

    @work(thread=True, exit_on_error=False, group="teach", name="import")
    def import_file(self, task: Task, path: Path) -> None:
        report = self.desk.add_examples(task, path)
        self.app.call_from_thread(self._imported, path, report)

    def _imported(self, path: Path, report: Any) -> None:
        problems = report.skipped + report.conflicts
        more = f"; {len(problems)} lines need a look: they are listed now" if problems else ""
        self.notify(
            f"{path.name}: {report.summary}{more}", severity="warning" if problems else "information", timeout=10
        )
        if problems:  # every one of them, in a list that scrolls: a notification cannot hold forty
            self.app.push_screen(Problems(f"{path.name}: lines skipped or relabelled", problems))
        self.reload()

    def action_remove(self) -> None:
        table = self.query_one("#pool", DataTable)
        if not table.row_count:
            self.notify("the pool is empty: nothing to remove")
            return
        if not table.has_focus:  # del acts on the item the cursor is on: the table must be where the user is
            table.focus()
            self.notify("the pool list has the focus now: move to the item and press del again")
            return
        row = table.cursor_row
        item_id = int(str(table.get_row_at(row)[0]))
        item = next((i for i in self.state.items if i["id"] == item_id), None)
        shown = f"{_cut(item['input'], 50)!r} -> {answer_line(item['output'])}" if item else ""
        task = self.chosen_task

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            removed = self.desk.remove_examples(task, [item_id])
            self.notify(f"removed pool item {item_id}" if removed else f"pool item {item_id} was already gone")
            self.reload()
            table.move_cursor(row=min(row, table.row_count - 1))

        self.app.push_screen(
            Confirm(f"Remove pool item {item_id} from {task.name}'s pool?\n{shown}", yes="Remove"), confirmed
        )

    def action_export(self) -> None:
        task = self.chosen_task

        def write(target: Path) -> None:
            try:
                n = self.desk.export_examples(task, target)
            except OSError as exc:
                self.notify(f"cannot write {target}: {exc.strerror}", severity="error")
                return
            self.notify(f"wrote {n} items to {target.resolve()}")

        def chosen(path: str | None) -> None:
            if not path:
                return
            target = Path(path).expanduser()
            if target.suffix != ".jsonl":  # keys meant for the screen, typed into the path, are not a file name
                self.notify(
                    f"nothing was written: {path!r} does not end in .jsonl (x again; the pool is JSONL)",
                    severity="warning",
                )
                return
            if target.exists():
                question = f"{target} exists. Replace it with {task.name}'s pool?"
                self.app.push_screen(Confirm(question, yes="Replace"), lambda yes: write(target) if yes else None)
                return
            write(target)

        self.app.push_screen(AskPath(f"Write {task.name}'s pool as JSONL to:", f"{task.name}.pool.jsonl"), chosen)

    # -- a teacher for a cold start ----------------------------------------------------------------------------

    def action_distill(self) -> None:
        if self.training:
            self.notify("wait for the work in progress, or Esc cancels it", severity="warning")
            return
        task = self.chosen_task

        def teacher_chosen(inputs: Path, teacher: str | None) -> None:
            if teacher is None:
                return
            try:
                lines = inputs.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                self.notify(f"cannot read {inputs}: {exc}", severity="error")
                return
            texts = [line.strip() for line in lines if line.strip()]
            if not texts:
                self.notify(f"{inputs} has no inputs (one per line)", severity="warning")
                return
            self._busy(len(texts))
            self.notify(f"the teacher labels {len(texts)} inputs into Review (F3); Esc stops it")
            self.distill(task, texts, teacher or None)

        def inputs_chosen(path: str | None) -> None:
            if not path:
                return
            inputs = Path(path).expanduser()
            question = "The teacher: a server's /v1 URL or an installed model id (empty: the [escalation] target)"
            self.app.push_screen(
                AskPath(question, placeholder="http://127.0.0.1:8080/v1 or qwen2.5-1.5b"),
                lambda teacher: teacher_chosen(inputs, teacher),
            )

        self.app.push_screen(AskPath(f"Unlabelled inputs for {task.name}, one per line:"), inputs_chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="teach", name="distill")
    def distill(self, task: Task, texts: list[str], teacher: str | None) -> None:
        worker = get_current_worker()

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(self._step, done)

        counts = self.desk.distill(task, texts, teacher, progress=progress, cancelled=lambda: worker.is_cancelled)
        self.app.call_from_thread(self._distilled, counts)

    def _step(self, done: int) -> None:
        if self.training:
            bar = self.query_one("#train-progress", ProgressBar)
            self._progress("the teacher labelled", done, int(bar.total or done))

    def _distilled(self, counts: dict[str, int]) -> None:
        self._stopped()
        self.notify(
            f"{counts['valid']} teacher labels and {counts['flagged']} flagged answers wait in Review (F3), least "
            "sure first: a person's verdict puts them in the pool"
        )

    def _busy(self, total: int | None) -> None:
        self.training = True
        self.phase = ""
        self.query_one("#train-row").display = True
        self.query_one("#train-phase", Static).update("")
        self.query_one("#train-progress", ProgressBar).update(total=total, progress=0)
        self.refresh_bindings()

    # -- training ----------------------------------------------------------------------------------------------

    def action_train(self) -> None:
        if self.training:
            self.notify("the head is already training: Esc cancels it", severity="warning")
            return
        task, state = self.chosen_task, self.state  # as `reload` read it after the last change
        if not state.can_train:
            self.notify(f"{task.name} has free-text fields: a head cannot learn them", severity="warning")
            return
        if state.pool < MIN_ITEMS:
            self.notify(
                "i imports a labelled JSONL file; labels given in Review (F3) join the pool too",
                title=f"{task.name}'s pool has {state.pool} items: a head needs at least {MIN_ITEMS}",
                severity="warning",
            )
            return
        self.before = state.head.heldout_accuracy if state.head is not None else None
        self._busy(None)
        self.notify(f"training {task.name}'s head on {state.pool} pool items; Esc cancels")
        self.train_head(task)

    @work(thread=True, exclusive=True, exit_on_error=False, group="teach", name="train")
    def train_head(self, task: Task) -> None:
        worker = get_current_worker()

        def said(line: str) -> None:  # between steps: where a cancel takes effect
            if worker.is_cancelled:
                raise Cancelled()
            self.app.call_from_thread(self._said, line.strip())

        def stepped(done: int, total: int) -> None:  # the bar moves when a step ends, never before it starts
            self.app.call_from_thread(self._progress, FITTING, done, total)

        def asked(done: int, total: int) -> None:
            self.app.call_from_thread(self._progress, ASKING, done, total)

        # as `slm-desk train` does: the small model is measured where it could change an answer, within a budget
        # (a head sure of its pool skips it), and a cancelled measurement keeps the policy measured before; in a
        # process of its own, so the screen stays live (apart.py)
        try:
            outcome = apart.train(
                self.desk.config,
                task,
                compare=None,
                said=said,
                answered=asked,
                steps=stepped,
                cancelled=lambda: worker.is_cancelled,
            )
        except Cancelled:  # stopped before the head was saved (Esc during the comparison keeps it: `_trained` says)
            self.notify("training cancelled: the head is unchanged")  # posted, never waited on: the app may be quitting
            raise
        self.app.call_from_thread(self._trained, outcome)

    def _said(self, line: str) -> None:
        if self.training:
            self.sub_title = line

    def _progress(self, phase: str, done: int, total: int) -> None:
        """One run of the bar per phase, with the phase's own total, never going back within it."""
        if not self.training:
            return
        bar = self.query_one("#train-progress", ProgressBar)
        if phase != self.phase:
            self.phase = phase
            bar.update(total=total, progress=0)
        bar.update(total=total, progress=max(done, int(bar.progress)))
        self.query_one("#train-phase", Static).update(f"{phase}: {done} of {total}")

    def _trained(self, outcome: apart.Outcome) -> None:
        self._stopped()
        was = f" (was {self.before:.1%})" if self.before is not None else ""
        if outcome.interrupted:
            tier = "the comparison was stopped" + ("; the policy measured before is kept" if outcome.model else "")
        elif outcome.model:
            tier = f"{outcome.model} measured on {outcome.measured} items"
        else:
            tier = outcome.note or "the small model was not measured"
        self.notify(
            f"head trained on {outcome.n_train} items: held-out accuracy {outcome.heldout_accuracy:.1%}{was}; {tier}"
        )
        self.reload()

    def action_cancel(self) -> None:
        self.cancel_work("teach")

    def worker_stopped(self, worker: Worker[Any], reason: str) -> None:
        if worker.name in ("train", "distill"):
            self._stopped()
            self.reload()

    def _stopped(self) -> None:
        self.training = False
        self.sub_title = self.SUB_TITLE
        self.query_one("#train-row").display = False
        self.refresh_bindings()
