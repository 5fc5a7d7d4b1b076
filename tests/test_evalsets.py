"""Every built-in eval set: its size, its items checked by the task's own contract, and none a few-shot example."""

from __future__ import annotations

import pytest

from slm_desk.contract.tasks import load_task, task_names
from slm_desk.data.evalset import builtin, read_jsonl

WITH_SETS = [name for name in task_names() if builtin(name) is not None]
# CAsT's manual rewrites: some expand an abbreviation or rephrase, which this task's contract does not allow
BROKEN_GOLD_ALLOWED = {
    "rewrite-followup": 1 / 8,
    # titles people wrote: one names a number its description lacks ("F5 tornado"), one runs past 150 characters
    "rewrite-query": 1 / 50,
    "title-bug-report": 1 / 50,
}


def test_every_built_in_task_has_an_eval_set() -> None:
    assert set(WITH_SETS) == set(task_names())


@pytest.mark.parametrize("name", WITH_SETS)
def test_the_eval_set_is_judged_by_its_task_s_contract(name: str) -> None:
    task = load_task(name)
    items = read_jsonl(builtin(name))  # type: ignore[arg-type]
    assert len(items) >= 60
    assert not {item["input"] for item in items} & {example.input for example in task.examples}
    broken = [item for item in items if _refused(task, item)]
    assert len(broken) <= len(items) * BROKEN_GOLD_ALLOWED.get(name, 0), broken[:3]


def _refused(task, item) -> bool:  # type: ignore[no-untyped-def]
    """Whether the task's contract refuses a gold line, as a pool line is judged: one that leaves out a field it
    does not know (a prompt labelled without its span) is judged on the fields it gives."""
    from slm_desk.data.pool import check_item
    from slm_desk.errors import UsageError

    try:
        check_item(task, item)
    except UsageError:
        return True
    return False


def test_guard_s_set_holds_injections_labelled_without_their_span_and_emails_with_it() -> None:
    items = read_jsonl(builtin("guard"))  # type: ignore[arg-type]
    label_only = [i for i in items if "span" not in i["output"]]
    with_span = [i for i in items if i["output"].get("span")]
    assert label_only and all(i["output"]["label"] == "prompt_injection" for i in label_only)
    assert with_span and all(i["output"]["span"] in i["input"] for i in with_span)


def test_extract_ticket_s_set_has_tickets_with_and_without_an_invoice() -> None:
    items = read_jsonl(builtin("extract-ticket"))  # type: ignore[arg-type]
    without = [item for item in items if item["output"]["invoice_id"] is None]
    assert 30 <= len(without) <= len(items) - 20


def test_draft_reply_s_set_covers_every_action_and_its_timeframe_follows_the_action() -> None:
    items = read_jsonl(builtin("draft-reply"))  # type: ignore[arg-type]
    timeframe = {
        "We have started a refund to your original payment method.": "5 business days",
        "We have passed your request to our technical team.": "24 hours",
        "Please reply with your order number so we can look into it.": "2 business days",
        "A colleague will answer your question personally.": "24 hours",
    }
    assert {item["output"]["action"] for item in items} == set(timeframe)  # the task's instructions say the same
    assert all(item["output"]["timeframe"] == timeframe[item["output"]["action"]] for item in items)
