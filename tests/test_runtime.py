from __future__ import annotations

import pytest

from slm_desk.contract import prompt
from slm_desk.contract.tasks import load_task
from slm_desk.data.hardware import physical_cores
from slm_desk.errors import Cancelled, InputTooLong
from slm_desk.judge.pipeline import Pipeline

pytestmark = pytest.mark.model


def test_defaults_follow_the_machine(engine) -> None:
    import llama_cpp

    assert engine.threads == physical_cores() >= 1
    assert engine.gpu_layers == (-1 if llama_cpp.llama_supports_gpu_offload() else 0)
    assert engine.n_ctx == 2048


def test_prefix_is_a_token_prefix_of_every_prompt(engine) -> None:
    task = load_task("extract-ticket")
    prefix = engine.tokenize(engine.render(prompt.prefix_messages(task)))
    # the rendered prefix ends with an opened assistant turn; drop it and compare the rest
    full_a = engine.tokenize(engine.render(prompt.task_messages(task, "first input")))
    full_b = engine.tokenize(engine.render(prompt.task_messages(task, "second, different input")))
    common = next(i for i, (a, b) in enumerate(zip(full_a, full_b, strict=False)) if a != b)
    assert common >= len(prefix) - 5


def test_check_fits_refuses_instead_of_truncating(engine) -> None:
    with pytest.raises(InputTooLong, match="context window is 2048"):
        engine.check_fits(2000, 100)


def test_streaming_text_matches_the_result_and_cancel_stops(backend) -> None:
    runner = Pipeline(load_task("extract-ticket"), backend)
    pieces: list[str] = []
    result = runner.answer("Refund INV-3 please", on_text=pieces.append)
    assert "".join(pieces).startswith("{") and result.tokens.completion > 0
    with pytest.raises(Cancelled):
        runner.answer("Refund INV-3 please", cancelled=lambda: True)


def test_values_only_generation_samples_fewer_tokens_for_the_same_json(engine) -> None:
    """Keys and punctuation are evaluated as one forced batch; only values are sampled."""
    from slm_desk.models.values import values_only_supported

    task = load_task("extract-ticket")
    assert values_only_supported(task.output_schema)
    assert not values_only_supported({"type": "object", "properties": {"a": {"type": "string"}}})  # a is optional
    tokens = engine.tokenize(engine.render(prompt.task_messages(task, "Refund INV-3 please, charged twice")))
    values = engine.generate(tokens, task.output_schema, task.max_tokens, mode="values")
    whole = engine.generate(tokens, task.output_schema, task.max_tokens, mode="json")
    import json

    parsed = json.loads(values.text)
    assert list(parsed) == ["issue_type", "invoice_id", "urgency"]  # the schema's key order, every key present
    assert values.text.startswith('{"issue_type": ') and values.finish_reason == "stop"
    assert values.completion_tokens < whole.completion_tokens
    assert parsed["invoice_id"] == json.loads(whole.text)["invoice_id"] == "INV-3"


@pytest.mark.parametrize("task_name", ["route-ticket", "extract-ticket", "extract-booking", "guard", "draft-reply"])
def test_the_fast_greedy_path_chooses_every_token_as_llama_cpps_grammar_sampler(engine, task_name: str) -> None:
    """`Engine._greedy` (decoding.Greedy) checks the likeliest token against the grammar alone and filters every
    candidate only when it is refused; llama-cpp-python's sampler filters every candidate each time. At temperature
    0 they must choose the same tokens, on every built-in task's grammar (enums, ids narrowed to the input,
    nullable spans, slots)."""
    from slm_desk.data.evalset import builtin, read_jsonl

    task = load_task(task_name)
    for item in read_jsonl(builtin(task_name))[:4]:  # type: ignore[arg-type]
        generated = task.for_input(item["input"])
        tokens = engine.tokenize(engine.render(prompt.task_messages(task, item["input"])))
        grammar = engine.grammar(generated.output_schema)
        ours, theirs = [], []
        for token in engine._greedy(tokens, grammar):
            if engine._is_eog(engine._vocab, token) or len(ours) >= task.max_tokens:
                break
            ours.append(token)
        for token in engine._llm.generate(tokens, temp=0.0, grammar=grammar, reset=True):
            if engine._is_eog(engine._vocab, token) or len(theirs) >= task.max_tokens:
                break
            theirs.append(token)
        assert ours == theirs, (task_name, item["input"])


@pytest.mark.parametrize("task_name", ["route-ticket", "extract-ticket", "guard", "draft-reply"])
def test_writing_the_last_label_once_it_is_decided_changes_nothing(backend, task_name: str, monkeypatch) -> None:
    """The last value, a label: once one label alone fits what was sampled, the rest is written, not sampled. The
    answer, its per-field confidence and the decision are the same as sampling it to the end."""
    from slm_desk.data.evalset import builtin, read_jsonl
    from slm_desk.models import runtime

    task = load_task(task_name)
    runner = Pipeline(task, backend)
    for item in read_jsonl(builtin(task_name))[:5]:  # type: ignore[arg-type]
        # each from an empty KV cache: a prompt evaluated in other batches rounds its logits slightly differently
        monkeypatch.setattr(runtime, "FORCE_LAST_LABEL", True)
        backend.engine._llm.reset()
        written = runner.answer(item["input"])
        monkeypatch.setattr(runtime, "FORCE_LAST_LABEL", False)
        backend.engine._llm.reset()
        sampled = runner.answer(item["input"])
        assert (written.output, written.rejected_output, written.valid) == (
            sampled.output,
            sampled.rejected_output,
            sampled.valid,
        ), item["input"]
        assert written.field_confidence == pytest.approx(sampled.field_confidence, rel=1e-4, abs=1e-6)
        assert written.tokens.completion <= sampled.tokens.completion
