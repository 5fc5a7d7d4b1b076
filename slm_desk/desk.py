"""The desk: one place that holds the config and the store, and builds cascades over the shared backends.

Pipe mode and the TUI are both thin faces over it. Local models load once per process and stay loaded (see
`backends.local`), so switching tasks keeps the model warm and two screens share one model and its lock.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slm_desk import encoders, locations
from slm_desk.contract.calibration import Profile
from slm_desk.contract.results import RunResult
from slm_desk.contract.tasks import Task, load_task
from slm_desk.data import pool, review, shipped
from slm_desk.data.config import Config, RuntimeConfig, load_config
from slm_desk.data.hardware import physical_cores
from slm_desk.data.store import Store
from slm_desk.errors import TaskError
from slm_desk.judge.cascade import Cascade
from slm_desk.judge.pipeline import Pipeline, no_shots
from slm_desk.judge.tiers import TierPolicy
from slm_desk.learn import calibrate, distill, evaluate, head, teaching, trainer, training
from slm_desk.learn.retrieval import Retriever
from slm_desk.learn.trainer import Training
from slm_desk.models import backends, served, threads
from slm_desk.models.escalation import Budget, escalation_backend, is_loopback
from slm_desk.models.protocol import Backend

QUEUE_SHOWN = 100  # review items listed at once
QUEUE_READ = 1000  # pending items ordered to choose those QUEUE_SHOWN from


class Desk:
    def __init__(self, config: Config | None = None) -> None:
        self.config = config or load_config()
        self.store = Store(locations.history_db())
        self._retrievers: dict[tuple[str, int], tuple[tuple[int, ...], Retriever]] = {}
        self._building = threading.Lock()
        self._heads: dict[tuple[str, int, bool], tuple[str, Pipeline, TierPolicy | None]] = {}

    def reload_config(self) -> None:
        self.config = load_config()

    def backend(
        self,
        model_id: str | None = None,
        runtime: RuntimeConfig | None = None,
        replica: int = 0,
        tuned_for: Task | None = None,
    ) -> Backend:
        """The small model: the local GGUF of `model_id` (default [models] small), or [runtime] backend's server.
        With `tuned_for`, the LoRA adapter `slm-desk tune` trained for that task is applied, if there is one."""
        runtime = runtime or self.config.runtime
        return backends.small_model(model_id, runtime, self.config.models.small, replica, tuned_for)

    def model_id(self, task: Task | None = None, model_id: str | None = None) -> str:
        """The small model's id as results and calibration profiles name it (a tuned one ends in +lora)."""
        return backends.small_model_id(model_id, self.config.runtime, self.config.models.small, task)

    def calibration_items(
        self, task: Task, data: Path | None = None, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], int, str]:
        """Labelled items to calibrate `task` on: `data`, else its built-in eval set, else the answers people
        labelled in Review; the first `limit`, less what the example pool teaches (learned from, not judged).
        Returns the items, how many the pool held, and where they came from."""
        from slm_desk.data import evalset
        from slm_desk.data.pool import without_pool

        path = data or evalset.builtin(task.name)
        if path is not None:
            items, source = evalset.read_jsonl(path), str(path)
        else:
            items, source = list(evalset.export(self.store, task.name, include_teacher=False)), "reviewed answers"
        return (*without_pool(self.store, task, items[:limit] if limit else items), source)

    def calibrate(
        self,
        task: Task,
        items: list[dict[str, Any]],
        model_id: str | None = None,
        adapter: bool = True,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        escalation: bool = False,
    ) -> Profile:
        """Measure the small model (or the [escalation] target) on `items`, fit its calibration profile and store it:
        `run` applies it."""
        if escalation:
            from slm_desk.errors import UsageError

            target = escalation_backend(self.config.escalation, self.config.runtime)
            if target is None:
                raise UsageError("no escalation target is configured", "set [escalation] in config.toml first")
            backend: Backend = target
        else:
            backend = self.backend(model_id, tuned_for=task if adapter else None)
        profile = calibrate.run(self.pipeline(task, backend, calibrated=False), items, progress, cancelled)
        self.store.save_calibration(profile)
        return profile

    def embedding(self) -> tuple[training.Embedding | None, str]:
        """The sentence encoder a head may read ([models] embedding), and why there is none when there is none
        (`encoders.embedding`)."""
        return encoders.embedding(self.config, self.store)

    def train(
        self,
        task: Task,
        compare: int | None = 0,
        model_id: str | None = None,
        adapter: bool = True,
        said: Callable[[str], None] | None = None,
        answered: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        features: training.Choice = "auto",
        budget_s: float | None = None,
        keep_policy: bool = False,
        steps: Callable[[int, int], None] | None = None,
    ) -> Training:
        """Fit `task`'s head on its pool and save it, then measure the next tier (the small model) where its answer
        could change what is shown: on up to `compare` of the items the head would hand on, within `budget_s`
        seconds (default: the head's own fit time, at least a minute). `compare=None` decides: a head that accepts
        95 % of its pool out of fold is not compared, others on 100 items. The head hands on only where the model
        was measured better. A Ctrl-C or `cancelled` during the comparison stops it: the head is saved with the
        policy measured before, if any, else it answers alone. `keep_policy` (a retrain that does not measure) keeps
        the policy measured before. `features` fixes the label features ("tfidf", "embeddings"); "auto" measures
        both and keeps the better. `steps` hears the training's steps (done, in all) as each ends."""

        def next_tier() -> Pipeline:
            backend = self.backend(model_id, tuned_for=task if adapter else None)
            return self.pipeline(task, backend, calibrated=False)

        # the encoder even with --features tfidf: it never runs then, but a compression head reads its word table
        return trainer.train(
            self.store,
            task,
            next_tier,
            self.embedding(),
            compare=compare,
            features=features,
            budget_s=budget_s,
            keep_policy=keep_policy,
            said=said,
            answered=answered,
            cancelled=cancelled,
            steps=steps,
        )

    def check_task(self, task: Task) -> list[str]:
        """What the runtime would refuse in a task that loads: its grammar, compiled by llama.cpp's own parser (the
        task file's own checks ran when it loaded)."""
        from slm_desk.models import grammar

        threads.prepare(self.config.runtime)  # before llama.cpp loads: its wait policy is read then
        return grammar.problems(task.output_schema)

    def teacher(self, task: Task, teacher: str | None = None, model_name: str | None = None) -> Pipeline:
        """The teacher that labels inputs for review (`distill`): a server URL (`model_name` at it), an installed
        model id, else the [escalation] target."""
        from slm_desk.data.catalog import resolve_model
        from slm_desk.errors import UsageError

        config = self.config.escalation
        backend: Backend | None
        if teacher and teacher.startswith(("http://", "https://")):
            model = model_name or config.model or "teacher"
            backend = served.OpenAIBackend(
                [teacher], model, config.api_key_env, config.timeout_s, config.retries, max_tokens_factor=2
            )
        elif teacher:
            backend = backends.local(resolve_model(teacher), self.config.runtime)
        else:
            backend = escalation_backend(config, self.config.runtime)
            if backend is None:
                raise UsageError(
                    "no teacher: pass --teacher URL|MODEL_ID or configure [escalation]", "see `distill --help`"
                )
        return Pipeline(task, backend, tier="escalation")

    def distill(
        self,
        task: Task,
        inputs: list[str],
        teacher: str | None = None,
        model_name: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> dict[str, int]:
        """A teacher (`teacher`) labels unlabelled inputs into the review queue, as teacher labels: never straight
        into the pool. Counts of valid and flagged (failed validation) answers."""
        return distill.label_inputs(self.teacher(task, teacher, model_name), inputs, self.store, progress, cancelled)

    def head_report(self, task: Task) -> head.HeadReport | None:
        """What the task's trained head reported when it was trained (when, on how many items, held-out accuracy
        and accept rate), or None when it has none."""
        return teaching.head_report(self.store, task)

    def due_for_retraining(self, task: Task) -> int | None:
        """The labels given in review since the task's head read its pool (labels given while it trained count), when
        they reach [teach] retrain_after (the app then retrains it); None otherwise (no head, retraining off, or not
        enough new labels yet)."""
        after = self.config.teach.retrain_after
        report = self.head_report(task) if after else None
        if report is None:
            return None
        since = report.pool_read_at or self.store.head_trained_at(task.name, task.version) or ""
        new = self.store.labels_since(task.name, task.version, since)
        return new if new >= after else None

    def teaching(self, task: Task) -> teaching.Teaching:
        """What `task` has learned from: its pool per label and source, its head, and whether that is stale."""
        return teaching.teaching(self.store, task)

    def add_examples(self, task: Task, path: Path) -> pool.Added:
        """A labelled JSONL file into the task's pool: each bad line named and skipped, the rest added."""
        return pool.add_file(self.store, task, path)

    def remove_examples(self, task: Task, ids: list[int]) -> int:
        return self.store.remove_from_pool(task.name, task.version, ids)

    def export_examples(self, task: Task, path: Path) -> int:
        """The task's pool as JSONL ({"input", "output"} per line, as `examples add` reads it); items written."""
        items = self.store.pool(task.name, task.version)
        with path.open("w", encoding="utf-8") as out:
            for item in items:
                out.write(json.dumps({"input": item["input"], "output": item["output"]}, ensure_ascii=False) + "\n")
        return len(items)

    def review_queue(self, task: str | None = None, teaching_order: bool = True) -> list[dict[str, Any]]:
        """The pending review items, in the order a label teaches most (`review.teaching_order`) or as they came,
        each with its task's head's view of it (`teaching.annotate`)."""
        items = review.pending(self.store, task, limit=QUEUE_READ if teaching_order else QUEUE_SHOWN)
        for name in {item["task"] for item in items}:
            try:
                spec = load_task(name)
            except TaskError:  # a user task since removed: its items are listed as they are
                continue
            mine = [item for item in items if item["task"] == name and item["task_version"] == spec.version]
            first = self.head(spec, cached=True) if mine else None
            teaching.annotate(spec, mine, first[0] if first is not None else None)
        return review.teaching_order(items)[:QUEUE_SHOWN] if teaching_order else items

    def record(self, results: list[RunResult], log: bool = True) -> list[int | None]:
        """Keep answers in the history, in one transaction, when history is on and the caller did not opt out
        (`--no-log`); each result's run id, or None where it was not kept."""
        if not (log and self.config.history.enabled) or not results:
            return [None] * len(results)
        return list(self.store.record_many(results))

    def escalation_leaves_machine(self) -> bool:
        """True when escalating would send text to another machine (the TUI asks first)."""
        esc = self.config.escalation
        return bool(esc.enabled and not esc.local_model and esc.base_url and not is_loopback(esc.base_url))

    def retriever(self, task: Task) -> Retriever | None:
        """The index of the task's example pool (rebuilt only when the pool changed); None for an empty pool."""
        if task.retrieval.k == 0:
            return None
        key = (task.name, task.version)
        signature = self.store.pool_signature(task.name, task.version)
        if signature[0] == 0:
            return None
        cached = self._retrievers.get(key)
        if cached is None or cached[0] != signature:
            # a line that gives only some fields is no example of a whole answer: it teaches the head, not the prompt
            items = [i for i in self.store.pool(task.name, task.version) if not pool.partial(task, i["output"])]
            if not items:
                return None
            report = self.head_report(task)
            source = self.embedding()[0] if report is not None and report.embedding_model else None
            if source is not None and source.model == report.embedding_model:  # type: ignore[union-attr]
                index = Retriever(items, task.retrieval.k, source.vectors([i["input"] for i in items]), source.fresh)
            else:
                index = Retriever(items, task.retrieval.k)
            cached = (signature, index)
            self._retrievers[key] = cached
        return cached[1]

    def head(self, task: Task, cached: bool = False) -> tuple[Pipeline, TierPolicy | None] | None:
        """The trained head of this task version as the first tier, with the policy `train` measured for handing
        its answers on; None when no head was trained or its example pool is empty now. With `cached`, a head that
        reads embeddings keeps its inputs' embeddings in the store (the review queue's inputs are already there;
        `run`'s are not, so `--no-log` leaves nothing behind)."""
        trained_at = self.store.head_trained_at(task.name, task.version)  # cheap: the model is read only when new
        if trained_at is None or self.store.pool_signature(task.name, task.version)[0] == 0:
            return None  # never trained, or its pool was emptied since: it would answer from what was taken away
        key = (task.name, task.version, cached)
        held = self._heads.get(key)
        if held is None or held[0] != trained_at:
            loaded = head.load(
                self.store,
                task,
                encoders.embed_for(self.config, self.store, cached),
                encoders.reader_for(self.config, self.store),
            )
            assert loaded is not None
            tier = Pipeline(
                task,
                loaded.backend,
                loaded.profile,
                can_escalate=self.config.escalation.enabled,
                tier="head",
                max_attempts=1,
            )
            held = (trained_at, tier, loaded.policy)
            self._heads[key] = held
        return held[1], held[2]

    def configured(self, task: Task) -> Task:
        """The task with the constants a person set in config.toml ([constants]) in place of the file's own."""
        mine = {k: v for k, v in self.config.constants.items() if k in task.constants}
        return task.model_copy(update={"constants": {**task.constants, **mine}}) if mine else task

    def pipeline(
        self,
        task: str | Task,
        backend: Backend,
        accept_at: float | None = None,
        calibrated: bool = True,
        learned: bool = True,
        unmeasured: str | None = None,
    ) -> Pipeline:
        """The small-model tier for `task` on `backend`: its calibration profile unless `calibrated` is off, and
        few-shot turns retrieved from the example pool unless `learned` is off (then the task's static ones).
        A tuned backend gets no few-shot turns: it is prompted as it was trained. Without a profile the tier never
        accepts (unless the task opts in); `unmeasured` says why, when the default reason is not the right one."""
        task = self.configured(load_task(task) if isinstance(task, str) else task)
        tuned = backend.tuned
        taught = learned and not tuned and task.retrieval.k > 0
        has_pool = taught and self.store.pool_signature(task.name, task.version)[0] > 0
        profile = self.profile(task, backend.model) if calibrated else None
        if profile is not None and profile.source and has_pool:  # shipped: measured before the task was taught
            caveat = (
                f"it measured the static prompt, before {task.name} had a pool; `slm-desk calibrate {task.name}` "
                "measures it as taught"
            )
            profile = profile.model_copy(update={"caveat": caveat})
        escalation = self.config.escalation
        return Pipeline(
            task,
            backend,
            profile,
            accept_at,
            can_escalate=escalation.enabled,
            shots=no_shots if tuned else functools.partial(self._shots, task) if has_pool else None,
            unmeasured=unmeasured,
        )

    def profile(self, task: Task, model: str) -> Profile | None:
        """The calibration profile `run` applies: the one measured here, else the one a built-in task ships."""
        measured = self.store.calibration(task.name, task.version, model)
        return measured if measured is not None else shipped.profile(task, model)

    def _shots(self, task: Task, text: str) -> list[tuple[str, str]] | None:
        """Retrieved few-shot turns; the index is built on the first input that reaches the model, so a batch the
        head answers whole never pays for it."""
        with self._building:
            retriever = self.retriever(task)
        return retriever.shots(text) if retriever is not None else None

    def cascade(
        self,
        task: str | Task,
        model_id: str | None = None,
        runtime: RuntimeConfig | None = None,
        accept_at: float | None = None,
        consent: bool = False,
        replica: int = 0,
        learned: bool = True,
        adapter: bool = True,
    ) -> Cascade:
        """Every tier for `task`: the trained head, the small model of `model_id` (tuned for the task, or with
        retrieved examples), then the configured escalation target. `learned` off leaves out what the example pool
        taught through the head and retrieved examples, `adapter` off the fine-tuned adapter: for before/after."""
        task = self.configured(load_task(task) if isinstance(task, str) else task)
        runtime = runtime or self.config.runtime
        backend = self.backend(model_id, runtime, replica, task if adapter else None)
        first = self.head(task) if learned and accept_at is None else None
        if first is None:
            backend.load()  # every input goes to it: a model that cannot load is refused now, not at the first input
        # a taught task promises its precision targets whichever tier answers: an unmeasured tier never accepts
        unmeasured = (
            f"{backend.model} was not measured on this task; `slm-desk train {task.name}` measures it as the "
            f"head's next tier (or `slm-desk calibrate {task.name}`)"
        )
        small = self.pipeline(task, backend, accept_at, learned=learned, unmeasured=unmeasured if first else None)
        larger = escalation_backend(self.config.escalation, runtime)
        return Cascade(
            small,
            escalation=self._escalation_tier(task, larger) if larger is not None else None,
            budget=Budget(self.config.escalation, self.store),
            consent=consent,
            head=first[0] if first else None,
            policy=first[1] if first else None,
        )

    def cascades(
        self,
        task: str | Task,
        workers: int,
        model_id: str | None = None,
        runtime: RuntimeConfig | None = None,
        accept_at: float | None = None,
        consent: bool = False,
        learned: bool = True,
        adapter: bool = True,
    ) -> list[Cascade]:
        """Cascades for `workers` parallel callers. A local model gets one copy per worker (weights shared through
        mmap, each copy its own context and lock) with the cores split between them; a server backend is
        thread-safe, so one cascade serves every worker."""
        runtime = runtime or self.config.runtime
        if runtime.backend != "local" or workers == 1:
            return [self.cascade(task, model_id, runtime, accept_at, consent, learned=learned, adapter=adapter)]
        share = max(1, (runtime.threads or physical_cores()) // workers)
        runtime = runtime.model_copy(update={"threads": share})
        return [
            self.cascade(task, model_id, runtime, accept_at, consent, replica=i, learned=learned, adapter=adapter)
            for i in range(workers)
        ]

    def _escalation_tier(self, task: Task, larger: Backend) -> Pipeline:
        """The larger model's tier: accepted where `calibrate --escalation` measured it, else reviewed."""
        unmeasured = (
            f"{larger.model} (the escalation target) was never measured on {task.name} v{task.version}: "
            f"`slm-desk calibrate {task.name} --escalation` measures it; to accept its valid answers unmeasured, set "
            "accept_unmeasured = true in the task file"
        )
        return Pipeline(task, larger, self.profile(task, larger.model), tier="escalation", unmeasured=unmeasured)

    def evaluate(
        self,
        task: Task,
        items: list[dict[str, Any]],
        model_id: str | None = None,
        escalate: bool = False,
        concurrency: int = 1,
        accept_at: float | None = None,
        progress: Callable[[int, int], None] | None = None,
        learned: bool = True,
        adapter: bool = True,
        llm_alone: bool = False,
        items_out: Path | None = None,
    ) -> dict[str, Any]:
        """`eval`: the task's cascade, as `run` would build it, over a gold set; nothing is written to the history.
        `learned=False` is the static prompt (no pool, no head); `adapter=False` leaves a tuned adapter off;
        `items_out` gets each item's envelope beside its gold answer."""
        cascades = self.cascades(task, concurrency, model_id, None, accept_at, escalate, learned, adapter)
        report = evaluate.run_eval(cascades, task, items, self.config.costs, progress, llm_alone, items_out)
        return {**report, "learned": learned}

    def working(self) -> str:
        """What a local model is doing now ("smollm2-135m was loading"), or "" when none is busy: quitting the app
        does not wait for llama.cpp, which cannot be interrupted."""
        return backends.working()

    def close(self) -> None:
        self.store.close()
