"""The span tagger: a linear-chain CRF over the input's tokens that copies fields out of the input verbatim.

For a field the task requires copied from the input (the `verbatim` validator), each token is tagged B-field,
I-field or O (BIO tags) from lexical, shape and neighbour features (sklearn-crfsuite). A field's value is the
text between its first and last tagged token, cut from the input itself, so it is verbatim by construction.
Per-field confidence comes from the CRF's marginals: for a value, the least sure tag of its tokens; for a null
field, the least sure "not this field" over every token. The isotonic map calibrates both like any confidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

# digits and letters apart ("7pm" -> "7", "pm"), so a value such as "12:30" is a run of whole tokens of "12:30PM"
TOKEN = re.compile(r"\d+|[^\W\d_]+|[^\w\s]|_")
WINDOW = 3
# small closed word classes that booking, ticket and support texts share; the CRF learns what each means per field
WORD_CLASSES = {
    "num": "one two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty half quarter",
    "month": "january february march april may june july august september october november december"
    " jan feb mar apr jun jul aug sep sept oct nov dec",
    "day": "monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun"
    " today tomorrow tonight yesterday weekend week",
    "time": "am pm noon midnight morning evening afternoon night lunch dinner breakfast clock oclock ish",
}
CLASS_OF = {word: name for name, words in WORD_CLASSES.items() for word in words.split()}

Token = tuple[str, int, int]  # text, start, end (character offsets into the input)
# a text's tokens and their features; `train` memoises it, as each item is featurised once per fold otherwise
Featurized = tuple[list[Token], list[dict[str, Any]]]
Featurize = Callable[[str], Featurized]


def tokens(text: str) -> list[Token]:
    return [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text)]


@lru_cache(maxsize=1 << 16)  # words repeat: a pool of 400 inputs has ~40,000 windowed lookups of ~3,000 words
def _shape(word: str) -> str:
    shape = re.sub("[A-Z]", "X", re.sub("[a-z]", "x", re.sub("[0-9]", "d", word)))
    return re.sub(r"(.)\1+", r"\1\1", shape)


def _word_class(word: str) -> str:
    return "digits" if word.isdigit() else CLASS_OF.get(word.lower(), "")


def features(toks: list[Token]) -> list[dict[str, Any]]:
    lower = [t[0].lower() for t in toks]
    rows = []
    for i, (word, start, _) in enumerate(toks):
        w = lower[i]
        row: dict[str, Any] = {
            "bias": 1.0,
            "w": w,
            "shape": _shape(word),
            "p2": w[:2],
            "p3": w[:3],
            "s2": w[-2:],
            "s3": w[-3:],
            "upper": word[:1].isupper(),
            "class": _word_class(word),
            "len": min(len(word), 6),
            "glued": i > 0 and toks[i - 1][2] == start,  # no space before: "7pm", "12:30"
            "pos": min(i, 5),
            "rpos": min(len(toks) - 1 - i, 5),
            "ntok": min(len(toks), 6),
        }
        for d in range(-WINDOW, WINDOW + 1):
            j = i + d
            if d == 0:
                continue
            if 0 <= j < len(toks):
                row[f"{d}w"], row[f"{d}shape"], row[f"{d}class"] = lower[j], _shape(toks[j][0]), _word_class(toks[j][0])
                if abs(d) == 1:
                    row[f"{d}upper"], row[f"{d}s3"] = toks[j][0][:1].isupper(), lower[j][-3:]
            else:
                row[f"{d}w"] = "<pad>"
        if i > 0:
            row["bigram-"] = f"{lower[i - 1]}|{w}"
        if i > 1:
            row["bigram--"] = f"{lower[i - 2]}|{lower[i - 1]}"
        if i + 1 < len(toks):
            row["bigram+"] = f"{w}|{lower[i + 1]}"
        rows.append(row)
    return rows


def featurize(text: str) -> Featurized:
    toks = tokens(text)
    return toks, features(toks)


def bio_tags(text: str, output: dict[str, Any], fields: list[str], toks: list[Token]) -> list[str] | None:
    """The gold tags of one labelled item, or None when a value is not a span of the input (it cannot be taught)."""
    tags = ["O"] * len(toks)
    starts = {t[1] for t in toks}
    ends = {t[2] for t in toks}
    for field in fields:
        value = output.get(field)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            return None
        value = value.strip()
        found = [m.start() for m in re.finditer(re.escape(value), text)]
        if not found:
            return None
        aligned = [s for s in found if s in starts and s + len(value) in ends]  # "5" in "for 5", not in "06:15"
        lo = (aligned or found)[0]
        hi = lo + len(value)
        inside = [k for k, t in enumerate(toks) if t[1] < hi and t[2] > lo]
        for n, k in enumerate(inside):
            tags[k] = ("B-" if n == 0 else "I-") + field
    return tags


class SpanTagger:
    """One CRF for every span field of a task (a token belongs to at most one field)."""

    def __init__(self, fields: list[str], crf: Any) -> None:
        self.fields = fields
        self.crf = crf

    @classmethod
    def fit(
        cls, fields: list[str], texts: list[str], outputs: list[dict[str, Any]], featurized: Featurize = featurize
    ) -> SpanTagger:
        import sklearn_crfsuite

        x, y = [], []
        for text, output in zip(texts, outputs, strict=True):
            toks, feats = featurized(text)
            tags = bio_tags(text, output, fields, toks)
            if tags is not None and toks:
                x.append(feats)
                y.append(tags)
        crf = sklearn_crfsuite.CRF(
            algorithm="lbfgs", c1=0.2, c2=0.05, max_iterations=150, all_possible_transitions=True
        )
        crf.fit(x, y)
        return cls(fields, crf)

    def required(
        self, text: str, field: str, max_chars: int, featurized: Featurize = featurize
    ) -> tuple[str | None, float]:
        """A value for `field` where the task requires one and the tagger gave none (`likeliest_run`)."""
        toks, x = featurized(text)
        if not toks:
            return None, 0.0
        return likeliest_run(text, toks, self.crf.predict_marginals_single(x), field, max_chars)

    def predict(
        self, texts: list[str], featurized: Featurize = featurize
    ) -> list[tuple[dict[str, str | None], dict[str, float]]]:
        """For each text: every span field's value (None when absent) and its confidence."""
        answers = []
        for text in texts:
            toks, x = featurized(text)
            if not toks:
                answers.append((dict.fromkeys(self.fields), dict.fromkeys(self.fields, 1.0)))
                continue
            tags = self.crf.predict_single(x)
            marginals = self.crf.predict_marginals_single(x)
            answers.append(_decode(text, toks, tags, marginals, self.fields))
        return answers


