"""Commands that describe the installation: `tasks`, `paths`, `doctor`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from slm_desk import exit_codes, locations
from slm_desk.data.catalog import BUNDLED_ID, BUNDLED_INSTALL, EMBEDDING_ID, EMBEDDING_INSTALL, bundled_model_path
from slm_desk.errors import UsageError


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tasks = commands.add_parser(
        "tasks",
        help="list task contracts, or print one",
        description="List the tasks (built-in and yours), or print one task file.\n\n"
        "Your tasks live in the folder `slm-desk paths` shows as 'tasks'; a file there named like a\n"
        "built-in task overrides it. Start from a built-in one:\n"
        '  slm-desk tasks show extract-ticket > "$(slm-desk paths --get tasks)/my-task.toml"\n'
        "  slm-desk tasks check my-task     # its schema, validators, examples and llama.cpp grammar",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tasks.add_argument(
        "action",
        nargs="?",
        choices=["show", "check"],
        help="show: print the task file NAME; check: everything the runtime would refuse in it (exit 2 when any)",
    )
    tasks.add_argument("name", nargs="?", help="task name, with show or check")
    tasks.set_defaults(handler=cmd_tasks)

    paths = commands.add_parser("paths", help="print where config, data, models and logs live")
    paths.add_argument("--json", action="store_true", help="print JSON")
    paths.add_argument("--get", metavar="KEY", help="print one path only (config, tasks, data, history, models, logs)")
    paths.set_defaults(handler=cmd_paths)

    doctor = commands.add_parser(
        "doctor",
        help="check the llama.cpp build, paths and a tiny inference",
        description="Print llama.cpp's CPU features and GPU backends, the model and data paths, and run a tiny\n"
        "inference in a child process. A crash there (e.g. SIGILL from a build for the wrong CPU) is\n"
        "reported with the command that fixes it. Exit 0 when healthy, 1 otherwise.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.set_defaults(handler=cmd_doctor)


def cmd_tasks(args: argparse.Namespace) -> int:
    from slm_desk.contract import tasks

    if args.action in ("show", "check") and not args.name:
        raise UsageError(f"tasks {args.action} needs a task name", "list them with `slm-desk tasks`")
    if args.action == "check":
        from slm_desk.desk import Desk

        task = tasks.load_task(args.name)  # the file's own checks: refused here with every reason
        found = Desk().check_task(task)
        if found:
            print(f"slm-desk: task {task.name!r} ({task.source}) would fail at run time:", file=sys.stderr)
            print("\n".join(f"  - {p}" for p in found), file=sys.stderr)
            return exit_codes.USAGE
        print(f"{task.name}: ok (schema, validators, {len(task.examples)} examples, llama.cpp grammar)")
        return 0
    if args.action == "show":
        text, _ = tasks.task_text(args.name)
        tasks.load_task(args.name)
        print(text, end="" if text.endswith("\n") else "\n")
        return 0
    for name, origin in tasks.task_names().items():
        try:
            summary = tasks.load_task(name).description
        except Exception as exc:  # a broken user file must not hide the others; the whole reason is shown
            summary = "BROKEN: " + str(exc).replace("\n", "\n" + " " * 36)
        print(f"{name:<18} {origin:<9} {summary}")
    return 0


def cmd_paths(args: argparse.Namespace) -> int:
    paths = {key: str(value) for key, value in locations.all_paths().items()}
    if args.get:
        if args.get not in paths:
            raise UsageError(f"unknown path {args.get!r}", f"one of: {', '.join(paths)}")
        print(paths[args.get])
    elif args.json:
        print(json.dumps(paths, indent=2))
    else:
        for key, value in paths.items():
            print(f"{key:<12} {value}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from slm_desk.data import hardware
    from slm_desk.models import doctor

    build = hardware.llama_build_info()
    print(f"llama-cpp-python {build['llama_cpp_python']}")
    print(f"  {build['system_info']}")
    gpu = "yes (Metal/CUDA build)" if build["gpu_offload"] else "no (CPU build)"
    print(f"  GPU offload: {gpu}; mmap: {build['mmap']}")
    print(f"physical cores: {hardware.physical_cores()}; memory: {hardware.total_memory_bytes() / 2**30:.1f} GiB")
    for key, value in locations.all_paths().items():
        print(f"{key:<12} {value}")
    model = bundled_model_path()
    if model is None:
        print(f"bundled model {BUNDLED_ID}: NOT INSTALLED\n  hint: {BUNDLED_INSTALL}")
        return exit_codes.FAILED
    print(f"bundled model {BUNDLED_ID}: {model}")
    result = doctor.probe_inference(doctor.probe_command(str(model)))
    print(f"tiny inference: {result.message}")
    if not result.ok:
        print(f"  hint: {result.hint}")
    embedding_ok = _doctor_embedding(doctor)
    return 0 if result.ok and embedding_ok else 1


def _doctor_embedding(doctor: Any) -> bool:
    """The sentence encoder a trained head reads ([models] embedding): where it is, and one embedding from it."""
    from slm_desk.data.catalog import resolve_model
    from slm_desk.data.config import load_config
    from slm_desk.errors import ModelNotFound

    model_id = load_config().models.embedding
    if not model_id:
        print('embedding model: off ([models] embedding = ""): heads read TF-IDF alone')
        return True
    try:
        ref = resolve_model(model_id)
    except ModelNotFound as exc:
        hint = EMBEDDING_INSTALL if model_id == EMBEDDING_ID else exc.hint
        print(f"embedding model {model_id}: NOT INSTALLED (heads read TF-IDF alone)\n  hint: {hint}")
        return False
    result = doctor.probe_inference(doctor.probe_command(str(ref.path), embedding=True))
    print(f"embedding model {model_id}: {ref.path}\ntiny embedding: {result.message}")
    if not result.ok:
        print(f"  hint: {result.hint}")
    return bool(result.ok)
