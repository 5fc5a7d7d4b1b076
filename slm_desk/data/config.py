"""config.toml, read into frozen pydantic models. A missing file means all defaults."""

from __future__ import annotations

import os
import tomllib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slm_desk import locations
from slm_desk.errors import ConfigError


class _Section(BaseModel):
    # strict: `enabled = "off"` or `threads = "2"` is a mistake to name, not a value to guess at
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RuntimeConfig(_Section):
    threads: int = Field(0, ge=0, description="CPU threads for llama.cpp; 0 means the number of physical cores.")
    gpu_layers: int | Literal["auto"] = Field(
        "auto",
        description="Layers to offload to Metal/CUDA; 'auto' offloads all when the build supports a GPU, else 0.",
    )
    n_ctx: int = Field(
        2048, ge=256, description="Context window in tokens; inputs that do not fit are refused, never cut."
    )
    n_batch: int = Field(512, ge=8, description="Prompt tokens evaluated per llama.cpp batch.")
    wait: Literal["passive", "active", "default"] = Field(
        "passive",
        description="How llama.cpp's threads wait for each other between steps: 'passive' sleeps at once (measured: "
        "a single answer stays within 2x of quiet beside two busy loops, where spinning took 15x), 'active' spins "
        "(a quiet batch a few percent faster, far slower beside other work), 'default' is OpenMP's own. Read when "
        "the first model loads; the OMP_WAIT_POLICY environment variable wins.",
    )
    generation: Literal["values", "json"] = Field(
        "values",
        description="'values': the model samples only the field values and the fixed keys and punctuation are "
        "evaluated as one batch (faster); 'json': the whole object under one JSON grammar.",
    )
    backend: str | tuple[str, ...] = Field(
        "local",
        description="'local': the GGUF in [models] small, run here. Or the /v1 URL of an OpenAI-compatible server "
        "(llama-server, vLLM, Ollama), or a list of them (round-robin, failing over when one is down).",
    )
    model: str | None = Field(None, description="With a server backend: the model name the server expects.")
    api_key_env: str | None = Field(None, description="With a server backend: the env var holding its key.")
    timeout_s: float = Field(60, gt=0, description="With a server backend: seconds per request.")
    retries: int = Field(2, ge=0, le=10, description="With a server backend: retries with backoff per request.")

    @field_validator("backend", mode="before")
    @classmethod
    def _urls_as_tuple(cls, value: object) -> object:
        """A TOML list of URLs arrives as a list: kept as a tuple, so the settings stay hashable."""
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _backend(self) -> RuntimeConfig:
        if isinstance(self.gpu_layers, int) and self.gpu_layers < -1:
            raise ValueError("gpu_layers must be 'auto', -1 (all layers) or a count of layers (0 or more)")
        urls = [self.backend] if isinstance(self.backend, str) else list(self.backend)
        if urls != ["local"] and not all(u.startswith(("http://", "https://")) for u in urls):
            raise ValueError("backend must be 'local' or http(s):// URLs of OpenAI-compatible servers")
        return self


class HistoryConfig(_Section):
    enabled: bool = Field(True, description="Record every run in the SQLite history; `--no-log` skips one run.")


class ModelsConfig(_Section):
    small: str = Field("smollm2-135m", description="Model id used by `run` when --model is not given.")
    escalation: str | None = Field(None, description="Local model id hard cases escalate to (see [escalation]).")
    embedding: str = Field(
        "all-minilm-l6-v2",
        description="Sentence encoder a trained head may read beside TF-IDF (`train` keeps it where it measured it "
        'more accurate); "" turns embeddings off.',
    )
    memory_budget_gb: float | None = Field(
        None, gt=0, description="Memory `pull` may plan a model into; default: this machine's RAM less 1 GiB."
    )


class EscalationConfig(_Section):
    enabled: bool = Field(False, description="Send hard cases to a larger model. Off by default.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1.")
    model: str | None = Field(None, description="Model name the endpoint expects.")
    api_key_env: str | None = Field(None, description="Name of the env var holding the key; the key is never stored.")
    local_model: str | None = Field(None, description="Instead of an endpoint: an installed GGUF model id.")
    timeout_s: float = Field(60, gt=0, description="Per request.")
    retries: int = Field(2, ge=0, le=5, description="Retries with backoff on timeouts, 429 and 5xx.")
    max_per_day: int = Field(500, ge=0, description="Escalation calls allowed per local day.")
    auto: bool = Field(False, description="Escalate in pipe mode without --escalate.")

    @model_validator(mode="after")
    def _target(self) -> EscalationConfig:
        if self.enabled and not self.local_model and not (self.base_url and self.model):
            raise ValueError("enabled escalation needs base_url and model, or local_model")
        return self


class CostsConfig(_Section):
    local_per_hour: float = Field(0.0, ge=0, description="What an hour of this machine costs you, in your currency.")
    escalation_per_1k_input_tokens: float = Field(0.0, ge=0, description="The escalation endpoint's input price.")
    escalation_per_1k_output_tokens: float = Field(0.0, ge=0, description="The escalation endpoint's output price.")


class TeachConfig(_Section):
    retrain_after: int = Field(
        25, ge=0, description="Labels given in Review after which the app retrains a task's head by itself; 0: never."
    )


class Config(_Section):
    runtime: RuntimeConfig = RuntimeConfig()
    history: HistoryConfig = HistoryConfig()
    models: ModelsConfig = ModelsConfig()
    escalation: EscalationConfig = EscalationConfig()
    costs: CostsConfig = CostsConfig()
    teach: TeachConfig = TeachConfig()
    constants: dict[str, str] = Field(
        default_factory=dict,
        description="slot values of drafting templates, set once (a phone number, a website); they override the "
        "task file's [constants] of the same name",
    )


def load_config() -> Config:
    path = locations.config_file()
    if not path.exists() and not path.is_symlink():
        return Config()
    try:
        return Config.model_validate(tomllib.loads(path.read_text(encoding="utf-8-sig")))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        what = plain(exc) if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"{path} is not a valid slm-desk config: {what}", f"fix or remove {path}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (bad byte at {exc.start})", "save it as UTF-8") from exc
    except PermissionError as exc:
        raise ConfigError(f"cannot read {path}: permission denied", f"make it readable: chmod u+r {path}") from exc
    except OSError as exc:  # a folder, or a link to nothing, where the file should be
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", "make it a TOML file or remove it") from exc


def plain(exc: ValidationError) -> str:
    """Each problem as `section.key: what is wrong`, without pydantic's type names and links."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            parts.append(f"{where}: not a setting slm-desk knows")
            continue
        message = error["msg"].replace("Input should be", "should be").removeprefix("Value error, ")
        given = error.get("input")
        shown = f" (got {given!r})" if not isinstance(given, dict) and error["type"] != "missing" else ""
        parts.append(f"{where}: {message}{shown}")
    return "; ".join(parts)


def set_value(section: str, key: str, value: object) -> None:
    """Write one setting into config.toml, keeping the rest of the file and its comments as the user wrote them."""
    import tomlkit

    path = locations.config_file()
    document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    if section not in document:
        document[section] = tomlkit.table()
    document[section][key] = value
    candidate = tomlkit.dumps(document)
    try:
        Config.model_validate(tomllib.loads(candidate))
    except ValidationError as exc:
        raise ConfigError(
            f"[{section}] {key} = {value!r} is not a valid setting: {plain(exc)}",
            "see the keys and their ranges under config.toml in the README",
        ) from exc
    tmp = path.with_suffix(".toml.tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
        out.write(candidate)  # 0600: the settings are the user's alone
    tmp.replace(path)
