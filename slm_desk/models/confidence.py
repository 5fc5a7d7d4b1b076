"""Per-field confidence from the model's own token probabilities.

- Enum (label) fields: the allowed values are scored as continuations at the point where the value starts, and
  the chosen value's probability is renormalised over the allowed values at every point where they branch.
  Raw logprobs of the sampled tokens are pre-grammar (they spread mass over tokens the grammar forbids), so they
  are never read as they are for labels.
- Other fields (extracted or drafted text, numbers, null): the minimum probability over the tokens of the value
  itself, not of the JSON punctuation around it that the grammar forces.
The result's confidence is the minimum over its fields: one shaky field makes the whole answer shaky.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.models.generation import Generation
    from slm_desk.models.runtime import Engine

_WS = re.compile(r"\s*")


def value_spans(text: str) -> dict[str, tuple[int, int]]:
    """Character span of each top-level value in a JSON object text, e.g. {"a": "x"} -> {"a": (6, 9)}."""
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}
    i = _WS.match(text, text.index("{") + 1).end()  # type: ignore[union-attr]
    while i < len(text) and text[i] != "}":
        key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        i = _WS.match(text, i).end() + 1  # type: ignore[union-attr]  # past ':'
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        _, end = decoder.raw_decode(text, i)
        spans[key] = (i, end)
        i = _WS.match(text, end).end()  # type: ignore[union-attr]
        if i < len(text) and text[i] == ",":
            i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
    return spans


class Value(NamedTuple):
    """One top-level value of an answer, located in its tokens: where a field's confidence is read."""

    field: str
    start: int  # byte offset of the value in the answer
    first: int  # index of the first token that overlaps it
    tokens: list[int]  # the tokens of the value itself, without the quotes around a string
    label: Any  # the chosen label of an enum field; None for other fields
    allowed: list[Any] | None  # an enum field's labels


def _values(task: Task, text: str, pieces: list[bytes], starts: list[int]) -> Iterator[Value]:
    """The one walk over an answer's values that the local and the served confidences share."""
    raw = text.encode("utf-8")
    enums = {f: s["enum"] for f, s in task.output_schema.get("properties", {}).items() if "enum" in s}
    for field, (lo, hi) in value_spans(text).items():
        blo, bhi = len(text[:lo].encode("utf-8")), len(text[:hi].encode("utf-8"))
        inner = (blo + 1, bhi - 1) if raw[blo : blo + 1] == b'"' and bhi - blo > 2 else (blo, bhi)
        first = next(i for i, (s, p) in enumerate(zip(starts, pieces, strict=True)) if s + len(p) > blo)
        allowed = enums.get(field)
        label = json.loads(text[lo:hi]) if allowed is not None else None
        yield Value(field, blo, first, _tokens_overlapping(starts, pieces, *inner), label, allowed)


def _token_starts(pieces: list[bytes]) -> list[int]:
    starts, offset = [], 0
    for piece in pieces:
        starts.append(offset)
        offset += len(piece)
    return starts


def _tokens_overlapping(starts: list[int], pieces: list[bytes], lo: int, hi: int) -> list[int]:
    return [i for i, (s, p) in enumerate(zip(starts, pieces, strict=True)) if s < hi and s + len(p) > lo]


def field_confidences(task: Task, generation: Generation, engine: Engine) -> dict[str, float]:
    raw = generation.text.encode("utf-8")
    starts = _token_starts(generation.pieces)
    result: dict[str, float] = {}
    for value in _values(task, generation.text, generation.pieces, starts):
        if value.allowed is not None:
            result[value.field] = _label_confidence(engine, generation, raw, starts, value)
        else:
            result[value.field] = min((generation.probs[i] for i in value.tokens), default=1.0)
    return result


