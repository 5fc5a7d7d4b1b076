"""Messages that cross screens."""

from __future__ import annotations

from textual.message import Message


class RerunRequested(Message):
    """Open the Run screen with this task and input, and run it (from History)."""

    def __init__(self, task: str, text: str) -> None:
        super().__init__()
        self.task = task
        self.text = text


class ConfigChanged(Message):
    """config.toml was written: screens that show settings should reload them."""


class HeadRetrained(Message):
    """A task's head was retrained in the background (Review's automatic retrain): a screen showing it reloads."""

    def __init__(self, task: str) -> None:
        super().__init__()
        self.task = task
