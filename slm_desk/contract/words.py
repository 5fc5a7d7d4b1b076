"""Words in a text, for the checks and metrics of free-text fields: content words and token F1.

A content word is a word that carries a fact (a name, a noun, a number), not a function word or a pronoun.
"Every content word of a rewrite appears in the conversation" is what keeps a rewrite from inventing facts;
token F1 (SQuAD's, over lower-cased words) is how a free-text answer is scored against a gold one.
"""

from __future__ import annotations

import re
from collections import Counter

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
FUNCTION_WORDS = frozenset(
    """
    a an the and or but nor so yet if then than as of to in on at by for from with without into onto about over
    under after before between through during up down out off again further once here there all any both each few
    more most other some such no not only own same too very just also can could will would shall should may might
    must do does did done doing be is are was were been being am have has had having get gets got
    i me my mine myself you your yours yourself we us our ours ourselves he him his himself she her hers herself
    it its itself they them their theirs themselves one ones this that these those
    what which who whom whose when where why how whats what's whos who's hows how's wheres where's
    tell know please ok okay thanks thank hi hello
    """.split()  # noqa: SIM905  # a word list reads better as words
)


def words(text: str) -> list[str]:
    """Lower-cased words, a possessive 's dropped ("physician's" -> "physician")."""
    return [w.removesuffix("'s") for w in WORD.findall(text.lower().replace("\u2019", "'"))]


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in FUNCTION_WORDS]


def token_f1(predicted: str, gold: str) -> float:
    """Token F1 of two texts (1.0 when both have no words)."""
    a, b = words(predicted), words(gold)
    if not a or not b:
        return float(a == b)
    common = sum((Counter(a) & Counter(b)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def rouge_l(predicted: str, reference: str) -> float:
    """ROUGE-L F1 of two texts: their longest common subsequence of lower-cased words, as a share of each."""
    a, b = words(predicted), words(reference)
    if not a or not b:
        return float(a == b)
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    common = previous[-1]
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)
