"""The words a compressed answer may add that its input lacks (learn/addwords.py): only common answer words, never a
number, only from a measured probability, and only where the tagger's inner folds say adding helps."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from slm_desk.contract.words import words
from slm_desk.learn.addwords import AddedWords
from slm_desk.learn.compress import KeepDrop

PARTS = ["zeta", "omega", "delta", "sigma", "kappa", "theta", "lambda", "gamma"]
WHEN = ["reboot", "upgrade", "login", "restart", "resize"]


def _pool() -> tuple[list[str], list[str]]:
    """Reports whose titles say "Fix" or "Support", words no report holds, and a version no report names."""
    texts, targets = [], []
    for n in range(48):
        part, when = PARTS[n % len(PARTS)], WHEN[n % len(WHEN)]
        if n % 2:
            texts.append(f"the {part} widget is broken after {when} on the cluster")
            targets.append(f"Fix {part} widget in release 3")
        else:
            texts.append(f"users cannot {when} the {part} files from the shell")
            targets.append(f"Support {when} of {part} files")
    return texts, targets


def test_a_tagger_adds_the_words_its_pool_s_answers_say_and_its_inputs_do_not() -> None:
    texts, targets = _pool()
    tagger = KeepDrop.fit("title", texts, targets)
    assert tagger.adds is not None and tagger.add_at is not None  # the inner folds measured adding better
    assert "3" not in tagger.adds.vocabulary  # a number the input does not hold is never written
    [(broken, _), (cannot, _)] = tagger.predict(
        ["the omega widget is broken after reboot", "users cannot resize the kappa files"]
    )
    assert words(broken["title"])[0] == "fix" and "support" not in words(broken["title"])  # said first, as answers do
    assert words(cannot["title"])[0] == "support" and "fix" not in words(cannot["title"])
    assert "3" not in words(broken["title"])


def test_a_tagger_whose_answers_are_all_copied_adds_nothing() -> None:
    texts, _ = _pool()
    copied = [" ".join(text.split()[1:4]) for text in texts]
    tagger = KeepDrop.fit("title", texts, copied)
    assert tagger.add_at is None  # its word models are only read, as features
    [(answer, _)] = tagger.predict(["the omega widget is broken after reboot"])
    assert set(words(answer["title"])) <= set(words("the omega widget is broken after reboot"))


def test_a_tagger_pickled_before_added_words_answers_as_it_did() -> None:
    texts, targets = _pool()
    tagger = KeepDrop._fitted("title", texts, targets, 0.3, True)  # neither reads word models nor adds words
    before = KeepDrop.__new__(KeepDrop)
    before.__dict__.update({k: v for k, v in tagger.__dict__.items() if k not in {"adds", "add_at", "reads_told"}})
    asked = ["the omega widget is broken after reboot", "users cannot resize the kappa files"]
    assert before.predict(asked) == tagger.predict(asked)
    [(answer, _), _] = before.predict(asked)
    assert set(words(answer["title"])) <= set(words(asked[0]))


VOCABULARY = ["fix", "support", "in", "abfs"]


@given(
    answer=st.lists(st.sampled_from(["fix", "NPE", "in", "DataNode", "x"]), max_size=5).map(" ".join),
    probabilities=st.lists(st.floats(0, 1), min_size=4, max_size=4),
    threshold=st.floats(0, 1),
)
def test_an_answer_gains_only_likely_words_it_lacks_and_loses_none(
    answer: str, probabilities: list[float], threshold: float
) -> None:
    adds = AddedWords(VOCABULARY, [0.0, 0.1, 0.6, 0.0], None, None, np.zeros(4))
    out = words(adds.added(answer, np.asarray(probabilities), threshold))
    assert " ".join(words(answer)) in " ".join(out)  # the kept words, in order, untouched
    new = [w for w in out if w not in words(answer)]
    assert sorted(new) == sorted(
        {w for w, p in zip(VOCABULARY, probabilities, strict=True) if p >= threshold and w not in words(answer)}
    )
    assert len(new) == len(set(new))  # each once
