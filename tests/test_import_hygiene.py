"""The core never imports Textual (nor llama_cpp at import time): the CLI and pipe mode stay light."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import slm_desk

ROOT = Path(__file__).resolve().parent.parent

CORE = sorted(
    m.name
    for m in pkgutil.walk_packages(slm_desk.__path__, "slm_desk.")
    if m.name.split(".")[1] not in {"tui", "__main__"}
)


def test_core_modules_exist() -> None:
    assert {"slm_desk.models.runtime", "slm_desk.contract.tasks", "slm_desk.cli", "slm_desk.data.store"} <= set(CORE)


def test_core_does_not_import_textual() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'llama_cpp')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"core modules pulled in: {out}"


@pytest.mark.model
def test_running_a_task_never_imports_the_tuning_stack(tmp_path: object) -> None:
    """torch and friends are an optional extra: a real run (with an adapter lookup) must not need them."""
    code = (
        "import sys\n"
        "from slm_desk.cli import main\n"
        "rc = main(['run', 'extract-ticket', '--input', 'Duplicate charge on invoice INV-8821.', '--no-log'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'peft', 'gguf'))\n"
        "print(rc, heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stderr.strip().endswith("[]"), done.stderr[-500:]
    assert done.stderr.strip().split()[-2] in ("0", "3", "4")  # answered: accepted, invalid or sent to review


def test_the_fast_tier_cannot_load_a_model(cli) -> None:
    """This test is not marked `model`, so a model load in it, here or in a child, fails and says how to mend it."""
    with pytest.raises(pytest.fail.Exception, match="mark the test `model`"):
        cli("run", "route-ticket", "--input", "my card is stuck in the ATM")


def test_the_layer_contract_holds() -> None:
    """`lint-imports` with pyproject.toml's contracts: each module imports only its own layer or those below."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_module_imports_itself_back_through_others() -> None:
    """No import circle anywhere in slm_desk, type-checking imports included."""
    import grimp

    graph = grimp.build_graph("slm_desk", exclude_type_checking_imports=False)
    circles = [
        (module, other)
        for module in sorted(graph.modules)
        for other in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=other, imported=module)
    ]
    assert circles == [], circles
