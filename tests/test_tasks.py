"""Task files: built-ins load, users can override, and bad files are refused with the reason."""

from __future__ import annotations

import pytest

from slm_desk.contract import tasks
from slm_desk.contract.tasks import load_task
from slm_desk.contract.validation import validate_output
from slm_desk.errors import TaskError, UsageError

BUILTINS = {"rewrite-query", "extract-ticket", "extract-booking", "draft-reply", "route-ticket", "guard"}


def test_all_builtin_tasks_load_with_examples() -> None:
    assert set(tasks.task_names()) >= BUILTINS
    for name in BUILTINS:
        task = tasks.load_task(name)
        assert task.examples, name
        assert task.description and task.instructions


def test_extract_ticket_contract_matches_the_spec() -> None:
    task = tasks.load_task("extract-ticket")
    props = task.output_schema["properties"]
    assert props["issue_type"]["enum"] == ["billing", "technical", "account", "other"]
    assert props["urgency"]["enum"] == ["low", "medium", "high"]
    ok = '{"issue_type": "billing", "invoice_id": "INV-8821", "urgency": "high"}'
    assert validate_output(task, ok, "duplicate charge on INV-8821")[1] == []
    invented = validate_output(task, ok, "duplicate charge on my last invoice")[1]
    assert invented == ["invoice_id 'INV-8821' does not appear in the input; copy it exactly or use null"]
    assert validate_output(task, ok.replace("INV-8821", "8821"), "INV-8821 8821")[1]


def test_route_ticket_marks_fraud_high_risk() -> None:
    assert tasks.load_task("route-ticket").risk_of("route", "fraud_or_security") == "high"


def test_user_task_overrides_builtin(user_task) -> None:
    user_task("forced-fail", as_name="guard")
    assert tasks.task_names()["guard"] == "user"
    assert tasks.load_task("guard").fields == ["name"]


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(UsageError) as caught:
        tasks.load_task("no-such-task")
    assert "extract-ticket" in caught.value.hint


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("malformed", "is not valid TOML"),
        ("unenforceable", "schema keyword 'minimum'"),
        ("lying-example", "example 1"),
    ],
)
def test_bad_task_files_are_refused(user_task, file: str, expected: str) -> None:
    user_task(file)
    with pytest.raises(TaskError) as caught:
        tasks.load_task(file)
    assert expected in str(caught.value)


def test_labels_must_match_the_schema_enum(user_task) -> None:
    path = user_task("forced-fail", as_name="mislabelled")
    path.write_text(path.read_text().replace("[[validators]]", '[labels.name]\nMaria = "low"\n\n[[validators]]', 1))
    with pytest.raises(TaskError, match="labels for 'name' must list exactly the schema's enum"):
        tasks.load_task("mislabelled")


def test_validator_naming_unknown_field_is_refused(user_task) -> None:
    path = user_task("forced-fail", as_name="typo")
    path.write_text(path.read_text().replace('fields = ["name"]', 'fields = ["nmae"]'))
    with pytest.raises(TaskError, match="unknown field 'nmae'"):
        tasks.load_task("typo")


def test_an_id_field_is_narrowed_to_the_ids_the_input_holds() -> None:
    task = load_task("extract-ticket")
    assert task.for_input("The app crashes on start").output_schema["properties"]["invoice_id"] == {"type": "null"}
    both = task.for_input("Refund INV-12, not INV-7 (INV-12 again)")
    assert both.output_schema["properties"]["invoice_id"] == {"enum": ["INV-12", "INV-7", None]}
    assert both.fields == task.fields and both.name == task.name and both.version == task.version
    assert task.for_input("The app crashes on start").forced_fields() == ["invoice_id"] and both.forced_fields() == []
    assert task.output_schema["properties"]["invoice_id"]["anyOf"]  # the contract itself is unchanged
    route = load_task("route-ticket")
    assert route.for_input("INV-1 is late") is route  # nothing to narrow: the same task


def test_the_model_is_asked_under_the_narrowed_schema_and_a_forced_field_is_sure() -> None:
    from slm_desk.judge.pipeline import Pipeline
    from tests.scripted import ScriptedBackend

    seen: list[dict] = []

    class Recording(ScriptedBackend):
        def complete(self, task, messages, on_text=None, cancelled=None):  # type: ignore[no-untyped-def]
            seen.append(task.output_schema["properties"]["invoice_id"])
            return super().complete(task, messages, on_text, cancelled)

    backend = Recording(lambda text: {"issue_type": "technical", "invoice_id": None, "urgency": "low"}, confidence=0.3)
    result = Pipeline(load_task("extract-ticket"), backend).answer("The export button does nothing")
    assert seen == [{"type": "null"}] and result.valid
    assert result.field_confidence == {"issue_type": 0.3, "invoice_id": 1.0, "urgency": 0.3}
