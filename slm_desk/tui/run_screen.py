"""The Run screen: pick a task, type or paste input, run it; the answer streams in and is shown field by field."""

from __future__ import annotations

import threading
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, get_current_worker

from slm_desk.contract.results import RunResult
from slm_desk.contract.tasks import load_task, task_names
from slm_desk.tui.base import DeskScreen
from slm_desk.tui.modals import Confirm, consent_question
from slm_desk.tui.widgets import InputBox, ResultView, fill_fields


def latest(text: str, width: int = 110) -> str:
    """The attempt being generated now (the retry's, after a rejection), as much as the two-row stream box holds:
    its end, cut at a space when one is near so that it does not start mid-word."""
    lines = text.splitlines()
    if not lines:
        return ""
    line = lines[-1]
    if len(line) <= width:
        return line
    tail = line[-(width - 1) :]
    space = tail.find(" ", 0, 20)
    return "…" + (tail[space + 1 :] if space >= 0 else tail)


class RunScreen(DeskScreen):
    SUB_TITLE = "Run"
    MODE = "run"
    BINDINGS = [
        Binding("ctrl+r", "run", "Run"),
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+o", "copy", "Copy"),
        Binding("ctrl+g", "escalate", "Escalate"),
        Binding("ctrl+l", "clear_input", "Clear input"),
    ]

    class Completed(Message):
        def __init__(self, result: RunResult) -> None:
            super().__init__()
            self.result = result

    def __init__(self) -> None:
        super().__init__()
        self.result: RunResult | None = None
        self.running = False
        # generations still on the model: a cancelled one runs on until the model notices (one token at most)
        self._generating = 0
        self._count_lock = threading.Lock()

    def compose(self) -> ComposeResult:
        yield from self.top()
        with Horizontal():
            with Vertical(id="task-pane"):
                yield Static("Tasks", classes="pane-title")
                yield OptionList(*self._task_options(), id="tasks")
                yield Static("", id="task-description")
            with Vertical(id="work-pane"):
                yield InputBox(id="input", placeholder="Type or paste the input, then ctrl+r")
                yield Static("", id="status")
                yield Static("", id="stream")
                yield DataTable(id="fields", cursor_type="row", zebra_stripes=True)
                with VerticalScroll(id="verdict-scroll"):  # a drafted reply can be longer than a small terminal
                    yield ResultView(id="verdict")
        yield Footer(compact=True)

    def _task_options(self) -> list[Option]:
        return [Option(name, id=name) for name in task_names()]

    def on_mount(self) -> None:
        tasks = self.query_one("#tasks", OptionList)
        names = list(task_names())
        tasks.highlighted = names.index(self.first_task(names, "extract-ticket"))
        self.query_one("#input", InputBox).focus()

    @property
    def task_name(self) -> str:
        tasks = self.query_one("#tasks", OptionList)
        option = tasks.get_option_at_index(tasks.highlighted or 0)
        return str(option.id)

    @on(OptionList.OptionHighlighted, "#tasks")
    def show_description(self) -> None:
        try:
            description = load_task(self.task_name).description
        except Exception as exc:  # a broken user task file: say so, do not crash the screen
            description = f"cannot load: {str(exc).splitlines()[0]}"
        self.query_one("#task-description", Static).update(Text(description))
        self.query_one("#input", InputBox).placeholder = self._placeholder()
        if not self.running:  # what is on screen belongs to the task that was chosen before
            self._clear_result()
            self._status(f"ready: ctrl+r runs {self.task_name} on the input")

    def _clear_result(self) -> None:
        self.result = None
        self.query_one("#stream", Static).update("")
        self.query_one(ResultView).clear()
        self.query_one("#fields", DataTable).clear(columns=True)

    def _placeholder(self) -> str:
        """The task's first example input as a sample, so a first run knows what the task expects."""
        try:
            examples = load_task(self.task_name).examples
        except Exception:  # a broken task file is reported by the description line
            examples = []
        sample = f"for example: {examples[0].input}\n\n" if examples else ""
        return sample + "Type or paste the input, then ctrl+r"

    @on(OptionList.OptionSelected, "#tasks")
    def task_chosen(self) -> None:
        self.query_one("#input", InputBox).focus()

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "escalate":
            return self.desk.config.escalation.enabled
        if action == "cancel":
            return self.running or None
        return True

    def start(self, task: str, text: str) -> None:
        """Select a task, fill the input and run it (used by History's re-run)."""
        names = list(task_names())
        if task in names:
            self.query_one("#tasks", OptionList).highlighted = names.index(task)
        self.query_one("#input", InputBox).text = text
        self.action_run()

    def action_run(self) -> None:
        if self.running:  # one run at a time: a second would share the model mid-generation
            self.notify("a run is in progress: wait for it, or press Esc to cancel it", severity="warning")
            return
        text = self.query_one("#input", InputBox).text
        if not text.strip():
            self.notify("type an input first", severity="warning")
            return
        self.running = True
        self._clear_result()
        self._status(f"running {self.task_name}... (Esc cancels)")
        self.refresh_bindings()
        stream = self.query_one("#stream", Static)  # read on the event loop: the worker thread must not
        self.run_inference(self.task_name, text, max(20, 2 * (stream.content_size.width or 55)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="inference", name="run")
    def run_inference(self, task: str, text: str, room: int) -> None:
        worker = get_current_worker()
        cascade = self.desk.cascade(task)
        streamed: list[str] = []

        def on_text(piece: str) -> None:
            streamed.append(piece)
            if not worker.is_cancelled:  # a cancelled run's last tokens must not land under the next run
                self.app.call_from_thread(self._stream, Text(latest("".join(streamed), room)))

        with self._count_lock:
            after_cancel = self._generating > 0
            self._generating += 1
        try:
            if after_cancel:
                self.app.call_from_thread(self._status, "waiting for the cancelled run to stop (Esc cancels)")
            elif cascade.small.backend.busy():
                self.app.call_from_thread(self._status, "waiting for the model: calibration is using it (Esc cancels)")
            result = cascade.run(text, on_text=on_text, cancelled=lambda: worker.is_cancelled)
        finally:
            with self._count_lock:
                self._generating -= 1
        if after_cancel and not worker.is_cancelled:
            self.app.call_from_thread(self._status, f"running {task}... (Esc cancels)")
        self.post_message(self.Completed(result))

    def _stream(self, text: Text) -> None:
        if self.running:
            self.query_one("#stream", Static).update(text)

    @on(Completed)
    def completed(self, message: Completed) -> None:
        self.running = False
        self.result = message.result
        self.desk.record([message.result])
        # the streamed text was the raw answer: for an invalid one, the rejected JSON, read first as if it were the
        # answer; the table below shows a valid answer field by field and an invalid one as (rejected)
        self.query_one("#stream", Static).update("")
        fill_fields(self.query_one("#fields", DataTable), message.result)
        self.query_one(ResultView).show(message.result)
        hint = "  ctrl+g escalates" if message.result.decision == "escalate" else ""
        validity = "valid" if message.result.valid else "INVALID"
        self._status(f"done: {message.result.task}: {validity}, {message.result.decision}  ctrl+o copies it{hint}")
        self.refresh_bindings()

    def worker_stopped(self, worker: Worker[Any], reason: str) -> None:
        self.running = False
        self._status(reason)
        self.refresh_bindings()

    def action_cancel(self) -> None:
        self.cancel_work("inference")

    def action_clear_input(self) -> None:
        box = self.query_one("#input", InputBox)
        box.clear()
        box.focus()

    def action_copy(self) -> None:
        if self.result is None:
            self.notify("nothing to copy yet", severity="warning")
            return
        import json

        self.app.copy_to_clipboard(json.dumps(self.result.envelope(), ensure_ascii=False))
        # OSC 52 has no reply: the terminal may ignore it, so say what was done, not that it worked
        self.notify(
            "envelope sent to the terminal's clipboard (OSC 52); if nothing pastes, your terminal does not allow "
            "it (in tmux: set -g set-clipboard on). The run is also in History (F2).",
            timeout=8,
        )

    def action_escalate(self) -> None:
        desk = self.desk
        if self.result is None or self.result.escalated:
            self.notify("run something first; escalation is for the last result", severity="warning")
            return
        if desk.escalation_leaves_machine():
            where = desk.config.escalation.base_url or "the escalation endpoint"
            self.app.push_screen(Confirm(consent_question(where), yes="Send"), self._consented)
        else:
            self._consented(True)

    def _consented(self, yes: bool | None) -> None:
        if not yes:
            self.notify("kept on this machine")
            return
        assert self.result is not None
        self.running = True
        self._status("asking the larger model...")
        self.refresh_bindings()
        self.escalate_result(self.result)

    @work(thread=True, exclusive=True, exit_on_error=False, group="inference", name="escalate")
    def escalate_result(self, result: RunResult) -> None:
        cascade = self.desk.cascade(result.task)
        self.post_message(self.Completed(cascade.escalate(result)))
