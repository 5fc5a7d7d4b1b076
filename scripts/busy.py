"""The small model on a busy machine: llama.cpp's OpenMP threads spin while they wait for each other, and when other
work holds a core a spinning thread burns it while its partner waits. This measures the settings that decide it,
each variant alternated with the others in one run, on the same inputs:

    .venv/bin/python scripts/busy.py [--reps 2] [--variants before,passive,active]

Conditions: quiet; one and two busy loops beside it (pure-Python `while True`); two slm-desk batches at once.
Workloads: one input (`slm-desk run --input`, the envelope's latency_ms and the whole process), and a batch of
30 held-out banking77 queries (`run --jsonl`, whole process), with a minimal llama-cpp-python loop over the same
messages (`create_chat_completion` with a JSON-schema response format) as the baseline. Section 10 of
scripts/benchmark.py runs this.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# [runtime] wait in each variant's config.toml; OMP_WAIT_POLICY is left unset, so the setting decides
VARIANTS = {
    "before": "default",  # OpenMP's own: a thread spins 300,000 rounds before it sleeps (slm-desk until this release)
    "passive": "passive",  # sleep at once: slm-desk's default now
    "active": "active",  # spin until the partner arrives
}
MINIMAL = """
import json, sys, llama_cpp
from slm_desk.contract import prompt
from slm_desk.contract.tasks import load_task
from slm_desk.data.catalog import BUNDLED_ID, resolve_model
from slm_desk.data.hardware import physical_cores
task = load_task("route-ticket")
llm = llama_cpp.Llama(model_path=str(resolve_model(BUNDLED_ID).path), n_ctx=2048,
                      n_threads=int(sys.argv[1]) or physical_cores(), verbose=False)
fmt = {"type": "json_object", "schema": task.output_schema}
for line in sys.stdin:
    out = llm.create_chat_completion(prompt.task_messages(task, line.strip()), response_format=fmt,
                                     temperature=0.0, max_tokens=task.max_tokens)
    print(out["choices"][0]["message"]["content"])
"""


def _env(variant: str | None, homes: dict[str, str]) -> dict[str, str]:
    """The environment of a run: the variant's home (its config.toml sets [runtime] wait), OpenMP's own vars unset."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if variant is not None:
        env["SLM_DESK_HOME"] = homes[variant]
    return env


def _homes(variants: list[str]) -> dict[str, str]:
    homes = {}
    for variant in variants:
        home = Path(tempfile.mkdtemp(prefix=f"slm-desk-busy-{variant}-"))
        (home / "config").mkdir(parents=True)
        (home / "config" / "config.toml").write_text(f'[runtime]\nwait = "{VARIANTS[variant]}"\n')
        homes[variant] = str(home)
    return homes


def single(variant: str, homes: dict[str, str]) -> tuple[float, float]:
    """(latency_ms of the answer, whole-process seconds) of one input."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "slm_desk", "run", "route-ticket", "--no-log", "--input",
         "I was charged twice for the same coffee, can I get one back?"],
        capture_output=True, env=_env(variant, homes), check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    return float(json.loads(done.stdout.decode().splitlines()[0])["latency_ms"]), wall


def batch(variant: str, homes: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "slm_desk", "run", "route-ticket", "--jsonl", "--no-log"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(variant, homes),
    )  # fmt: skip


def timed(children: list[subprocess.Popen[bytes]], lines: bytes) -> float:
    started = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write(lines)
        child.stdin.close()
    for child in children:
        child.wait()
    return time.perf_counter() - started


def minimal(homes: dict[str, str], lines: bytes) -> float:
    """The baseline as a user would write it: OpenMP's own defaults."""
    child = subprocess.Popen(
        [sys.executable, "-c", MINIMAL, "0"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=_env(None, homes),
    )  # fmt: skip
    return timed([child], lines)


def burners(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def report(variants: list[str], reps: int) -> dict[str, dict[str, list[float]]]:
    from slm_desk.data.evalset import builtin, read_jsonl

    queries = [g["input"].replace("\n", " ") for g in read_jsonl(builtin("route-ticket"))][:30]  # type: ignore[arg-type]
    lines = "".join(q + "\n" for q in queries).encode()
    homes = _homes(variants)
    table: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    baseline: list[float] = []

    def add(variant: str, key: str, value: float) -> None:
        table[variant].setdefault(key, []).append(value)

    single(variants[0], homes)  # warm the page cache: the first load reads the model from disk
    for rep in range(reps):
        for load in (0, 1, 2):
            hot = burners(load)
            try:
                time.sleep(0.5)
                for variant in variants if rep % 2 == 0 else variants[::-1]:  # alternated, the order reversed
                    latency, wall = single(variant, homes)
                    add(variant, f"single, {load} busy: latency ms", latency)
                    add(variant, f"single, {load} busy: process s", wall)
                    add(variant, f"batch of 30, {load} busy: s", timed([batch(variant, homes)], lines))
                    if load == 0:
                        baseline.append(minimal(homes, lines))
            finally:
                for burner in hot:
                    burner.kill()
        for variant in variants if rep % 2 == 0 else variants[::-1]:
            one = timed([batch(variant, homes)], lines)
            two = timed([batch(variant, homes), batch(variant, homes)], lines)
            add(variant, "two batches at once / one after the other", two / (2 * one))
    for variant in variants:
        table[variant]["minimal llama-cpp-python loop, quiet: s"] = baseline
    return table


def print_table(table: dict[str, dict[str, list[float]]]) -> None:
    variants = list(table)
    keys = list(next(iter(table.values())))
    print(f"{'condition':<44}" + "".join(f"{v:>14}" for v in variants))
    for key in keys:
        print(f"{key:<44}" + "".join(f"{statistics.median(table[v][key]):>14.2f}" for v in variants))
    for v in variants:
        quiet = statistics.median(table[v]["batch of 30, 0 busy: s"])
        ratio = quiet / statistics.median(table[v]["minimal llama-cpp-python loop, quiet: s"])
        alone = statistics.median(table[v]["single, 0 busy: latency ms"])
        busy = statistics.median(table[v]["single, 2 busy: latency ms"])
        print(
            f"  {v}: quiet batch / minimal loop {ratio:.2f}; one input beside two busy loops {busy / alone:.1f}x quiet"
        )


def section(variants: list[str], reps: int) -> None:
    """Section 10 of scripts/benchmark.py: measure, then print the table."""
    started = time.perf_counter()
    table = report(variants, reps)
    print(f"\n10. a busy machine: medians of {reps} alternated runs ({time.perf_counter() - started:.0f} s)")
    print_table(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    section(args.variants.split(","), args.reps)


if __name__ == "__main__":
    main()
