"""Which tier answers is a measured fact: where the head is unsure, is the next tier (the LLM) more accurate?

`slm-desk train` measures the next tier on a sample of the out-of-fold items the head would not accept, per band
of the head's calibrated confidence. The stored policy defers from the head to the LLM only in bands where the
LLM was measured more accurate on at least `MIN_BAND` items; elsewhere the head's answer stands and goes to review
or escalation as its own decision says. The same measurement is the LLM tier's calibration, so accepted precision
holds whichever tier answered. The frontier (head only / head then LLM / LLM only) is what a person reads to
choose; it is estimated from the strata that were measured, each weighted by its share of the held-out items.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from slm_desk.contract.calibration import Profile, Sample, build_profile
from slm_desk.contract.decision import decide
from slm_desk.errors import SlmDeskError

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.judge.pipeline import Pipeline

EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # the head's calibrated confidence
MIN_BAND = 5  # fewer measured items than this in a band is no evidence that the LLM is better there
COMPARE = 100


@dataclass(frozen=True)
class Scored:
    """One pool item as the head answered it out of fold: what `train` calibrates on and compares tiers with."""

    input: str
    gold: dict[str, Any]
    output: dict[str, Any]
    confidence: float  # calibrated, the minimum over fields
    correct: bool
    accepted: bool


class Band(BaseModel):
    lower: float
    upper: float
    items: int  # held-out items the head would not accept, in this band
    measured: int  # of those, how many the next tier answered
    head_accuracy: float | None
    model_accuracy: float | None
    defer: bool

    @property
    def label(self) -> str:
        return f"{self.lower:.1f}-{self.upper:.1f}"

    def why(self, model: str) -> str:
        if self.measured < MIN_BAND:
            return f"{self.measured} item(s) of band {self.label} measured on {model}, too few to prefer it"
        word = "more" if self.defer else "not more"
        return (
            f"in band {self.label} {model} was measured {word} accurate than the head "
            f"({self.model_accuracy:.0%} vs {self.head_accuracy:.0%} on {self.measured} held-out items)"
        )


class FrontierRow(BaseModel):
    setup: str
    accuracy: float | None
    accepted_precision: float | None
    accept_rate: float | None
    ms_per_item: float | None
    coverage: float = 1.0  # the share of held-out items the estimate stands on (the rest was not measured)


class TierPolicy(BaseModel):
    model: str  # the next tier that was measured (its backend's model id)
    n_heldout: int
    measured: int
    bands: list[Band]
    frontier: list[FrontierRow]

    def band(self, confidence: float | None) -> Band:
        return self.bands[band_index(0.0 if confidence is None else confidence)]


def band_index(confidence: float) -> int:
    """The band of a confidence: [0, 0.2), [0.2, 0.4), ... [0.8, 1.0], the top edge in the top band."""
    return min(max(bisect.bisect_right(EDGES, confidence) - 1, 0), len(EDGES) - 2)


def sample_for_comparison(scored: list[Scored], task: Task, n: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of the items to ask the next tier: `n` of those the head would not accept and could hand on
    (a high-risk answer goes to a person whatever the LLM says), and n/4 of those it accepts (for "LLM only")."""
    rng = random.Random(seed)
    deferrable = [i for i, s in enumerate(scored) if not s.accepted and not task.always_reviewed(s.output)]
    accepted = [i for i, s in enumerate(scored) if s.accepted]
    return (
        sorted(rng.sample(deferrable, min(n, len(deferrable)))),
        sorted(rng.sample(accepted, min(n // 4, len(accepted)))),
    )


def measure(
    task: Task,
    scored: list[Scored],
    head_ms: float,
    next_tier: Pipeline,
    n: int = COMPARE,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[TierPolicy, Profile | None]:
    """Ask the next tier the sampled items; return the policy and the tier's calibration from what it got right."""
    deferred, accepted = sample_for_comparison(scored, task, n)
    asked = deferred + accepted
    answers: dict[int, dict[str, Any]] = {}
    started = time.perf_counter()
    for done, index in enumerate(asked, 1):
        if cancelled is not None and cancelled():
            raise KeyboardInterrupt
        item = scored[index]
        try:
            result = next_tier.answer(item.input, cancelled=cancelled)
            output, raw = result.output, result.raw_confidence
        except SlmDeskError:
            output, raw = None, None
        right = output is not None and all(output.get(f) == item.gold.get(f) for f in task.fields)
        answers[index] = {"output": output, "raw": raw, "correct": right}
        if progress:
            progress(done, len(asked))
    model_ms = (time.perf_counter() - started) * 1000 / max(1, len(asked))
    samples = [
        Sample(a["raw"], a["correct"], [g for g, _ in task.groups(a["output"])])
        for i, a in answers.items()
        if i in set(deferred) and a["output"] is not None and a["raw"] is not None
    ]
    profile = (
        build_profile(task, next_tier.backend.model, samples, len(deferred), {}) if len(samples) >= MIN_BAND else None
    )
    bands = _bands(task, scored, deferred, answers)
    frontier = _frontier(task, scored, bands, deferred, accepted, answers, profile, head_ms, model_ms)
    policy = TierPolicy(
        model=next_tier.backend.model, n_heldout=len(scored), measured=len(asked), bands=bands, frontier=frontier
    )
    return policy, profile


def no_comparison(scored: list[Scored], head_ms: float) -> TierPolicy:
    """`--compare 0`: nothing measured, so the head's answer always stands (the LLM never answers for it)."""
    bands = [
        Band(lower=lo, upper=hi, items=0, measured=0, head_accuracy=None, model_accuracy=None, defer=False)
        for lo, hi in zip(EDGES, EDGES[1:], strict=False)
    ]
    return TierPolicy(model="", n_heldout=len(scored), measured=0, bands=bands, frontier=[_head_row(scored, head_ms)])


def _bands(task: Task, scored: list[Scored], deferred: list[int], answers: dict[int, dict[str, Any]]) -> list[Band]:
    bands = []
    pending = [i for i, s in enumerate(scored) if not s.accepted and not task.always_reviewed(s.output)]
    for b, (lo, hi) in enumerate(zip(EDGES, EDGES[1:], strict=False)):
        mine = [i for i in deferred if band_index(scored[i].confidence) == b]
        head = _mean([scored[i].correct for i in mine])
        model = _mean([answers[i]["correct"] for i in mine])
        better = len(mine) >= MIN_BAND and head is not None and model is not None and model > head
        bands.append(
            Band(
                lower=lo,
                upper=hi,
                items=sum(band_index(scored[i].confidence) == b for i in pending),
                measured=len(mine),
                head_accuracy=head,
                model_accuracy=model,
                defer=better,
            )
        )
    return bands


def _frontier(
    task: Task,
    scored: list[Scored],
    bands: list[Band],
    deferred: list[int],
    accepted: list[int],
    answers: dict[int, dict[str, Any]],
    profile: Profile | None,
    head_ms: float,
    model_ms: float,
) -> list[FrontierRow]:
    """Head only, head then LLM (as the policy defers), LLM only: each estimated per stratum and weighted."""
    n = len(scored)

    def model_accepts(i: int) -> bool:
        a = answers[i]
        if a["output"] is None or profile is None:
            return False
        confidence = profile.apply(a["raw"]) if a["raw"] is not None else None
        return decide(task, a["output"], [], confidence, profile).decision == "accept"

    # strata: the items the head accepts, each band of the items it could hand on, and those no tier may take over
    # (high risk); per stratum every item's head answer is known, and the LLM's on the measured sample
    strata = [([i for i, s in enumerate(scored) if s.accepted], accepted, False)]
    pending = [i for i, s in enumerate(scored) if not s.accepted and not task.always_reviewed(s.output)]
    for b, band in enumerate(bands):
        members = [i for i in pending if band_index(scored[i].confidence) == b]
        strata.append((members, [i for i in deferred if band_index(scored[i].confidence) == b], band.defer))
    strata.append(([i for i, s in enumerate(scored) if not s.accepted and task.always_reviewed(s.output)], [], False))

    def estimate(setup: str, use_model: Callable[[bool], bool], ms: Callable[[float], float]) -> FrontierRow:
        total = right = accepts_n = accepted_right = by_model_n = 0.0
        for members, measured, defer in strata:
            by_model = use_model(defer)
            if not members or (by_model and not measured):
                continue  # a stratum the LLM never answered is left out of its estimate (coverage says how much)
            if by_model:
                correct = [answers[i]["correct"] for i in measured]
                accepts = [model_accepts(i) for i in measured]
                by_model_n += len(members)
            else:
                correct = [scored[i].correct for i in members]
                accepts = [scored[i].accepted for i in members]
            weight = len(members)
            total += weight
            right += weight * (_mean(correct) or 0.0)
            accepts_n += weight * (_mean(accepts) or 0.0)
            accepted_right += weight * (_mean([c and a for c, a in zip(correct, accepts, strict=True)]) or 0.0)
        if not total:
            return FrontierRow(setup=setup, accuracy=None, accepted_precision=None, accept_rate=None, ms_per_item=None)
        return FrontierRow(
            setup=setup,
            accuracy=right / total,
            accepted_precision=accepted_right / accepts_n if accepts_n else None,
            accept_rate=accepts_n / total,
            ms_per_item=ms(by_model_n / total),
            coverage=total / n,
        )

    return [
        _head_row(scored, head_ms),
        estimate("head, then the LLM where measured better", lambda d: d, lambda share: head_ms + share * model_ms),
        estimate("the LLM alone", lambda d: True, lambda share: model_ms),
    ]


def _head_row(scored: list[Scored], head_ms: float) -> FrontierRow:
    accepted = [s for s in scored if s.accepted]
    return FrontierRow(
        setup="the head alone",
        accuracy=_mean([s.correct for s in scored]),
        accepted_precision=_mean([s.correct for s in accepted]),
        accept_rate=len(accepted) / len(scored) if scored else None,
        ms_per_item=head_ms,
    )


def _mean(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None
