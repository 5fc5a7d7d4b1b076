"""Chat messages for a task: a fixed prefix (instructions, few-shot turns) then the input.

The prefix must come first and never depend on the input, so that its tokens stay in the KV cache.
"""

from __future__ import annotations

from slm_desk.tasks import Task

ANSWER_RULE = "Answer with one JSON object only, with exactly these keys: {keys}."


def prefix_messages(task: Task) -> list[dict[str, str]]:
    system = task.instructions.strip() + "\n" + ANSWER_RULE.format(keys=", ".join(task.fields))
    messages = [{"role": "system", "content": system}]
    for example in task.examples:
        messages.append({"role": "user", "content": example.input})
        messages.append({"role": "assistant", "content": example.output})
    return messages


def task_messages(task: Task, text: str) -> list[dict[str, str]]:
    return [*prefix_messages(task), {"role": "user", "content": text}]


def retry_messages(task: Task, text: str, rejected: str, errors: list[str]) -> list[dict[str, str]]:
    """The first attempt and what was wrong with it, so the model can correct itself once."""
    feedback = (
        "That answer was rejected:\n- "
        + "\n- ".join(errors)
        + "\nAnswer again for the same message, fixing these problems."
    )
    return [
        *task_messages(task, text),
        {"role": "assistant", "content": rejected},
        {"role": "user", "content": feedback},
    ]
