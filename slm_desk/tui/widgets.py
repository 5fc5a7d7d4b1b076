"""Widgets shared by screens: a result shown field by field, a reliability diagram, an answer in a line."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable, Static, TextArea

from slm_desk.contract.results import RunResult

DECISION_STYLE = {"accept": "bold black on green", "escalate": "bold black on yellow", "review": "bold white on red"}


TIER_NAMES = {"head": "the trained head", "model": "the small model", "escalation": "the larger model"}


def confidence_text(result: RunResult) -> str:
    """Calibrated and raw confidence, labelled as such (they differ once a task is calibrated)."""
    if result.confidence is None:
        return "confidence -" + (f" ({result.confidence_note})" if result.confidence_note else "")
    if result.raw_confidence is not None and abs(result.raw_confidence - result.confidence) > 1e-9:
        return f"confidence {result.confidence:.2f} calibrated (raw {result.raw_confidence:.2f})"
    return f"confidence {result.confidence:.2f} (raw, not calibrated)"


class InputBox(TextArea):
    """The input: a text area where ctrl+a selects everything, as in a desktop text box (home goes to the line's
    start; F6 and F7 belong to the app's screens)."""

    BINDINGS = [Binding("ctrl+a", "select_all", "Select all", show=False)]


class ResultView(Static):
    """Validity badge, decision and reason of one result."""

    def show(self, result: RunResult) -> None:
        badge = Text(" VALID ", style="bold black on green") if result.valid else Text(" INVALID ", "bold white on red")
        line = Text.assemble(
            (result.task, "bold"), "  ", badge, " ", (f" {result.decision.upper()} ", DECISION_STYLE[result.decision])
        )
        line.append(f"  answered by {TIER_NAMES[result.answered_by]}", style="bold")
        timed = f"{result.latency_ms} ms" if result.latency_ms is not None else f"{result.ms:.1f} ms (batch share)"
        line.append(f"  {confidence_text(result)}  {result.model}  {timed}")
        line.append("\n" + result.reason, style="italic")
        if result.errors:
            line.append("\n" + "\n".join(f"- {e}" for e in result.errors), style="red")
        if result.rendered:
            line.append("\n\n" + result.rendered.strip())
        self.update(line)

    def clear(self, message: str = "") -> None:
        self.update(message)


def fill_fields(table: DataTable, result: RunResult) -> None:
    """One row per output field: value and confidence."""
    table.clear(columns=True)
    table.add_columns("field", "value", "raw confidence")
    shown: dict[str, Any] = result.output or {}
    if not shown and result.rejected_output:
        table.add_row("(rejected)", Text(result.rejected_output[:200], style="red"), "")
        return
    for field, value in shown.items():
        conf = (result.field_confidence or {}).get(field)
        bar = "" if conf is None else f"{conf:.2f} " + "█" * round(conf * 10)
        table.add_row(field, Text("null" if value is None else str(value)), bar)


class ReliabilityPlot(Static):
    """Accuracy per confidence bin as bars, against the diagonal a calibrated model would follow."""

    HEIGHT = 10  # rows of the diagram; a short terminal gets SHORT (at 80x24 the full one was cut)
    SHORT = 5

    def plot(self, bins: list[dict[str, Any]], title: str, rows: int = HEIGHT) -> None:
        cols = []
        for b in bins:
            acc = b.get("accuracy")
            mid = (b["lower"] + b["upper"]) / 2
            cols.append((None if acc is None else round(acc * rows), round(mid * rows), b["count"]))
        text = Text(f"{title}\n", style="bold")
        for row in range(rows, 0, -1):
            text.append(f"{row / rows:>4.1f} ┤", style="dim")
            for height, diagonal, _ in cols:
                if height is not None and height >= row:
                    text.append(" ███", style="green" if abs(height - diagonal) <= 1 else "red")
                elif diagonal == row:
                    text.append("  · ", style="yellow")
                else:
                    text.append("    ")
            text.append("\n")
        text.append("     └" + "────" * len(cols) + "\n", style="dim")
        text.append(
            "      " + "".join(f"{b['lower']:>4.1f}"[-3:].rjust(4) for b in bins) + "  confidence\n", style="dim"
        )
        text.append("    n " + "".join(f"{c:>4}" for _, _, c in cols) + "\n", style="dim")
        text.append(
            f"bars: accuracy per bin (green = within {'a tenth' if rows == 10 else f'1/{rows}'} of the diagonal)"
            "   · : perfect calibration",
            style="italic dim",
        )
        self.update(text)


def answer_line(output: dict[str, Any]) -> str:
    """An answer in a line: `route=card_issue`, `time=7pm, people=4` (nulls left out)."""
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in output.items() if v is not None)
