"""rewrite-followup's contract: the words a rewrite may use, the edits the grammar offers, and the text metrics
that score it: pure functions and the real task file, and one answer of the bundled model."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slm_desk.contract.calibration import is_correct
from slm_desk.contract.followup import PRONOUNS, RECENT_PHRASE, candidates, phrases, priors, split
from slm_desk.contract.tasks import load_task, parse_task, task_text
from slm_desk.contract.validators import Grounded, KeepsLastLine
from slm_desk.contract.words import content_words, token_f1
from slm_desk.data.config import CostsConfig
from slm_desk.errors import TaskError
from slm_desk.learn.metrics import compute, regressions

TASK = load_task("rewrite-followup")
TALK = "What is throat cancer?\nIs it treatable?"


def test_token_f1_by_hand() -> None:
    assert token_f1("Is throat cancer treatable?", "is throat cancer treatable") == 1.0
    assert token_f1("Is it treatable?", "Is throat cancer treatable?") == 2 * (2 / 3 * 2 / 4) / (2 / 3 + 2 / 4)
    assert token_f1("", "") == 1.0 and token_f1("", "x") == 0.0 and token_f1("a b", "c d") == 0.0
    assert content_words("What is a physician's assistant?") == ["physician", "assistant"]


def test_grounded_names_each_invented_word() -> None:
    rule = Grounded(kind="grounded", fields=["query"])
    assert rule.check({"query": "Is throat cancer treatable?"}, TALK, None) == []
    assert rule.check({"query": "Is lung cancer curable?"}, TALK, None) == [
        "query uses 'lung', 'curable', which the input does not contain"
    ]


def test_keeps_last_line_names_each_dropped_word() -> None:
    rule = KeepsLastLine(kind="keeps_last_line", fields=["query"])
    assert rule.check({"query": "Is throat cancer treatable?"}, TALK, None) == []  # 'it' is no content word
    assert rule.check({"query": "What is throat cancer?"}, TALK, None) == [
        "query drops 'treatable' of the last line; keep its words"
    ]


def test_the_input_is_the_history_then_the_follow_up() -> None:
    assert split(" What is throat cancer?\n\nIs it treatable? \n") == (["What is throat cancer?"], "Is it treatable?")
    assert split("Is it treatable?") == ([], "Is it treatable?")
    assert candidates("Is it treatable?") == ["Is it treatable?"]  # nothing to resolve: the one answer
    offered = candidates(TALK)
    assert "Is throat cancer treatable?" in offered and "Is cancer treatable?" in offered
    assert "Is it treatable?" not in offered and not any(" of " in o for o in offered)  # the pronoun must go
    assert "Are electric cars' batteries safe?" in candidates("Tell me about electric cars.\nAre their batteries safe?")
    plain = candidates("What is throat cancer?\nHow much does the treatment cost?")
    assert plain[0] == "How much does the treatment cost?"  # no pronoun: unchanged first, the safe answer
    assert "How much does the treatment cost of throat cancer?" in plain


def test_a_phrase_of_the_question_just_before_is_favoured() -> None:
    text = "What is the keto diet?\nWhat is intermittent fasting?\nHow is it related to keto?"
    prior = priors(text)
    assert list(prior) == candidates(text)
    assert prior["How is intermittent fasting related to keto?"] == RECENT_PHRASE
    assert prior["How is keto diet related to keto?"] == 0.0  # the first question's topic: no bonus
    assert prior["How is fasting related to keto?"] == RECENT_PHRASE
    assert priors("What is the capital of Peru?") == {"What is the capital of Peru?": 0.0}
    assert (
        priors("What is throat cancer?\nHow much does it cost?")["How much does throat cancer cost?"] == RECENT_PHRASE
    )


@given(
    st.lists(st.text(alphabet="abcdefgh ?'\n", max_size=40), min_size=1, max_size=5),
    st.text(alphabet="abcdefgh ?'itsonhe", min_size=1, max_size=40).filter(str.strip),
)
def test_every_candidate_keeps_the_follow_up_and_invents_nothing(history: list[str], followup: str) -> None:
    text = "\n".join([*history, followup.replace("\n", " ")])
    offered = candidates(text)
    for query in offered:
        output = {"query": query}
        assert Grounded(kind="grounded", fields=["query"]).check(output, text, None) == []
        assert KeepsLastLine(kind="keeps_last_line", fields=["query"]).check(output, text, None) == []
    earlier, last = split(text)
    has_pronoun = any(word.lower() in PRONOUNS for word in re.findall(r"[A-Za-z']+", last))
    assert (last not in offered) == (has_pronoun and bool(earlier) and bool(phrases(earlier)))
    assert list(priors(text)) == offered and set(priors(text).values()) <= {0.0, RECENT_PHRASE}


def test_the_grammar_offers_exactly_the_candidates_and_the_examples_are_among_them() -> None:
    narrowed = TASK.for_input(TALK)
    assert narrowed.output_schema["properties"]["query"] == {"enum": candidates(TALK)}
    assert TASK.for_input("Is it treatable?").forced_fields() == ["query"]  # no history: copying is certain
    for example in TASK.examples:
        assert json.loads(example.output)["query"] in candidates(example.input), example.input


def test_a_task_file_cannot_set_the_per_input_prior() -> None:
    text, source = task_text("rewrite-followup")
    with pytest.raises(TaskError, match="choice_prior"):
        parse_task(text.replace("max_tokens = 96", "max_tokens = 96\nchoice_prior = {a = 1.0}"), "x", source)
    assert TASK.for_input(TALK).choice_prior == priors(TALK) and TASK.choice_prior == {}


def _record(text: str, gold: str, answer: str | None) -> dict:
    return {
        "input": text,
        "gold": {"query": gold},
        "output": None if answer is None else {"query": answer},
        "valid": answer is not None,
        "valid_first": answer is not None,
        "decision": "accept" if answer else "review",
        "escalated": False,
        "latency_ms": 10,
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "larger_latency_ms": None,
    }


def test_text_metrics_by_hand() -> None:
    records = [
        _record(TALK, "Is throat cancer treatable?", "Is throat cancer treatable?"),  # right
        _record(TALK, "Is throat cancer treatable?", "Is it treatable?"),  # F1 0.571
        _record("Who is Ada?\nWhat is Python?", "What is Python?", "What is Python?"),  # left alone: right
        _record("Who is Ada?\nWhat is Rust?", "What is Rust?", "What is Rust of Ada?"),  # changed what was fine
        _record("Who is Ada?\nWhat is Go?", "What is Go?", None),  # unanswered: F1 0
    ]
    text = compute(TASK, records, 1.0, CostsConfig())["text"]["query"]
    f1 = (
        1
        + token_f1("Is it treatable?", "Is throat cancer treatable?")
        + 1
        + token_f1("What is Rust of Ada?", "What is Rust?")
    ) / 5
    assert text["n"] == 5 and abs(text["token_f1"] - f1) < 1e-9
    assert text["exact_match"] == 2 / 5 and text["unchanged_gold"] == 3 and text["unchanged_kept"] == 1 / 3
    assert text["right_at_bar"] == 2 / 5  # "What is Rust of Ada?" scores 0.75 against its gold: below 0.8
    worse = compute(TASK, records[1:], 1.0, CostsConfig())
    assert any(line.startswith("token F1 of query") for line in regressions({"text": {"query": text}}, worse))


def test_a_text_field_is_right_at_the_task_s_bar() -> None:
    gold = {"query": "Is throat cancer treatable?"}
    assert is_correct({"query": "is throat cancer treatable"}, gold, "query", TASK.match_bar("query"))
    assert not is_correct({"query": "Is it treatable?"}, gold, "query", TASK.match_bar("query"))
    assert not is_correct({"query": "is throat cancer treatable"}, gold, "query")  # exact, without a bar
    assert TASK.match_bar("query") == 0.8 and load_task("route-ticket").match_bar("route") is None


@pytest.mark.model
def test_the_bundled_model_answers_one_of_the_offered_rewrites_at_the_first_attempt(backend) -> None:  # type: ignore[no-untyped-def]
    from slm_desk.judge.pipeline import Pipeline

    pipeline = Pipeline(TASK, backend)
    text = "What is a physician's assistant?\nWhat does it cost?"
    result = pipeline.answer(text)
    assert result.valid and result.attempts == 1 and result.output is not None
    assert result.output["query"] in candidates(text)
    alone = pipeline.answer("What is the capital of Peru?")
    assert alone.output == {"query": "What is the capital of Peru?"} and alone.field_confidence == {"query": 1.0}


@pytest.mark.model
def test_the_local_model_chooses_the_likeliest_whole_rewrite_with_its_prior(backend, engine) -> None:  # type: ignore[no-untyped-def]
    import math

    from slm_desk.contract import prompt
    from slm_desk.errors import Cancelled

    narrowed, messages = TASK.for_input(TALK), prompt.task_messages(TASK, TALK)
    options = candidates(TALK)
    answers = [json.dumps({"query": option}) for option in options]
    tokens = engine.tokenize(engine.render(messages))
    continuations = [[*engine.tokenize_plain(answer), engine.eos] for answer in answers]
    ranking = engine.rank(tokens, continuations)
    for continuation, score in list(zip(continuations, ranking.scores, strict=True))[:3]:  # token by token, by hand
        by_hand = sum(engine.next_logprobs(tokens + continuation[:i])[t] for i, t in enumerate(continuation))
        # batched and one-token decoding of a quantized model round differently, most on unlikely tokens
        assert abs(score - by_hand) <= 0.05 * abs(by_hand) + 0.01
    totals = [s + narrowed.choice_prior[o] for s, o in zip(ranking.scores, options, strict=True)]
    best = max(range(len(options)), key=totals.__getitem__)
    completion = backend.complete(narrowed, messages)
    assert completion.text == answers[best] and completion.tokens.prompt == len(tokens)
    share = math.exp(ranking.scores[best]) / sum(math.exp(score) for score in ranking.scores)  # the model's own
    assert completion.fields is not None and abs(completion.fields["query"] - share) < 1e-6
    with pytest.raises(Cancelled):
        backend.complete(narrowed, messages, cancelled=lambda: True)


def test_null_kept_counts_the_items_whose_gold_is_null() -> None:
    ticket = load_task("extract-ticket")
    gold = [{"issue_type": "other", "invoice_id": None, "urgency": "low"}] * 3 + [
        {"issue_type": "billing", "invoice_id": "INV-1", "urgency": "low"}
    ]
    outputs = [
        {"issue_type": "other", "invoice_id": None, "urgency": "low"},
        {"issue_type": "billing", "invoice_id": "INV-77", "urgency": "low"},  # an id the ticket does not name
        None,  # unanswered: not counted as null
        {"issue_type": "billing", "invoice_id": None, "urgency": "low"},  # gold has an id: not in the rate
    ]
    records = [_record("x", "x", None) | {"gold": g, "output": o} for g, o in zip(gold, outputs, strict=True)]
    assert compute(ticket, records, 1.0, CostsConfig())["null_kept"] == {"invoice_id": 1 / 3}
