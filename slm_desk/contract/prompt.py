"""Chat messages for a task: a fixed prefix (instructions, few-shot turns) then the input.

The prefix must come first and never depend on the input, so that its tokens stay in the KV cache.
"""

from __future__ import annotations

from slm_desk.contract.tasks import Task
from slm_desk.errors import UsageError

ANSWER_RULE = "Answer with one JSON object only, with exactly these keys: {keys}."


def prefix_messages(task: Task, shots: list[tuple[str, str]] | None = None) -> list[dict[str, str]]:
    """The instructions, then the few-shot turns: `shots` (retrieved for this input) or, when None, the task's
    own examples. A fine-tuned model gets `[]`: it learned the task, so it is prompted as it was trained.

    Retrieved shots come after the instructions, so the instruction prefix stays cached across inputs.
    """
    system = task.instructions.strip() + "\n" + ANSWER_RULE.format(keys=", ".join(task.fields))
    messages = [{"role": "system", "content": system}]
    pairs = shots if shots is not None else [(e.input, e.output) for e in task.examples]
    for user, assistant in pairs:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    return messages


def task_messages(task: Task, text: str, shots: list[tuple[str, str]] | None = None) -> list[dict[str, str]]:
    return [*prefix_messages(task, shots), {"role": "user", "content": text}]


RETRY = "That answer was rejected:"


def examples_in(messages: list[dict[str, str]]) -> int:
    """How many few-shot turns (an example input and its answer) a task's messages hold."""
    after = 3 if messages and messages[-1]["role"] == "user" and messages[-1]["content"].startswith(RETRY) else 1
    return max(0, (len(messages) - 1 - after) // 2)


def without_examples(messages: list[dict[str, str]], drop: int) -> list[dict[str, str]]:
    """The messages with their first `drop` few-shot turns left out: the least similar of retrieved ones, which
    come first so that the closest sits right before the input."""
    return [messages[0], *messages[1 + 2 * drop :]]


def retry_messages(messages: list[dict[str, str]], rejected: str, errors: list[str]) -> list[dict[str, str]]:
    """The first attempt and what was wrong with it, so the model can correct itself once."""
    feedback = RETRY + "\n- " + "\n- ".join(errors) + "\nAnswer again for the same message, fixing these problems."
    return [*messages, {"role": "assistant", "content": rejected}, {"role": "user", "content": feedback}]


def check_input(text: str) -> str:
    """Refuse input a task cannot meaningfully run on; return it unchanged otherwise.

    Invisible formatting characters (zero-width joiners inside an emoji, right-to-left marks, bidi overrides) are
    text; control characters and unassigned code points in number are binary; a lone surrogate (a JSON "\\ud800",
    or a byte that is not UTF-8 in a command-line argument) cannot be text at all."""
    if "\x00" not in text and text.isprintable() and text.strip():  # the common case, at C speed: plain text
        return text
    import unicodedata

    for offset, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            if "\udc80" <= char <= "\udcff":  # how Python carries a byte that is not UTF-8 (surrogateescape)
                problem = f"is not UTF-8 text (bad byte 0x{ord(char) - 0xDC00:02x} at offset {offset})"
            else:
                problem = f"holds a lone surrogate (U+{ord(char):04X}) at offset {offset}, which is not text"
            raise UsageError(f"the input {problem}", "pass plain UTF-8 text")
    kinds = [unicodedata.category(c) for c in text]
    if all(c.isspace() or kind == "Cf" for c, kind in zip(text, kinds, strict=True)):
        shown = " (only invisible formatting characters)" if text.strip() else ""
        raise UsageError(f"the input is empty{shown}", "pass text on stdin or with --input TEXT")
    binary = sum(kind in ("Cc", "Cn") and not c.isspace() for c, kind in zip(text, kinds, strict=True))
    if "\x00" in text or binary > max(2, len(text) // 100):
        raise UsageError("the input looks like binary data, not text", "pass plain UTF-8 text")
    return text
