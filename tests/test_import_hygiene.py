"""The core never imports Textual (nor llama_cpp at import time): the CLI and pipe mode stay light."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import slm_desk

CORE = sorted(
    f"slm_desk.{m.name}" for m in pkgutil.iter_modules(slm_desk.__path__) if m.name not in {"tui", "__main__"}
)


def test_core_modules_exist() -> None:
    assert {"slm_desk.runtime", "slm_desk.tasks", "slm_desk.cli", "slm_desk.store"} <= set(CORE)


def test_core_does_not_import_textual() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'llama_cpp')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"core modules pulled in: {out}"
