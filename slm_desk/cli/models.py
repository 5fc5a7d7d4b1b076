"""`slm-desk pull` and `slm-desk models`: get, inspect, remove and choose models."""

from __future__ import annotations

import argparse
import json
import sys

from slm_desk import exit_codes

PULL_HELP = """\
Download a GGUF model into slm-desk's model folder and verify it.

Before the first byte: the exact size is checked against free disk space, the file's header is read (one
small Range request) to refuse non-GGUF files and to estimate memory (file + KV cache at [runtime] n_ctx)
against this machine's RAM. The file is moved into place only when complete and its sha256 matches the
catalog or the hub's LFS hash. Interrupt it any time: the same command resumes.

examples:
  slm-desk pull qwen2.5-1.5b
  slm-desk pull hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf
  HF_TOKEN=hf_... slm-desk pull gemma-3-1b      # gated repositories need a token
"""


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pull = commands.add_parser(
        "pull",
        help="download and verify a model from the Hugging Face hub",
        description=PULL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pull.add_argument("source", help="catalog id (see `slm-desk models`) or hf://ORG/REPO/FILE.gguf[@REVISION]")
    pull.add_argument("--force", action="store_true", help="download even if the memory estimate says it will not fit")
    pull.set_defaults(handler=cmd_pull)

    models = commands.add_parser(
        "models",
        help="list, inspect, remove models; set the defaults",
        description="List the catalog and installed models, or:\n"
        "  slm-desk models info ID                  GGUF metadata from the file header (no weights loaded)\n"
        "  slm-desk models rm ID                    remove an installed model\n"
        "  slm-desk models default small|escalation|embedding ID   set a default in config.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models.add_argument(
        "action", nargs="?", choices=["info", "rm", "default"], help="without one: list the catalog and what is here"
    )
    models.add_argument("args", nargs="*", help="ID, or ROLE ID for default")
    models.add_argument("--json", action="store_true", help="print JSON (for the list and info)")
    models.set_defaults(handler=cmd_models)


def cmd_pull(args: argparse.Namespace) -> int:
    from slm_desk.cli.progress import ByteProgress
    from slm_desk.data import download
    from slm_desk.data.config import load_config

    config = load_config()
    bar = ByteProgress(args.source.rsplit("/", 1)[-1])

    def plan(estimate, missing: int) -> None:  # type: ignore[no-untyped-def]
        if estimate is not None:
            print(f"memory: {estimate.describe()}", file=sys.stderr)
        print(f"downloading {missing / 2**20:,.1f} MiB", file=sys.stderr)

    budget = int(config.models.memory_budget_gb * 2**30) if config.models.memory_budget_gb else None
    try:
        pulled = download.pull(
            args.source, n_ctx=config.runtime.n_ctx, progress=bar, on_plan=plan, force=args.force, memory_budget=budget
        )
    except KeyboardInterrupt:
        bar.finish()
        print(
            "slm-desk: pull interrupted; the partial download is kept: run the same command to resume", file=sys.stderr
        )
        return 130
    bar.finish()
    if pulled.already_installed:
        print(f"{pulled.id} is already installed: {pulled.path}")
    else:
        print(f"installed {pulled.id}: {pulled.path} ({pulled.size:,} bytes, sha256 {pulled.sha256})")
        if pulled.unverified:
            print(f"warning: {pulled.unverified}", file=sys.stderr)
        print(f"use it: slm-desk run TASK --model {pulled.id}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    if args.action is None:
        from slm_desk.data.catalog import listing
        from slm_desk.data.config import load_config

        rows = listing(load_config())
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"{'id':<20} {'size':>9} {'installed':<10} {'role':<11} {'licence':<28} good for")
        for row in rows:
            state = "bundled" if row["bundled"] and row["installed"] else ("yes" if row["installed"] else "-")
            role = str(row["role"] or "") + ("*" if row["default_for"] else "")
            size = f"{int(row['size_bytes'] or 0) / 1e9:.2f} GB" if row["size_bytes"] else "?"
            print(f"{row['id']:<20} {size:>9} {state:<10} {role:<11} {str(row['license'])[:27]:<28} {row['good_for']}")
        print("\n* = a default (config.toml [models]); get one with: slm-desk pull ID", file=sys.stderr)
        return 0
    if args.action == "info":
        return _info(args)
    if args.action == "rm":
        from slm_desk.data import download

        _need(args, 1, "slm-desk models rm ID")
        print(f"removed {download.remove(args.args[0])}")
        return 0
    _need(args, 2, "slm-desk models default small|escalation|embedding ID")
    return _set_default(*args.args)


def _need(args: argparse.Namespace, count: int, usage: str) -> None:
    if len(args.args) != count:
        from slm_desk.errors import UsageError

        raise UsageError(f"wrong arguments for models {args.action}", f"usage: {usage}")


def _info(args: argparse.Namespace) -> int:
    from slm_desk.data.catalog import resolve_model
    from slm_desk.data.config import load_config
    from slm_desk.data.gguf_header import NotGGUF, Truncated, read_file_layout, shape
    from slm_desk.errors import UsageError

    _need(args, 1, "slm-desk models info ID")
    model = resolve_model(args.args[0])
    try:
        meta, layout = read_file_layout(model.path)
    except (NotGGUF, Truncated) as exc:
        raise UsageError(
            f"{model.path} is not a readable GGUF model ({exc})", "pass a .gguf model file, or see `slm-desk models`"
        ) from exc
    s = shape(meta)
    n_ctx = load_config().runtime.n_ctx
    info = {
        "id": model.id,
        "path": str(model.path),
        "size_bytes": model.path.stat().st_size,
        "architecture": s.architecture,
        "name": s.name,
        "parameters": s.size_label,
        "quantization": s.quantization,
        "context_length": s.context_length,
        "layers": s.layers,
        "kv_heads": s.kv_heads,
        "chat_template": s.has_chat_template,
        "kv_cache_bytes_at_n_ctx": s.kv_cache_bytes(n_ctx),
        "n_ctx": n_ctx,
        "tensor_bytes": layout.needed_bytes if layout else None,
        "complete": None if layout is None else not layout.cut_short,
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:<24} {value}")
    if layout is not None and layout.cut_short:
        print(
            f"slm-desk: error: {model.path} is cut short: its tensors need {layout.needed_bytes:,} bytes, the file "
            f"has {layout.file_bytes:,}\n  hint: pull it again, or pass another .gguf file",
            file=sys.stderr,
        )
        return exit_codes.USAGE
    return 0


def _set_default(role: str, model_id: str) -> int:
    from slm_desk.data.catalog import resolve_model
    from slm_desk.data.config import set_value
    from slm_desk.errors import UsageError

    if role not in ("small", "escalation", "embedding"):
        raise UsageError(f"unknown role {role!r}", "use small, escalation or embedding")
    resolve_model(model_id)  # must be installed
    if role == "embedding":
        from slm_desk.data.catalog import load_catalog

        entry = load_catalog().get(model_id)
        if entry is not None and entry.role != "embedding":
            raise UsageError(
                f"{model_id} is a {entry.role} model, not a sentence encoder",
                "`slm-desk models` lists the embedding models by role",
            )
    set_value("models", role, model_id)
    print(f"default {role} model: {model_id}")
    return 0
