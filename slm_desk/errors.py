"""Errors a person can act on: every one carries a hint that names the fix, and an exit code."""

from __future__ import annotations

from slm_desk import exit_codes


class SlmDeskError(Exception):
    """Base error. `hint` tells the user what to do next; `exit_code` is what the CLI returns."""

    exit_code = exit_codes.FAILED

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class UsageError(SlmDeskError):
    """The command line or its input is wrong: unknown task, empty or non-text input."""

    exit_code = exit_codes.USAGE


class InputTooLong(UsageError):
    """The input does not fit the model's context window; we never truncate silently."""


class TaskError(UsageError):
    """A task file cannot be read, or asks for something we cannot enforce."""


class ConfigError(UsageError):
    """config.toml is malformed, or a folder slm-desk keeps things in cannot be created."""


class ModelNotFound(UsageError):
    """The requested model is not installed."""


class ModelFileError(UsageError):
    """A model file that cannot be used as it is (not GGUF, truncated, refused by llama.cpp), or settings it
    cannot run with: the fix is the user's (pull it again, another file, another n_ctx)."""


class RuntimeFailure(SlmDeskError):
    """llama.cpp failed to load a model or to generate."""


class Cancelled(Exception):
    """The caller asked to stop mid-generation (Esc in the TUI). Not an error: nothing is reported."""
