"""A scripted backend: the neighbour that stands in for a model in tests of pipeline, tier and cascade logic.

It answers each input from a table (input -> output) or a rule, with the confidence a test chooses, and counts
the calls, so a test can tell which tier answered and whether the model was asked at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from slm_desk.contract.results import Tokens
from slm_desk.contract.tasks import Task
from slm_desk.models.protocol import AlwaysReady, Completion, IsCancelled, Messages, OnText


class ScriptedBackend(AlwaysReady):
    where = "a scripted test model (this process)"

    def __init__(
        self, answer: Callable[[str], dict[str, Any]], confidence: float = 0.9, model: str = "scripted"
    ) -> None:
        self.answer = answer
        self.confidence = confidence
        self.model = model
        self.asked: list[str] = []

    def complete(
        self, task: Task, messages: Messages, on_text: OnText | None = None, cancelled: IsCancelled | None = None
    ) -> Completion:
        text = messages[-1]["content"]
        self.asked.append(text)
        output = self.answer(text)
        fields = dict.fromkeys(output, self.confidence)
        return Completion(json.dumps(output), self.model, "stop", Tokens(prompt=1, completion=1), fields)
