"""`bench`: the numbers a person needs to pick a model for this machine.

Load time, prompt and generation tokens/s (free text and JSON-constrained), end-to-end latency per task item
through the real pipeline, and peak memory. Every number comes from one run on this machine: compare models
by running bench for each, not against numbers from elsewhere.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from slm_desk.contract import prompt
from slm_desk.contract.tasks import Task
from slm_desk.data import adapters
from slm_desk.data.catalog import resolve_model
from slm_desk.data.config import RuntimeConfig
from slm_desk.judge.pipeline import Pipeline, no_shots
from slm_desk.learn.metrics import percentile
from slm_desk.models import backends

FREE_TEXT = "Write a short note to a colleague about the quarterly report."


def peak_memory_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_bench(
    model_id: str,
    runtime: RuntimeConfig,
    task: Task,
    inputs: list[str],
    progress: Callable[[int, int], None] | None = None,
    adapter: bool = True,
) -> dict[str, Any]:
    model = resolve_model(model_id)
    tuned = adapters.for_task(task, model) if adapter else None
    backend = backends.local(model, runtime, adapter=tuned.path if tuned else None)
    engine = backend.engine
    shots: list[tuple[str, str]] | None = [] if tuned else None
    with backend.lock:
        long_prompt = engine.tokenize(engine.render(prompt.task_messages(task, inputs[0], shots)))
        prompt_tps = engine.prompt_speed(long_prompt)
        free = engine.tokenize(engine.render([{"role": "user", "content": FREE_TEXT}]))
        free_tps = engine.free_text_speed(free, 64)
        started = time.perf_counter()
        json_tokens = engine.generate_json(long_prompt, task.output_schema, 64).completion_tokens
        json_tps = json_tokens / max(time.perf_counter() - started, 1e-9)

    pipeline = Pipeline(task, backend, shots=no_shots if tuned else None)
    latencies = []
    for i, text in enumerate(inputs, 1):
        latencies.append(pipeline.answer(text).ms)
        if progress:
            progress(i, len(inputs))
    return {
        "model": backend.model,
        "file_bytes": model.path.stat().st_size,
        "threads": engine.threads,
        "gpu_layers": engine.gpu_layers,
        "generation": runtime.generation,
        "load_seconds": engine.load_seconds,
        "prompt_tokens_per_s": prompt_tps,
        "generation_tokens_per_s_free_text": free_tps,
        "generation_tokens_per_s_json_grammar": json_tps,
        "task": task.name,
        "items": len(inputs),
        "latency_ms_mean": sum(latencies) / len(latencies),
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "peak_memory_bytes": peak_memory_bytes(),
    }
