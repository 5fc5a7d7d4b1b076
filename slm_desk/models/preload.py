"""What is checked before llama.cpp is asked to load a file: what the GGUF header already tells, and the test
suite's guard that its fast tier never loads a model."""

from __future__ import annotations

import os
from pathlib import Path

from slm_desk.data.catalog import ModelRef
from slm_desk.data.config import RuntimeConfig
from slm_desk.errors import ModelFileError


def check_before_loading(model: ModelRef, config: RuntimeConfig) -> None:
    """What the header already tells, said plainly before llama.cpp is asked (it would blame the file for all)."""
    from slm_desk.data.gguf_header import NotGGUF, Truncated, read_file_layout, shape

    again = "pull it again (`slm-desk pull ID`), or pass another .gguf file; `slm-desk models` lists what is installed"
    try:
        meta, layout = read_file_layout(model.path)
    except (NotGGUF, Truncated, OSError) as exc:
        raise ModelFileError(f"{model.path} is not a readable GGUF model ({exc})", again) from exc
    if layout is not None and layout.cut_short:
        raise ModelFileError(
            f"{model.path} is cut short: its tensors need {layout.needed_bytes:,} bytes, the file has "
            f"{layout.file_bytes:,}",
            again,
        )
    trained = shape(meta).context_length
    if trained and config.n_ctx > trained:
        raise ModelFileError(
            f"n_ctx {config.n_ctx:,} is more than the {trained:,} tokens {model.id} was trained on"
            " (a longer context only costs memory: the model does not read further)",
            f"lower [runtime] n_ctx in config.toml, or pass --ctx {min(trained, 2048)}",
        )


GRAMMARS_KEPT = 256  # compiled grammars per loaded model, oldest dropped first

# Set by the test suite for every test not marked `model`, so its fast tier provably never loads a model.
NO_MODEL_ENV = "SLM_DESK_TEST_NO_MODEL"


def models_allowed() -> bool:
    """False in the test suite's fast tier: a head trains on TF-IDF alone there instead of loading an encoder."""
    return not os.environ.get(NO_MODEL_ENV)


def refuse_if_no_model_allowed(path: str | Path) -> None:
    if os.environ.get(NO_MODEL_ENV):
        raise RuntimeError(f"{NO_MODEL_ENV} is set, yet {path} was about to load: mark the test `model`")
