"""A task's grammar compiles in llama.cpp and admits only JSON, whatever its enum values and string limits hold.

llama-cpp-python's converter left a backslash unescaped in a literal (a `"` in an allowed reply broke every run),
let raw control characters through (answers JSON then refused), and wrote long `maxLength` as nested rules llama.cpp
refuses. The bundled model's vocabulary and engine are real; the tests are marked `model`."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from slm_desk.models import grammar

pytestmark = pytest.mark.model

# what a task file may hold in a value: quotes, backslashes, control characters, any unicode
AWKWARD = st.text(
    alphabet=st.one_of(st.sampled_from(list('"\\\n\t\r\x00\x01\x1f\x7f{}[]:,')), st.characters(codec="utf-8")),
    min_size=1,
    max_size=24,
)
ENUMS = st.lists(AWKWARD, min_size=1, max_size=5, unique=True).map(lambda values: {"enum": values})
STRINGS = st.builds(
    lambda low, extra: {"type": "string", "minLength": low, "maxLength": low + extra},
    st.integers(0, 3),
    st.integers(1, 5000),
)


def _object(field: dict) -> dict:
    return {"type": "object", "properties": {"v": field}, "required": ["v"], "additionalProperties": False}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(ENUMS, STRINGS))
def test_any_enum_or_string_limit_compiles_in_llama_cpp(field: dict) -> None:
    assert grammar.compiles(grammar.to_gbnf(_object(field), ["v"]))
    # what may remain is a character no token can write (U+BCA46 compiles, then no token matches): named, per value
    assert all("cannot write the allowed value" in p for p in grammar.problems(_object(field)))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(ENUMS, STRINGS.map(lambda s: {**s, "maxLength": min(s["maxLength"], 12)})),
    st.sampled_from(["json", "values"]),
)
def test_what_the_model_writes_under_any_such_grammar_is_json_the_schema_accepts(
    engine, field: dict, mode: str
) -> None:
    schema = _object(field)
    assume(not grammar.problems(schema))  # `tasks check` refuses the rest, naming the value
    messages = [{"role": "user", "content": "Answer with a JSON object whose v is a short word."}]
    made = engine.generate(engine.tokenize(engine.render(messages)), schema, 40, mode=mode)
    assert made.finish_reason == "stop", made.text
    jsonschema.validate(json.loads(made.text), schema)  # parses: no raw control character, every quote escaped


def test_a_value_no_token_can_write_is_an_error_never_an_abort(engine) -> None:
    """llama.cpp aborts the process when a token its grammar refused is accepted; the decoder took the likeliest
    of all-refused tokens. Now it is a named error, and `tasks check` names the value first."""
    from slm_desk.errors import RuntimeFailure

    schema = _object({"enum": ["\U000bca46"]})
    assert "cannot write the allowed value" in grammar.problems(schema)[0]
    messages = [{"role": "user", "content": "Answer."}]
    with pytest.raises(RuntimeFailure, match="allows no token"):
        engine.generate(engine.tokenize(engine.render(messages)), schema, 20, mode="json")


def test_a_control_character_is_refused_inside_a_string(engine) -> None:
    """The converter's `[^"\\\\]` admitted a raw newline or tab inside a JSON string, which JSON then refused."""
    import ctypes

    import llama_cpp

    gbnf = grammar.to_gbnf(_object({"type": "string", "maxLength": 2000}), ["v"])
    sampler = llama_cpp.llama_sampler_init_grammar(engine._vocab, gbnf.encode(), b"root")
    try:
        for token in engine._llm.tokenize(b'{"v": "', add_bos=False, special=False):
            llama_cpp.llama_sampler_accept(sampler, token)
        pieces = {"\n": None, "\t": None, "a": None}
        for piece in pieces:
            pieces[piece] = engine._llm.tokenize(piece.encode(), add_bos=False, special=False)[0]
        data = (llama_cpp.llama_token_data * len(pieces))(
            *(llama_cpp.llama_token_data(t, 1.0, 0.0) for t in pieces.values())
        )
        array = llama_cpp.llama_token_data_array(data=data, size=len(pieces), selected=-1, sorted=False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        allowed = {piece: data[i].logit > -1e30 for i, piece in enumerate(pieces)}
    finally:
        llama_cpp.llama_sampler_free(sampler)
    assert allowed == {"\n": False, "\t": False, "a": True}


TASK = """description = "a reply chosen from fixed texts"
instructions = "Choose the reply."
max_tokens = 64
schema = '''{schema}'''
"""


@pytest.mark.parametrize(
    "field",
    [
        {"enum": ['Press "Save" to keep it.', "Open C:\\\\Users\\\\me", "No."]},
        {"type": "string", "minLength": 1, "maxLength": 1500},
    ],
    ids=["a-quote-and-a-backslash-in-a-reply", "maxLength-1500"],
)
def test_a_task_file_that_used_to_fail_on_every_input_runs(cli, slm_home: Path, field: dict) -> None:
    tasks = slm_home / "config" / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "replies.toml").write_text(TASK.format(schema=json.dumps(_object(field))), encoding="utf-8")
    checked = cli("tasks", "check", "replies")
    assert checked.returncode == 0 and "llama.cpp grammar" in checked.stdout, checked.stderr
    ran = cli("run", "replies", "--input", "How do I keep my changes?", "--accept-at", "0")
    assert ran.returncode in (0, 3, 4), ran.stderr  # answered (3: invalid after the retry, never a grammar failure)
    assert "could not compile" not in ran.stderr and "doctor" not in ran.stderr
    [envelope] = ran.envelopes
    assert envelope["valid"] and "Invalid control character" not in json.dumps(envelope["errors"])
