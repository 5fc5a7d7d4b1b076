"""Where slm-desk keeps things. Each function returns (and creates) one folder.

`SLM_DESK_HOME` relocates everything under one folder, which is what tests and portable installs use.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from slm_desk.errors import ConfigError

APP_NAME = "slm-desk"


def _home() -> Path | None:
    home = os.environ.get("SLM_DESK_HOME")
    return Path(home).expanduser() if home else None


def _ensure(path: Path) -> Path:
    """The folder, created private to the user (0700): it holds logged inputs and settings. Every folder it has
    to create is made 0700, SLM_DESK_HOME itself included (`mkdir(parents=True)` makes the parents with the
    umask's mode: 0777 under umask 000)."""
    try:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        home = os.environ.get("SLM_DESK_HOME")
        raise ConfigError(
            f"cannot create the folder {path}: {exc.strerror or exc}",
            f"SLM_DESK_HOME={home} must be a folder you can write: point it at one, or unset it for the default folders"
            if home
            else "slm-desk keeps its settings and history there: make it writable, or set SLM_DESK_HOME to a "
            "folder you can write",
        ) from exc
    return path


def config_dir() -> Path:
    """Config files a person edits: config.toml, tasks/, models.toml."""
    home = _home()
    return _ensure(home / "config" if home else platformdirs.user_config_path(APP_NAME))


def data_dir() -> Path:
    """The history and review store (SQLite) and eval sets."""
    home = _home()
    return _ensure(home / "data" if home else platformdirs.user_data_path(APP_NAME))


def models_dir() -> Path:
    """Downloaded GGUF models."""
    return _ensure(data_dir() / "models")


def log_dir() -> Path:
    home = _home()
    return _ensure(home / "logs" if home else platformdirs.user_log_path(APP_NAME))


def user_tasks_dir() -> Path:
    """User task files; a file here named like a built-in task overrides it."""
    return _ensure(config_dir() / "tasks")


def config_file() -> Path:
    return config_dir() / "config.toml"


def history_db() -> Path:
    return data_dir() / "history.sqlite3"


def all_paths() -> dict[str, Path]:
    return {
        "config": config_dir(),
        "config_file": config_file(),
        "tasks": user_tasks_dir(),
        "data": data_dir(),
        "history": history_db(),
        "models": models_dir(),
        "logs": log_dir(),
    }
