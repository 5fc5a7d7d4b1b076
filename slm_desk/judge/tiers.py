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

from slm_desk.contract.calibration import Profile, Sample, answer_right, build_profile
from slm_desk.contract.decision import decide
from slm_desk.errors import SlmDeskError

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.judge.pipeline import Pipeline

EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # the head's calibrated confidence
MIN_BAND = 5  # fewer measured items than this in a band is no evidence that the LLM is better there
COMPARE = 100
SURE = 0.95  # a head that accepts this share of its pool out of fold is not compared unless asked (--compare N)
MIN_BUDGET_S = 60.0  # the comparison's time budget is the head's own fit time, but at least this


@dataclass(frozen=True)
class Scored:
    """One pool item as the head answered it out of fold: what `train` calibrates on and compares tiers with."""

    input: str
    gold: dict[str, Any]
    output: dict[str, Any]
    confidence: float  # calibrated, the minimum over fields
    correct: bool
    accepted: bool
    familiar: bool = True  # like the pool by the novelty rule, out of fold (an unfamiliar input goes to a person)


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
    answers: int | None = None  # for a row the LLM is in: how many of its answers the estimate rests on


class TierPolicy(BaseModel):
    model: str  # the next tier that was measured (its backend's model id)
    n_heldout: int
    measured: int
    bands: list[Band]
    frontier: list[FrontierRow]
    note: str = ""  # why no next tier was measured, when none was
    measured_at: str = ""  # when (a retrain that does not measure again keeps this policy and says from when)

    def band(self, confidence: float | None) -> Band:
        return self.bands[band_index(0.0 if confidence is None else confidence)]


def band_index(confidence: float) -> int:
    """The band of a confidence: [0, 0.2), [0.2, 0.4), ... [0.8, 1.0], the top edge in the top band."""
    return min(max(bisect.bisect_right(EDGES, confidence) - 1, 0), len(EDGES) - 2)


def deferrable(scored: list[Scored], task: Task) -> list[int]:
    """The items the head would hand on if the LLM were better there: not accepted, not high-risk (a person sees a
    high-risk answer whatever the LLM says), not unlike the pool (a person labels what the head never saw)."""
    return [i for i, s in enumerate(scored) if not s.accepted and s.familiar and not task.always_reviewed(s.output)]


def sample_for_comparison(scored: list[Scored], task: Task, n: int, seed: int = 0) -> list[int]:
    """Indices of the items to ask the next tier: `n` of those the head could hand on, in a random order (a budget
    that runs out stops at an unbiased sample). Only there can its answer change what is shown."""
    rng = random.Random(seed)
    pending = deferrable(scored, task)
    return rng.sample(pending, min(n, len(pending)))


def measure(
    task: Task,
    scored: list[Scored],
    head_ms: float,
    next_tier: Pipeline,
    n: int = COMPARE,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    budget_s: float | None = None,
) -> tuple[TierPolicy, Profile | None]:
    """Ask the next tier the sampled items, within `budget_s` seconds when given (the next item is not started when
    the items so far say it would not end in time); return the policy and the tier's calibration from what it got
    right."""
    planned = sample_for_comparison(scored, task, n)
    answers: dict[int, dict[str, Any]] = {}
    started = time.perf_counter()
    for done, index in enumerate(planned, 1):
        if cancelled is not None and cancelled():
            raise KeyboardInterrupt
        spent = time.perf_counter() - started
        if budget_s is not None and done > 1 and spent + spent / (done - 1) > budget_s:
            break
        item = scored[index]
        try:
            result = next_tier.answer(item.input, cancelled=cancelled)
            output, raw = result.output, result.raw_confidence
        except SlmDeskError:
            output, raw = None, None
        right = answer_right(task, output, item.gold)
        answers[index] = {"output": output, "raw": raw, "correct": right}
        if progress:
            progress(done, len(planned))
    deferred = sorted(answers)
    model_ms = (time.perf_counter() - started) * 1000 / max(1, len(deferred))
    samples = [
        Sample(a["raw"], a["correct"], [g for g, _ in task.groups(a["output"])])
        for i, a in answers.items()
        if i in set(deferred) and a["output"] is not None and a["raw"] is not None
    ]
    profile = (
        build_profile(task, next_tier.backend.model, samples, len(deferred), {}) if len(samples) >= MIN_BAND else None
    )
    bands = _bands(task, scored, deferred, answers)
    frontier = _frontier(task, scored, bands, deferred, answers, profile, head_ms, model_ms)
    policy = TierPolicy(
        model=next_tier.backend.model, n_heldout=len(scored), measured=len(deferred), bands=bands, frontier=frontier
    )
    return policy, profile


def no_comparison(scored: list[Scored], head_ms: float, note: str = "") -> TierPolicy:
    """Nothing measured (`--compare 0`, or a head sure of its pool), so the head's answer always stands (the LLM
    never answers for it); `note` says why."""
    bands = [
        Band(lower=lo, upper=hi, items=0, measured=0, head_accuracy=None, model_accuracy=None, defer=False)
        for lo, hi in zip(EDGES, EDGES[1:], strict=False)
    ]
    return TierPolicy(
        model="", n_heldout=len(scored), measured=0, bands=bands, frontier=[_head_row(scored, head_ms)], note=note
    )


def _bands(task: Task, scored: list[Scored], deferred: list[int], answers: dict[int, dict[str, Any]]) -> list[Band]:
    bands = []
    pending = deferrable(scored, task)
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
    answers: dict[int, dict[str, Any]],
    profile: Profile | None,
    head_ms: float,
    model_ms: float,
) -> list[FrontierRow]:
    """Head only, head then LLM (as the policy defers), LLM only: each estimated per stratum and weighted. The LLM
    answered only items the head could hand on: "LLM only" stands on those strata, and its coverage says so."""
    n = len(scored)

    def model_accepts(i: int) -> bool:
        a = answers[i]
        if a["output"] is None or profile is None:
            return False
        confidence = profile.apply(a["raw"]) if a["raw"] is not None else None
        return decide(task, a["output"], [], confidence, profile).decision == "accept"

    # strata: the items the head accepts, each band of the items it could hand on, and those no tier may take over
    # (high risk, unfamiliar); per stratum every item's head answer is known, and the LLM's on the measured sample
    strata: list[tuple[list[int], list[int], bool]] = [([i for i, s in enumerate(scored) if s.accepted], [], False)]
    pending = deferrable(scored, task)
    for b, band in enumerate(bands):
        members = [i for i in pending if band_index(scored[i].confidence) == b]
        strata.append((members, [i for i in deferred if band_index(scored[i].confidence) == b], band.defer))
    handed = set(pending)  # those no tier may take over: high risk, or unlike the pool
    strata.append(([i for i, s in enumerate(scored) if not s.accepted and i not in handed], [], False))

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
            answers=len(answers),
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
