"""Modal dialogs: consent before text leaves the machine, yes/no, a run's details, a correction editor, a path,
a list of problems."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.await_complete import AwaitComplete
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from slm_desk.contract.tasks import load_task
from slm_desk.contract.validation import validate_output

Answer = TypeVar("Answer")


class Dialog(ModalScreen[Answer]):
    """A modal that answers once. Two keys at machine speed (Enter twice, Enter then Esc) each ask it to close;
    Textual would run the callback twice and then pop the screen beneath it (ScreenStackError). The first answer
    counts; later ones, and any after it left the top of the stack, do nothing."""

    answered = False

    def dismiss(self, result: Answer | None = None) -> AwaitComplete:
        if self.answered or not self.is_active:
            nothing: AwaitComplete = AwaitComplete.nothing()
            return nothing
        self.answered = True
        return super().dismiss(result)


class Confirm(Dialog[bool]):
    """A question with Yes / No; Enter is yes, Escape is no."""

    BINDINGS = [Binding("escape", "answer(False)", "No"), Binding("y", "answer(True)", "Yes")]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__(classes="dialog-screen")
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(self.yes, variant="warning", id="yes")
                yield Button(self.no, variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class Problems(Dialog[None]):
    """A list too long for a notification (an import's skipped lines), scrolled with the keys; Esc closes it."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close"), Binding("enter", "dismiss(None)", "Close", show=False)]

    def __init__(self, title: str, lines: list[str]) -> None:
        super().__init__(classes="dialog-screen")
        self.heading, self.lines = title, lines

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"{self.heading} ({len(self.lines)})", classes="title", markup=False)
            with VerticalScroll(classes="box", id="problems"):
                yield Static(Text("\n".join(self.lines)))
            yield Static("arrows/PgUp/PgDn scroll   Esc close", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#problems", VerticalScroll).focus()


def consent_question(where: str) -> str:
    return (
        f"Escalation sends this input to [b]{escape(where)}[/b], outside this machine.\n\n"
        "Send it?  (y = send, Esc = keep it local)"
    )


class RunDetail(Dialog[str | None]):
    """One run from the history: input, output, errors. Returns 'rerun' to run it again."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close"), Binding("r", "dismiss('rerun')", "Re-run")]

    def __init__(self, run: dict[str, Any]) -> None:
        super().__init__(classes="dialog-screen")
        self.run_row = run

    def compose(self) -> ComposeResult:
        r = self.run_row
        output = json.dumps(json.loads(r["output"]), indent=2) if r["output"] else (r["rejected_output"] or "-")
        errors = "\n".join(json.loads(r["errors"])) or "none"
        with VerticalScroll(classes="dialog wide"):
            yield Label(
                f"run {r['id']}  {r['task']} v{r['task_version']}  {r['model']}  {r['created_at'][:19]}",
                classes="title",
                markup=False,
            )
            yield Static("[b]input[/b]")
            yield Static(r["input"], classes="box", markup=False)
            yield Static(f"[b]output[/b] ({'valid' if r['valid'] else 'INVALID'})")
            yield Static(output, classes="box", markup=False)
            yield Static(Text.assemble(("errors", "bold"), "\n" + errors))
            yield Static(Text.assemble(("decision", "bold"), f" {r['decision']}: {r['reason']}"))
            yield Static("r re-run   Esc close", classes="hint")


class CorrectAnswer(Dialog[dict[str, Any] | None]):
    """Edit a review item's answer as JSON; it is checked against the task contract as you type."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, item: dict[str, Any]) -> None:
        super().__init__(classes="dialog-screen")
        self.item = item
        self.contract = load_task(item["task"])
        candidate = item.get("candidate")
        parsed = json.loads(candidate) if candidate else None
        if isinstance(parsed, str):  # an invalid answer is stored as the raw text
            self.start = parsed
        else:
            self.start = json.dumps(parsed or dict.fromkeys(self.contract.fields), indent=2)
        self.output: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"correct item {self.item['id']} ({self.item['task']})", classes="title", markup=False)
            yield Static(self.item["input"], classes="box", markup=False)
            yield TextArea(self.start, language="json", id="answer")
            yield Static("", id="problems")
            yield Static("ctrl+s save   Esc cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#answer", TextArea).focus()
        self.check()

    @on(TextArea.Changed)
    def check(self) -> None:
        text = self.query_one("#answer", TextArea).text
        output, problems = validate_output(self.contract, text, self.item["input"])
        self.output = output if not problems else None
        box = self.query_one("#problems", Static)
        box.update("[green]valid[/green]" if not problems else "[red]" + escape("\n".join(problems)) + "[/red]")

    def action_save(self) -> None:
        if self.output is None:
            self.notify("fix the problems shown first", severity="warning")
            return
        self.dismiss(self.output)


class AskPath(Dialog[str | None]):
    """One line of text, a file path: Enter gives it, Escape gives None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, question: str, value: str = "", placeholder: str = "path/to/file.jsonl") -> None:
        super().__init__(classes="dialog-screen")
        self.question, self.value, self.placeholder = question, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="question", markup=False)
            yield Input(self.value, placeholder=self.placeholder, id="path")
            yield Static("Enter ok   Esc cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())  # "" is an answer too (the default); Esc is None
