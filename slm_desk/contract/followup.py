"""A follow-up question and its conversation: the input of a rewrite task, and the rewrites it may become.

The input is the earlier questions one per line, oldest first, and the follow-up as the last line; a one-line
input is a question with no history. A small model asked to rewrite freely pastes the history or rewrites the
wrong question (measured: below copying the follow-up unchanged). So a rewrite task offers it a narrow choice
instead, and the grammar enforces it: the follow-up unchanged (the safe answer), or the follow-up with one edit
whose words all come from the conversation: a pronoun replaced by a phrase of an earlier question ("Is it
treatable?" -> "Is throat cancer treatable?"), or such a phrase added ("What about in the US?" -> "What about
in the US of a physician's assistant?"). Code builds every candidate verbatim; the model only picks one.

A follow-up with a pronoun and a history must resolve it (in the CAsT pool, 3 of 166 such follow-ups stay as they
are): it is offered only with the pronoun replaced. A local model then chooses by each candidate's whole
log-likelihood (`Engine.rank`), plus a prior fitted on the pool: a pronoun more often means a phrase of the
question just before it than one of the first.
"""

from __future__ import annotations

import re

from slm_desk.contract.words import FUNCTION_WORDS

# a pronoun of the follow-up and how a phrase takes its place ("its cost" -> "throat cancer's cost")
PRONOUNS = {
    "it": "{}",
    "its": "{}'s",
    "they": "{}",
    "them": "{}",
    "their": "{}'s",
    "this": "{}",
    "that": "{}",
    "these": "{}",
    "those": "{}",
    "one": "{}",
    "he": "{}",
    "him": "{}",
    "his": "{}'s",
    "she": "{}",
    "her": "{}'s",
}
PHRASE_WORDS = 4  # longest phrase offered, in words
MAX_PHRASES = 40  # distinct phrases offered, so a long conversation keeps the grammar small
# nats added to a candidate's log-likelihood when its phrase is in the question just before the follow-up: fitted
# by conditional logit on the CAsT pool's follow-ups (3.98; 0.82 token F1 there from 3 to 6, 0.818 at 0)
RECENT_PHRASE = 4.0
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\u2019&.-]*[A-Za-z0-9]|[A-Za-z0-9]")


def split(text: str) -> tuple[list[str], str]:
    """The earlier questions (oldest first) and the follow-up of a rewrite input."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[:-1], lines[-1] if lines else ""


def phrases(history: list[str]) -> list[str]:
    """Runs of up to PHRASE_WORDS content words in the earlier questions, as written: the first question (where a
    conversation's topic usually is) first, then the newest back."""
    found: dict[str, str] = {}
    for question in history[:1] + history[:0:-1]:
        run: list[str] = []
        for match in [*WORD.finditer(question), None]:
            word = match.group() if match else ""
            if match and word.lower().removesuffix("'s") not in FUNCTION_WORDS:
                run.append(word)
                continue
            for i in range(len(run)):
                for j in range(i + 1, min(len(run), i + PHRASE_WORDS) + 1):
                    found.setdefault(" ".join(run[i:j]).lower(), " ".join(run[i:j]))
            run = []
    return list(found.values())[:MAX_PHRASES]


def _fill(form: str, phrase: str) -> str:
    """A phrase in a pronoun's place: "its" -> "throat cancer's", "their" -> "electric cars'"."""
    if form.endswith("'s") and phrase.lower().endswith("s"):
        return phrase + "'"
    return form.format(phrase)


def _edits(text: str) -> dict[str, str]:
    """Every rewrite the follow-up may become, in order, with the phrase its edit puts in ('' for none)."""
    history, followup = split(text)
    if not history:
        return {followup: ""}
    offered = phrases(history)
    pronouns = [m for m in re.finditer(r"[A-Za-z']+", followup) if m.group().lower() in PRONOUNS]
    replaced: dict[str, str] = {}
    for match in pronouns:
        form = PRONOUNS[match.group().lower()]
        for p in offered:
            replaced.setdefault(followup[: match.start()] + _fill(form, p) + followup[match.end() :], p)
    if replaced:  # a pronoun must be resolved: the follow-up as it is, or with a phrase added, is not offered
        return replaced
    stem, end = followup.rstrip("?.! "), followup[len(followup.rstrip("?.! ")) :].strip() or "?"
    options = {followup: ""}
    for p in offered:
        options.setdefault(f"{stem} of {p}{end}", p)
    return options


def candidates(text: str) -> list[str]:
    """Every rewrite the follow-up may become: with a pronoun, each way of replacing it; else the follow-up
    unchanged first, then with a phrase added."""
    return list(_edits(text))


def priors(text: str) -> dict[str, float]:
    """Nats each candidate gets before the model's log-likelihood: RECENT_PHRASE where its phrase is in the
    question just before the follow-up."""
    history, _ = split(text)
    previous = history[-1].lower() if history else ""
    return {
        option: RECENT_PHRASE if phrase and _contains(previous, phrase.lower()) else 0.0
        for option, phrase in _edits(text).items()
    }


def _contains(text: str, phrase: str) -> bool:
    return re.search(r"(?<![a-z0-9])" + re.escape(phrase) + r"(?![a-z0-9])", text) is not None
