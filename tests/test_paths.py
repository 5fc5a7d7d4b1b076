from __future__ import annotations

import json
from pathlib import Path


def test_slm_desk_home_relocates_everything(cli, slm_home: Path) -> None:
    result = cli("paths", "--json")
    paths = json.loads(result.stdout)
    assert set(paths) >= {"config", "data", "models", "logs", "history", "tasks"}
    for value in paths.values():
        assert Path(value).is_relative_to(slm_home), value
    assert cli("paths", "--get", "tasks").stdout.strip() == paths["tasks"]


def test_a_home_that_cannot_be_created_is_a_usage_error_naming_the_fix(cli, tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SLM_DESK_HOME", str(blocker / "home"))  # under a file: no folder can be made there
    for args in (("tasks",), ("run", "route-ticket", "--input", "where is my card")):
        result = cli(*args)
        assert result.returncode == 2 and "internal error" not in result.stderr, result.stderr
        assert f"cannot create the folder {blocker / 'home'}" in result.stderr
        assert f"hint: SLM_DESK_HOME={blocker / 'home'} must be a folder you can write" in result.stderr


def test_help_teaches_exit_codes_and_examples(cli) -> None:
    result = cli("run", "--help")
    assert result.returncode == 0
    for text in ("exit codes:", "  3  some answer invalid", "  4  some answer valid but needs", "--jsonl", "examples:"):
        assert text in result.stdout


def test_tasks_list_and_show(cli) -> None:
    listing = cli("tasks").stdout
    for name in ("rewrite-query", "extract-ticket", "extract-booking", "draft-reply", "route-ticket", "guard"):
        assert name in listing
    shown = cli("tasks", "show", "extract-ticket")
    assert shown.returncode == 0 and 'pattern": "^INV-' in shown.stdout


def test_usage_mistakes_exit_2_with_a_hint(cli) -> None:
    for args in (["tasks", "show"], ["paths", "--get", "nope"], ["models", "rm"]):
        result = cli(*args)
        assert result.returncode == 2 and "hint:" in result.stderr, args
