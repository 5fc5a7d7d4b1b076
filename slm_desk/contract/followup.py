"""A follow-up question and its conversation: the input of a rewrite task, and the rewrites it may become.

The input is the earlier questions one per line, oldest first, and the follow-up as the last line; a one-line
input is a question with no history. A small model asked to rewrite freely pastes the history or rewrites the
wrong question (measured: below copying the follow-up unchanged). So a rewrite task offers it a narrow choice
instead, and the grammar enforces it: the follow-up unchanged (the safe answer), or the follow-up with one edit
whose words all come from the conversation: a pronoun replaced by a phrase of an earlier question ("Is it
treatable?" -> "Is throat cancer treatable?"), or such a phrase added ("What about in the US?" -> "What about
in the US of a physician's assistant?"). Code builds every candidate verbatim; the model only picks one.
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


def candidates(text: str) -> list[str]:
    """Every rewrite the follow-up may become, the follow-up unchanged first."""
    history, followup = split(text)
    options = [followup]
    if not history:
        return options
    offered = phrases(history)
    for match in re.finditer(r"[A-Za-z']+", followup):
        form = PRONOUNS.get(match.group().lower())
        if form is not None:
            options += [followup[: match.start()] + _fill(form, p) + followup[match.end() :] for p in offered]
    stem, end = followup.rstrip("?.! "), followup[len(followup.rstrip("?.! ")) :].strip() or "?"
    options += [f"{stem} of {p}{end}" for p in offered]
    return list(dict.fromkeys(options))
