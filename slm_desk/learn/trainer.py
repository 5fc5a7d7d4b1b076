"""`train`: fit a task's head on its example pool, measure the next tier (the small model) where the head would
hand on, and save the head with the policy that decides between them. A measured policy is never dropped by a
retrain that did not measure again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slm_desk.contract.calibration import Profile
from slm_desk.errors import Cancelled, SlmDeskError
from slm_desk.judge import tiers
from slm_desk.judge.tiers import TierPolicy
from slm_desk.learn import head, training
from slm_desk.models import preload

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.data.store import Store
    from slm_desk.judge.pipeline import Pipeline


@dataclass
class Training:
    """What `Desk.train` did: the head it saved, where it hands on, and what the comparison measured."""

    trained: training.Trained
    policy: TierPolicy
    model_profile: Profile | None  # the next tier's calibration, from the items it was asked; None unmeasured
    interrupted: bool  # the comparison was stopped: the head answers alone


def train(
    store: Store,
    task: Task,
    next_tier: Callable[[], Pipeline],
    embedding: tuple[training.Embedding | None, str],
    *,
    compare: int | None = 0,
    features: training.Choice = "auto",
    budget_s: float | None = None,
    keep_policy: bool = False,
    said: Callable[[str], None] | None = None,
    answered: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    steps: Callable[[int, int], None] | None = None,
) -> Training:
    """What `Desk.train` says, on `store`. `next_tier` builds the uncalibrated small-model tier (only when it is
    asked); `embedding` is the sentence encoder the head may read, or None and why not."""
    say = said or (lambda line: None)
    items, signature, read_at = store.pool_and_signature(task.name, task.version)  # fitted = signed
    before = head.load_policy(store, task)
    say(f"training {task.name} v{task.version}'s head on {len(items)} pool items")
    source, note = embedding
    trained = training.train(
        task,
        items,
        progress=lambda line: say(f"  {line}"),
        embedding=source,
        choice=features,
        embeddings_note=note,
        steps=steps,
    )
    trained.report.pool_signature = list(signature)
    trained.report.pool_read_at = read_at  # labels given from here on count toward the next retrain
    policy, model_profile = tiers.no_comparison(trained.scored, trained.ms_per_item), None
    kept = before if before is not None and before.model else None
    sure = trained.report.heldout_accept_rate
    if compare is None and sure >= tiers.SURE:
        compare = 0
        keep_policy = True  # what was measured before still stands where the head hands on
        policy.note = (
            f"the head accepts {sure:.1%} of its pool out of fold, so the small model was not asked: its answers "
            f"could change little (`slm-desk train {task.name} --compare N` asks it anyway)"
        )
        say(f"  {policy.note}")
    elif compare is None:
        compare = tiers.COMPARE
    if compare and not preload.models_allowed():  # the test suite's fast tier: no model may load here
        compare, keep_policy = 0, True
        policy.note = "the small model was not measured: this process may not load models"
    if compare and not tiers.deferrable(trained.scored, task):
        compare, keep_policy = 0, True
        policy.note = _nothing_to_ask(task, trained.scored)
        say(f"  {policy.note}")
    interrupted = False
    if compare:
        asked = next_tier()
        budget = budget_s or max(tiers.MIN_BUDGET_S, trained.report.train_seconds)
        pending = len(tiers.deferrable(trained.scored, task))
        say(
            f"asking {asked.backend.model} about up to {min(compare, pending)} of the {pending} items the head would "
            f"hand on (only there can its answer change what is shown), for at most {budget:.0f} s"
        )
        try:
            policy, model_profile = tiers.measure(
                task, trained.scored, trained.ms_per_item, asked, compare, answered, cancelled, budget
            )
            policy.measured_at = read_at
            kept = None
        except (KeyboardInterrupt, Cancelled):
            interrupted = True
        except SlmDeskError as exc:  # the model would not load or answer: the head is still worth saving
            interrupted = True
            policy.note = f"the small model could not be measured: {exc.message}"
            say(f"  {policy.note}")
    if kept is not None and (keep_policy or interrupted):
        policy = kept  # a measured policy is never dropped by a retrain that did not measure again
        say(f"  kept the policy measured on {kept.model} ({kept.measured} items) before this retrain")
    head.save(store, trained.head, trained.profile, trained.report, policy)
    if model_profile is not None:
        store.save_calibration(model_profile)
    return Training(trained, policy, model_profile, interrupted)


def _nothing_to_ask(task: Task, scored: list[tiers.Scored]) -> str:
    """Why the small model was asked about no item: every held-out item was one it could not change."""
    accepted = sum(s.accepted for s in scored)
    high = sum(not s.accepted and bool(task.always_reviewed(s.output)) for s in scored)
    unfamiliar = sum(not s.accepted and not s.familiar and not task.always_reviewed(s.output) for s in scored)
    return (
        f"the small model was not asked: of {len(scored)} held-out items the head accepts {accepted}, "
        f"{high} carry a label a person always checks, {unfamiliar} are unlike the pool (a person labels them), and "
        "none is left where a model's answer could change what is shown"
    )