def _decode(
    text: str, toks: list[Token], tags: list[str], marginals: list[dict[str, float]], fields: list[str]
) -> tuple[dict[str, str | None], dict[str, float]]:
    values: dict[str, str | None] = {}
    confidence: dict[str, float] = {}
    for field in fields:
        runs: list[list[int]] = []
        for k, tag in enumerate(tags):
            if tag == f"B-{field}" or (tag == f"I-{field}" and (not runs or runs[-1][1] != k - 1)):
                runs.append([k, k])
            elif tag == f"I-{field}":
                runs[-1][1] = k
        if runs:

            def sureness(run: list[int]) -> float:
                return min(marginals[k][tags[k]] for k in range(run[0], run[1] + 1))

            best = max(runs, key=sureness)  # two spans for one field: the surer one
            values[field] = text[toks[best[0]][1] : toks[best[1]][2]]
            after = marginals[best[1] + 1].get(f"I-{field}", 0.0) if best[1] + 1 < len(toks) else 0.0
            confidence[field] = min(sureness(best), 1.0 - after)  # and sure the span ends where it ends
        else:
            values[field] = None
            confidence[field] = min(1.0 - m.get(f"B-{field}", 0.0) - m.get(f"I-{field}", 0.0) for m in marginals)
    return values, confidence


def likeliest_run(
    text: str, toks: list[Token], marginals: list[dict[str, float]], field: str, max_chars: int
) -> tuple[str | None, float]:
    """The field's likeliest run of tokens when the task requires a value the tagger did not give (a prompt
    labelled an injection, its span not tagged): around the token likeliest to be in the field, its neighbours
    at least a third as likely, cut to `max_chars`. Verbatim by construction; its confidence is that likelihood."""
    inside = [m.get(f"B-{field}", 0.0) + m.get(f"I-{field}", 0.0) for m in marginals]
    if not inside:
        return None, 0.0
    best = max(range(len(inside)), key=inside.__getitem__)
    floor = inside[best] / 3
    lo = hi = best
    while lo > 0 and inside[lo - 1] >= floor:
        lo -= 1
    while hi + 1 < len(inside) and inside[hi + 1] >= floor:
        hi += 1
    while hi > lo and toks[hi][2] - toks[lo][1] > max_chars:
        hi -= 1
    value = text[toks[lo][1] : toks[hi][2]]
    return (value if len(value) <= max_chars else None), inside[best]