def _label_confidence(
    engine: Engine,
    generation: Generation,
    raw: bytes,
    starts: list[int],
    value: Value,
) -> float:
    """P(chosen) under the grammar: the model's probabilities renormalised over the allowed labels.

    The allowed labels, tokenized as continuations, form a trie. The grammar lets the model choose only at its
    branch points, so the chosen label's probability is the product, over the branch points on its path, of the
    chosen token's probability renormalised over the tokens allowed there. The distributions at those points
    were recorded while generating; a decode is needed only where the context differs from what was generated.
    """
    assert value.allowed is not None
    first = value.first
    lead = raw[starts[first] : value.start].decode("utf-8", "replace")
    candidates = [engine.tokenize_plain(lead + json.dumps(label, ensure_ascii=False)) for label in value.allowed]
    path = candidates[value.allowed.index(value.label)]
    base = generation.prompt + generation.tokens[:first]
    probability = 1.0
    alive = list(range(len(candidates)))
    for depth, token in enumerate(path):
        if len(alive) == 1:
            break
        options = {candidates[i][depth] for i in alive if len(candidates[i]) > depth}
        if len(options) > 1:
            recorded = generation.tokens[first : first + depth] == path[:depth]
            logprobs = generation.dists.get(first + depth) if recorded else None
            if logprobs is None:
                logprobs = engine.next_logprobs(base + path[:depth])
            weights = {t: math.exp(float(logprobs[t])) for t in options}
            probability *= weights[token] / sum(weights.values())
        alive = [i for i in alive if len(candidates[i]) > depth and candidates[i][depth] == token]
    return probability


def overall(fields: dict[str, float]) -> float | None:
    return min(fields.values()) if fields else None


def logprob_confidences(task: Task, text: str, content: list[Any]) -> tuple[dict[str, float] | None, str | None]:
    """Per-field confidence from a server's `logprobs.content` (token, logprob, bytes, top_logprobs).

    Labels: at the first token of the value, the probability of the alternatives in `top_logprobs` that begin
    the chosen label, renormalised over those that begin any allowed label. A server shows one branch point, not
    the whole trie, so labels sharing their first token are told apart only by the model's own choice.
    When no alternative there begins an allowed label, the field has no confidence and the note says why.
    Other fields: the lowest probability among the value's tokens, as for the local model.
    """
    pieces = [_token_bytes(t) for t in content]
    if b"".join(pieces).decode("utf-8", "replace") != text:
        return None, "the server's logprobs do not cover its answer text"
    raw = text.encode("utf-8")
    starts = _token_starts(pieces)
    try:
        values = list(_values(task, text, pieces, starts))
    except (ValueError, IndexError):
        return None, "the answer is not a JSON object"
    result: dict[str, float] = {}
    for value in values:
        if value.allowed is None:
            result[value.field] = min((math.exp(content[i].logprob) for i in value.tokens), default=1.0)
            continue
        lead = raw[starts[value.first] : value.start]
        candidates = {
            json.dumps(label, ensure_ascii=False): lead + json.dumps(label, ensure_ascii=False).encode()
            for label in value.allowed
        }
        chosen = json.dumps(value.label, ensure_ascii=False)
        probability = _served_label_probability(candidates, chosen, content, pieces, starts, value.first)
        if probability is None:
            return None, f"the server's top_logprobs do not include the labels of {value.field}"
        result[value.field] = probability
    return result, None


def _served_label_probability(
    candidates: dict[str, bytes],
    chosen: str,
    content: list[Any],
    pieces: list[bytes],
    starts: list[int],
    first: int,
) -> float | None:
    """The chosen label's probability over the allowed ones, from the top alternatives at each branch point."""
    probability = 1.0
    alive = list(candidates)
    i = first
    while len(alive) > 1 and i < len(pieces):
        consumed = starts[i] - starts[first]
        rest = {label: candidates[label][consumed:] for label in alive}
        token = pieces[i]
        following = [label for label in alive if _continues(rest[label], token)]
        if len(following) < len(alive):  # the labels part ways here: renormalise over those still possible
            mass = dict.fromkeys(alive, 0.0)
            for alt in content[i].top_logprobs or []:
                piece = _token_bytes(alt)
                for label in alive:
                    if piece and _continues(rest[label], piece):
                        mass[label] += math.exp(alt.logprob)
            total = sum(mass.values())
            if mass.get(chosen, 0.0) <= 0 or total <= 0:
                return None
            probability *= mass[chosen] / total
        alive = following
        i += 1
    return probability


def _continues(rest: bytes, piece: bytes) -> bool:
    return rest.startswith(piece) or (bool(rest) and piece.startswith(rest))


def _token_bytes(item: Any) -> bytes:
    raw = getattr(item, "bytes", None)
    return bytes(raw) if raw else str(item.token).encode("utf-8")
