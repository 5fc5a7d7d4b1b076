"""Per-field confidence from the model's own token probabilities.

- Enum (label) fields: every allowed value is scored as a continuation at the point where the value starts, and
  the chosen value's probability is renormalised over the allowed values. Raw logprobs of the sampled tokens
  would be pre-grammar (they spread mass over tokens the grammar forbids), so they are not used for labels.
- Other fields (extracted or drafted text, numbers, null): the minimum probability over the tokens of the value
  itself, not of the JSON punctuation around it that the grammar forces.
The result's confidence is the minimum over its fields: one shaky field makes the whole answer shaky.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slm_desk.runtime import Engine, Generation
    from slm_desk.tasks import Task

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


def _token_starts(pieces: list[bytes]) -> list[int]:
    starts, offset = [], 0
    for piece in pieces:
        starts.append(offset)
        offset += len(piece)
    return starts


def _tokens_overlapping(starts: list[int], pieces: list[bytes], lo: int, hi: int) -> list[int]:
    return [i for i, (s, p) in enumerate(zip(starts, pieces, strict=True)) if s < hi and s + len(p) > lo]


def field_confidences(task: Task, generation: Generation, engine: Engine) -> dict[str, float]:
    text = generation.text
    raw = text.encode("utf-8")
    starts = _token_starts(generation.pieces)
    enums = {f: s["enum"] for f, s in task.output_schema.get("properties", {}).items() if "enum" in s}
    result: dict[str, float] = {}
    for field, (lo, hi) in value_spans(text).items():
        blo, bhi = len(text[:lo].encode("utf-8")), len(text[:hi].encode("utf-8"))
        if field in enums:
            result[field] = _label_confidence(
                engine, generation, raw, starts, blo, enums[field], json.loads(text[lo:hi])
            )
            continue
        inner = (blo + 1, bhi - 1) if raw[blo : blo + 1] == b'"' and bhi - blo > 2 else (blo, bhi)
        tokens = _tokens_overlapping(starts, generation.pieces, *inner)
        result[field] = min((generation.probs[i] for i in tokens), default=1.0)
    return result


def _label_confidence(
    engine: Engine,
    generation: Generation,
    raw: bytes,
    starts: list[int],
    value_start: int,
    allowed: list[Any],
    chosen: Any,
) -> float:
    """P(chosen) renormalised over the allowed values, each scored as a continuation of the same prefix."""
    first = next(i for i, (s, p) in enumerate(zip(starts, generation.pieces, strict=True)) if s + len(p) > value_start)
    lead = raw[starts[first] : value_start].decode("utf-8", "replace")
    prefix = generation.prompt + generation.tokens[:first]
    candidates = [engine.tokenize_plain(lead + json.dumps(value, ensure_ascii=False)) for value in allowed]
    logps = engine.continuation_logprobs(prefix, candidates)
    top = max(logps)
    weights = [math.exp(lp - top) for lp in logps]
    return weights[allowed.index(chosen)] / sum(weights)


def overall(fields: dict[str, float]) -> float | None:
    return min(fields.values()) if fields else None
