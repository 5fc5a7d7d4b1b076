"""`slm-desk tune`: fine-tune the small model on a task's labelled examples and write a LoRA adapter for llama.cpp.

The base weights are the installed GGUF itself, dequantized by transformers (through the `gguf` package), so
nothing else is downloaded. Training sequences are tokenized by llama.cpp from the exact messages `run` sends
to a tuned model (chat template, instructions, input, no few-shot turns) and the answer tokens exactly as `run`
feeds and samples them; the loss is on the answer only. The adapter is written in the GGUF LoRA layout of
llama.cpp's own `convert_lora_to_gguf.py` (tensor names, `adapter.*` keys, q/k rows permuted for llama).

torch, transformers, peft and gguf are the optional `tune` extra, imported only here and only when tuning.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slm_desk.contract import prompt
from slm_desk.data import adapters
from slm_desk.data.config import RuntimeConfig
from slm_desk.errors import UsageError
from slm_desk.models import backends
from slm_desk.models.values import values_layout, values_only_supported

if TYPE_CHECKING:
    from slm_desk.contract.tasks import Task
    from slm_desk.data.catalog import ModelRef
    from slm_desk.models.runtime import Engine

EXTRA = ("torch", "transformers", "peft", "gguf")
INSTALL = "pip install 'slm-desk[tune]' (or scripts/install.sh --tune)"
# Hugging Face module -> llama.cpp tensor name, for every linear layer a LoRA adapts
TARGETS = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
SUPPORTED = ("llama", "qwen2")
ROPE_PERMUTED = ("llama",)  # convert_hf_to_gguf permutes q/k rows for these; transformers undoes it on load

# step, total steps, loss of that step
OnStep = Callable[[int, int, float], None]
OnPhase = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    epochs: int = 2
    rank: int = 8
    learning_rate: float = 1e-3
    batch_size: int = 8
    seed: int = 0

    @property
    def alpha(self) -> int:
        return 2 * self.rank


@dataclass(frozen=True)
class Example:
    tokens: list[int]
    answer_from: int  # index of the first answer token: the loss starts here


def require_extra() -> None:
    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"tuning needs {', '.join(missing)}, which are not installed", INSTALL)


def answer_tokens(engine: Engine, task: Task, output: dict[str, Any]) -> list[int]:
    """The answer as `run` produces it: in values mode piece by piece, as `Engine.generate_values` feeds and
    samples it (`values_layout`), then end of turn."""
    schema = task.output_schema
    if engine.config.generation == "values" and values_only_supported(schema):
        tokens: list[int] = []
        for piece in values_layout(schema):
            tokens += engine.tokenize_plain(piece.key_text) + engine.tokenize_plain(piece.value_text(output[piece.key]))
    else:
        tokens = engine.tokenize_plain(json.dumps(output, ensure_ascii=False))
    return [*tokens, engine.eos]


def encode(engine: Engine, task: Task, text: str, output: dict[str, Any]) -> Example:
    prompt_tokens = engine.tokenize(engine.render(prompt.task_messages(task, text, shots=[])))
    return Example(prompt_tokens + answer_tokens(engine, task, output), len(prompt_tokens))


def split(
    items: list[tuple[str, dict[str, Any]]], holdout: int, seed: int
) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    """A seeded shuffle, then `holdout` items set apart: they judge the adapter and are never trained on."""
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    return shuffled[holdout:], shuffled[:holdout]


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_base(model: ModelRef, device: str) -> Any:
    """The GGUF's weights in torch, dequantized to float32 (float16/bfloat16 would round the base further)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        # transformers' GGUF reader draws its own bar on stderr whatever the settings; our phases say what happens
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            base = AutoModelForCausalLM.from_pretrained(
                str(model.path.parent), gguf_file=model.path.name, dtype=torch.float32
            )
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise UsageError(
            f"transformers cannot read {model.path.name} for training ({exc})",
            f"tune supports GGUF models of architectures {', '.join(SUPPORTED)}",
        ) from exc
    if base.config.model_type not in SUPPORTED:
        raise UsageError(
            f"tuning {base.config.model_type} models is not supported",
            f"use a model of architecture {', '.join(SUPPORTED)}",
        )
    return base.to(device)  # type: ignore[arg-type]  # transformers' stub wants a device object


def with_lora(base: Any, settings: Settings) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(settings.seed)
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=0.0,
        target_modules=list(TARGETS),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft asks transformers about a renamed attribute
        return get_peft_model(base, config)


