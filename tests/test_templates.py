"""Drafting from strict templates: the draft is exactly its template with the slots filled, never an invented value;
a set of templates keyed by a label; constants from the task file and config.toml; a hole is invalid, not sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slm_desk.contract import templates
from slm_desk.contract.tasks import TaskError, load_task, parse_task
from slm_desk.contract.validation import validate_output

LITERAL = st.text(alphabet=st.characters(blacklist_characters="{}|", codec="utf-8"), max_size=12)
NAMES = st.sampled_from(["order_id", "name", "city", "phone"])
VALUES = st.one_of(st.none(), st.just(""), st.text(max_size=10))
PIECES = st.lists(
    st.one_of(LITERAL.map(lambda t: ("text", t)), st.tuples(NAMES, st.none() | LITERAL).map(lambda s: ("slot", s))),
    max_size=8,
)


@given(PIECES, st.dictionaries(st.sampled_from(["order_id", "name", "city"]), VALUES), st.text(max_size=8))
def test_a_draft_is_its_template_with_the_slots_filled_and_nothing_invented(pieces, output, phone) -> None:  # type: ignore[no-untyped-def]
    template = "".join(
        value if kind == "text" else "{" + value[0] + ("" if value[1] is None else "|" + value[1]) + "}"
        for kind, value in pieces
    )
    constants = {"phone": phone}
    expected: list[str] = []
    hole = False
    for kind, value in pieces:  # what the draft must be, written independently of the renderer
        if kind == "text":
            expected.append(value)
            continue
        name, fallback = value
        if name in output:
            filled = output[name]
            if filled is not None and str(filled).strip():
                expected.append(str(filled))
            elif fallback is not None:
                expected.append(fallback)
            else:
                hole = True
        elif name in constants:
            expected.append(constants[name])
        else:
            hole = True  # a slot that names nothing known: never filled with something made up
    assert templates.render(template, output, constants) == (None if hole else "".join(expected))


def test_literal_braces_stay_and_a_value_is_never_read_as_a_slot() -> None:
    assert templates.render("{{x}} {a}", {"a": "{b}"}, {"b": "no"}) == "{x} {b}"


SUPPORT = load_task("draft-support-reply")
EMPTY = dict.fromkeys(SUPPORT.fields)


def test_the_support_task_picks_the_template_of_its_intent_and_copies_the_detail() -> None:
    answer = {**EMPTY, "intent": "track_order", "order_id": "732201349959"}
    draft = SUPPORT.render(answer)
    assert draft is not None and "track the order 732201349959." in draft
    assert draft == SUPPORT.templates["intent"]["track_order"].replace("{order_id|you placed}", "732201349959").format(
        **SUPPORT.constants
    )
    without = SUPPORT.render({**answer, "order_id": None})
    assert without is not None and "track the order you placed." in without  # the stated fallback, nothing invented
    assert "{{Customer Support Phone Number}}" in draft  # the data's placeholder until a person sets the constant
    assert set(SUPPORT.templates["intent"]) == set(SUPPORT.labels["intent"])  # one template per intent, 27


def test_a_required_slot_left_empty_is_an_invalid_answer_not_a_draft(tmp_path: Path) -> None:
    task = parse_task(
        """description = "x"
instructions = "x"
template = "Your order {order_id} ships today."
schema = '{"type": "object", "properties": {"order_id": {"type": ["string", "null"]}}, "required": ["order_id"]}'
""",
        "ships",
        "test",
    )
    assert [v.kind for v in task.validators] == ["template"]  # checked whether or not the file declares it
    _, errors = validate_output(task, json.dumps({"order_id": None}), "where is it")
    assert errors == ["slot 'order_id' is not filled: the draft needs it"]
    assert task.render({"order_id": None}) is None


@pytest.mark.parametrize(
    ("table", "why"),
    [
        ("[templates.intent]\nnot_an_intent = 'x'", "not one of its labels"),
        ("[templates.intent]\nyes = 'Hi {nobody}'", "neither a schema property nor a constant"),
        ("[templates.intent]\nyes = 'Hi'", "no template for 'no'"),
        ("[templates.reply]\nyes = 'Hi'", "not a label field"),
    ],
)
def test_a_template_set_that_could_never_render_refuses_the_task(table: str, why: str) -> None:
    schema = {
        "type": "object",
        "properties": {"intent": {"enum": ["yes", "no"]}, "reply": {"type": "string"}},
        "required": ["intent", "reply"],
    }
    text = f"""description = "x"
instructions = "x"
schema = '{json.dumps(schema)}'
[labels.intent]
yes = "low"
no = "low"
{table}
"""
    with pytest.raises(TaskError, match=why):
        parse_task(text, "t", "test")


def test_constants_in_config_toml_replace_the_task_file_s(slm_home: Path) -> None:
    from slm_desk.desk import Desk

    (slm_home / "config").mkdir(parents=True, exist_ok=True)
    (slm_home / "config" / "config.toml").write_text('[constants]\nsupport_phone = "+1 555 0100"\nunused = "x"\n')
    task = Desk().configured(SUPPORT)
    assert task.constants["support_phone"] == "+1 555 0100" and "unused" not in task.constants
    draft = task.render({**EMPTY, "intent": "contact_customer_service"})
    assert draft is not None and "+1 555 0100" in draft and "{{Customer Support Phone Number}}" not in draft
