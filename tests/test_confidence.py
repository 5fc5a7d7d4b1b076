"""Confidence from the bundled model's own token probabilities."""

from __future__ import annotations

import json
import math

import pytest

from slm_desk.contract import prompt
from slm_desk.contract.tasks import load_task
from slm_desk.judge.pipeline import Pipeline
from slm_desk.models.confidence import field_confidences, value_spans


def test_value_spans() -> None:
    text = '{ "a": "x y", "b":null ,"c": 3, "d": {"e": [1, "}"]} }'
    spans = value_spans(text)
    assert {k: text[s:e] for k, (s, e) in spans.items()} == {
        "a": '"x y"',
        "b": "null",
        "c": "3",
        "d": '{"e": [1, "}"]}',
    }


def generate(engine, task_name: str, text: str):
    task = load_task(task_name)
    tokens = engine.tokenize(engine.render(prompt.task_messages(task, text)))
    return task, engine.generate(tokens, task.output_schema, task.max_tokens)


@pytest.mark.model
def test_label_confidence_is_renormalised_over_the_allowed_labels(engine) -> None:
    """The recorded fast path equals a from-scratch computation: decode at every branch point of the labels."""
    task, generation = generate(engine, "route-ticket", "Someone stole my card and bought things with it")
    confidence = field_confidences(task, generation, engine)["route"]
    labels = task.output_schema["properties"]["route"]["enum"]
    chosen = json.loads(generation.text)["route"]
    start = generation.text.index('"', generation.text.index(":"))
    offsets = [sum(len(p) for p in generation.pieces[:i]) for i in range(len(generation.pieces))]
    first = max(i for i, o in enumerate(offsets) if o <= start)
    lead = generation.text[offsets[first] : start]
    candidates = {label: engine.tokenize_plain(f'{lead}"{label}"') for label in labels}
    base = generation.prompt + generation.tokens[:first]
    expected, path = 1.0, candidates[chosen]
    for depth in range(len(path)):
        alive = [c for c in candidates.values() if c[:depth] == path[:depth]]
        options = {c[depth] for c in alive if len(c) > depth}
        if len(options) > 1:
            logprobs = engine.next_logprobs(base + path[:depth])  # a fresh decode, not the recorded one
            total = sum(math.exp(logprobs[t]) for t in options)
            expected *= math.exp(logprobs[path[depth]]) / total
    assert confidence == pytest.approx(expected, rel=1e-4)
    assert 0.0 < confidence <= 1.0


@pytest.mark.model
def test_extracted_field_confidence_comes_from_value_tokens_only(engine) -> None:
    task, generation = generate(engine, "extract-ticket", "Customer reports duplicate charge on invoice INV-8821.")
    fields = field_confidences(task, generation, engine)
    assert set(fields) == {"issue_type", "invoice_id", "urgency"}
    start = generation.text.index("INV-8821")
    value_tokens = [
        p
        for i, p in enumerate(generation.probs)
        if start < sum(len(x) for x in generation.pieces[: i + 1])
        and sum(len(x) for x in generation.pieces[:i]) < start + len("INV-8821")
    ]
    assert fields["invoice_id"] == pytest.approx(min(value_tokens))


@pytest.mark.model
def test_envelope_confidence_is_real_and_changes_with_the_input(backend) -> None:
    runner = Pipeline(load_task("route-ticket"), backend)
    results = [
        runner.answer(text)
        for text in (
            "Someone stole my card and bought things with it",
            "Where is my new card? It has not arrived",
            "How old do I have to be to open an account?",
        )
    ]
    confidences = [r.confidence for r in results]
    assert all(c is not None and 0.0 <= c <= 1.0 for c in confidences)
    assert len({round(c, 6) for c in confidences}) == 3, confidences
    assert all(r.field_confidence and min(r.field_confidence.values()) == r.confidence for r in results)