def batches(examples: list[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Examples of similar length together (little padding), batch order shuffled."""
    ordered = sorted(examples, key=lambda e: len(e.tokens))
    groups = [ordered[i : i + size] for i in range(0, len(ordered), size)]
    rng.shuffle(groups)
    return groups


def tensors(batch: list[Example], pad: int, device: str) -> dict[str, Any]:
    import torch

    width = max(len(e.tokens) for e in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.tokens)
        ids[row, :n] = torch.tensor(example.tokens)
        mask[row, :n] = 1
        labels[row, example.answer_from : n] = torch.tensor(example.tokens[example.answer_from :])
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def answer_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy of the answer tokens. The vocabulary projection runs on answer positions only: for a
    small model with a large vocabulary it is a fifth of the compute, and prompt positions have no loss anyway."""
    import torch

    causal_lm = model.get_base_model()
    hidden = causal_lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    scored = targets != -100
    logits = causal_lm.lm_head(hidden[:, :-1][scored])
    return torch.nn.functional.cross_entropy(logits.float(), targets[scored])


def train(model: Any, examples: list[Example], settings: Settings, pad: int, on_step: OnStep | None = None) -> float:
    """AdamW on the LoRA weights with linear warm-up and decay; returns the mean loss of the last epoch."""
    import torch

    device = str(next(model.parameters()).device.type)
    rng = random.Random(settings.seed)
    plan = [batches(examples, settings.batch_size, rng) for _ in range(settings.epochs)]
    total = sum(len(epoch) for epoch in plan)
    warmup = max(1, total // 20)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.05, (total - step) / total)
    )
    model.train()
    step, last_epoch = 0, list[float]()
    for epoch in plan:
        last_epoch = []
        for batch in epoch:
            loss = answer_loss(model, tensors(batch, pad, device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            last_epoch.append(float(loss.item()))
            if on_step is not None:
                on_step(step, total, last_epoch[-1])
    model.eval()
    return sum(last_epoch) / max(len(last_epoch), 1)


def _permute(weights: Any, n_head: int) -> Any:
    """llama.cpp's row order for rotary heads (convert_hf_to_gguf's LlamaModel.permute), applied to LoRA B."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def lora_tensors(model: Any) -> dict[str, Any]:
    """llama.cpp tensor name -> float32 array, for every LoRA pair: `blk.N.attn_q.weight.lora_a` is A (rank x in),
    `.lora_b` is B (out x rank), as llama.cpp's adapter loader expects them."""
    config = model.base_model.model.config
    permuted = config.model_type in ROPE_PERMUTED
    heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}
    out: dict[str, Any] = {}
    for name, module in model.named_modules():
        if not hasattr(module, "lora_A") or "default" not in module.lora_A:
            continue
        match = re.search(r"layers\.(\d+)\..*\.(\w+_proj)$", name)
        if match is None or match[2] not in TARGETS:
            continue
        a = module.lora_A["default"].weight.detach().float().cpu().numpy()
        b = module.lora_B["default"].weight.detach().float().cpu().numpy()
        if permuted and match[2] in heads:
            b = _permute(b, heads[match[2]])
        stem = f"blk.{match[1]}.{TARGETS[match[2]]}.weight"
        out[f"{stem}.lora_a"] = a
        out[f"{stem}.lora_b"] = b
    return out


def write_adapter(model: Any, settings: Settings, path: Path, meta: dict[str, Any]) -> None:
    """The GGUF LoRA file, written beside `path` and moved into place: never a half-written adapter."""
    import gguf

    architecture = model.base_model.model.config.model_type
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), architecture)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, settings.alpha)
        for key, value in meta.items():
            if isinstance(value, int):
                writer.add_uint32(adapters.KEY + key, value)
            else:
                writer.add_string(adapters.KEY + key, value if isinstance(value, str) else json.dumps(value))
        for name, array in lora_tensors(model).items():
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(partial, 0o600)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@dataclass
class Tuned:
    model: Any  # the trained PEFT model, to rewrite the adapter's report
    path: Path
    examples: int
    held_out: list[tuple[str, dict[str, Any]]]
    final_loss: float
    seconds: float
    device: str
    meta: dict[str, Any]
    settings: Settings


def tune(
    task: Task,
    model: ModelRef,
    items: list[tuple[str, dict[str, Any]]],
    settings: Settings,
    holdout: int,
    limit: int | None = None,
    runtime: RuntimeConfig | None = None,
    on_phase: OnPhase | None = None,
    on_step: OnStep | None = None,
) -> Tuned:
    """Train on `items` less `holdout` of them (the first `limit` only, when given) and install the adapter for
    (task, model). An interrupt leaves no file and the previous adapter, if any, in place."""
    require_extra()
    import torch

    say = on_phase or (lambda _text: None)
    train_items, held = split(items, holdout, settings.seed)
    train_items = train_items[:limit] if limit else train_items
    if not train_items:
        raise UsageError(
            f"no examples left to train on ({len(items)} given, {holdout} held out)",
            f"add labelled examples: slm-desk examples add {task.name} FILE.jsonl",
        )
    runtime = runtime or RuntimeConfig()
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    say(f"tokenizing {len(train_items)} examples as `run` prompts them")
    local = backends.local(model, runtime)  # its generation mode decides how the answer is tokenized
    with local.lock:
        examples = [encode(local.engine, task, text, output) for text, output in train_items]
        pad = local.engine.eos
    device = device_name()
    say(f"reading the base weights from {model.path.name} (dequantized to float32, on {device})")
    started = time.perf_counter()
    peft_model = with_lora(load_base(model, device), settings)
    epochs = f"{settings.epochs} epoch{'s' if settings.epochs != 1 else ''}"
    say(f"training a rank-{settings.rank} LoRA for {epochs}, loss on the answer tokens only")
    final_loss = train(peft_model, examples, settings, pad, on_step)
    seconds = time.perf_counter() - started
    meta: dict[str, Any] = {
        "task": task.name,
        "task_version": task.version,
        "base_model": model.id,
        "base_sha256": adapters.base_sha256(model),
        "rank": settings.rank,
        "examples": len(examples),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "report": {"epochs": settings.epochs, "final_loss": round(final_loss, 4), "seconds": round(seconds, 1)},
    }
    path = adapters.path_for(task.name, model.id)
    write_adapter(peft_model, settings, path, meta)
    return Tuned(peft_model, path, len(examples), held, final_loss, seconds, device, meta, settings)


def record(tuned: Tuned, report: dict[str, Any]) -> None:
    """Add `report` (the held-out before/after) to the installed adapter's own description."""
    tuned.meta["report"] = {**tuned.meta["report"], **report}
    write_adapter(tuned.model, tuned.settings, tuned.path, tuned.meta)
