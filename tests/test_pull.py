"""`slm-desk pull` against a hub served on 127.0.0.1 with real GGUF bytes (the bundled model's file)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slm_desk.data.catalog import bundled_model_path
from slm_desk.data.download import partial_bytes
from tests.conftest import sigint_default
from tests.hub_server import FakeHub, HubFile, serve

REPO, FILE = "test-org/SmolLM2-GGUF", "smol.Q4_1.gguf"
ADDRESS = f"hf://{REPO}/{FILE}"
MODEL_ID = "smol.q4_1"


@pytest.fixture(scope="session")
def gguf_bytes() -> bytes:
    path = bundled_model_path()
    assert path is not None
    return path.read_bytes()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    hub, server = serve()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield hub
    server.shutdown()


def installed(home: Path) -> list[str]:
    models = home / "data" / "models"
    return sorted(p.name for p in models.iterdir() if p.is_dir() and p.name != ".partial") if models.exists() else []


@pytest.mark.model
def test_full_pull_then_run_with_it(cli, hub: FakeHub, gguf_bytes: bytes, slm_home: Path) -> None:
    served = hub.add(REPO, FILE, HubFile(gguf_bytes))
    result = cli("pull", ADDRESS)
    assert result.returncode == 0, result.stderr
    assert f"installed {MODEL_ID}" in result.stdout and served.sha256 in result.stdout
    assert "memory: needs about" in result.stderr and "100.0%" in result.stderr
    record = json.loads((slm_home / "data" / "models" / MODEL_ID / "model.json").read_text())
    assert record["sha256"] == served.sha256 and record["sha256_verified_against"] == "hub etag"
    assert record["size"] == len(gguf_bytes) and record["commit"]
    assert not (slm_home / "data" / "models" / ".partial" / MODEL_ID).exists()

    run = cli("run", "extract-ticket", "--model", MODEL_ID, "--input", "Refund INV-12 please")
    assert run.returncode in (0, 3, 4), run.stderr
    assert run.envelopes[0]["model"] == MODEL_ID

    again = cli("pull", ADDRESS)
    assert again.returncode == 0 and "already installed" in again.stdout
    info = json.loads(cli("models", "info", MODEL_ID, "--json").stdout)
    assert (info["architecture"], info["quantization"], info["chat_template"]) == ("llama", "Q4_1", True)


def test_catalog_entry_verified_against_its_sha256(cli, hub: FakeHub, gguf_bytes: bytes, slm_home: Path) -> None:
    served = hub.add(REPO, FILE, HubFile(gguf_bytes, sha256="0" * 64))  # the hub's etag is not what we check
    catalog_file = slm_home / "config" / "models.toml"
    catalog_file.parent.mkdir(parents=True, exist_ok=True)
    import hashlib

    catalog_file.write_text(
        f'[[models]]\nid = "test-smol"\nrepo = "{REPO}"\nfile = "{FILE}"\nsize_bytes = {len(gguf_bytes)}\n'
        f'sha256 = "{hashlib.sha256(gguf_bytes).hexdigest()}"\nlicense = "Apache-2.0"\ncontext_length = 8192\n'
        'good_for = "tests"\nrole = "small"\n'
    )
    result = cli("pull", "test-smol")
    assert result.returncode == 0, result.stderr
    record = json.loads((slm_home / "data" / "models" / "test-smol" / "model.json").read_text())
    assert record["sha256_verified_against"] == "catalog" and record["sha256"] != served.sha256
    listing = {row["id"]: row for row in json.loads(cli("models", "--json").stdout)}
    assert listing["test-smol"]["installed"] is True


def test_transfer_cut_half_way_resumes_to_a_verified_file(cli, hub: FakeHub, gguf_bytes: bytes, slm_home: Path) -> None:
    hub.add(REPO, FILE, HubFile(gguf_bytes, cut_first_transfer=True))
    result = cli("pull", ADDRESS)
    assert result.returncode == 0, result.stderr
    ranges = hub.downloads()
    resumed = [r for r in ranges if r is not None]
    assert ranges[0] is None and resumed, ranges
    assert int(resumed[-1].removeprefix("bytes=").split("-")[0]) >= len(gguf_bytes) // 4
    assert installed(slm_home) == [MODEL_ID]


def test_interrupted_pull_resumes_in_the_next_run(hub: FakeHub, gguf_bytes: bytes, slm_home: Path, cli) -> None:
    served = hub.add(REPO, FILE, HubFile(gguf_bytes, bytes_per_second=20 * 2**20))
    child = subprocess.Popen(
        [sys.executable, "-m", "slm_desk", "pull", ADDRESS],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=sigint_default,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = partial_bytes(MODEL_ID)
        if done > 20 * 2**20:
            break
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 130, stderr.decode()
    assert "run the same command to resume" in stderr.decode()
    assert installed(slm_home) == []
    kept = partial_bytes(MODEL_ID)
    assert kept > 20 * 2**20

    served.bytes_per_second = None
    result = cli("pull", ADDRESS)
    assert result.returncode == 0, result.stderr
    resumed_from = int(hub.downloads()[-1].removeprefix("bytes=").split("-")[0])
    assert resumed_from >= kept - 2**20
    assert installed(slm_home) == [MODEL_ID]


def test_corrupted_file_is_refused_and_nothing_installed(cli, hub: FakeHub, gguf_bytes: bytes, slm_home: Path) -> None:
    damaged = bytearray(gguf_bytes)
    damaged[len(damaged) // 2] ^= 0xFF
    hub.add(REPO, FILE, HubFile(bytes(damaged), sha256=HubFile(gguf_bytes).sha256))
    result = cli("pull", ADDRESS)
    assert result.returncode == 1
    assert "has sha256" in result.stderr and "nothing was installed" in result.stderr
    assert installed(slm_home) == []
    assert not (slm_home / "data" / "models" / ".partial" / MODEL_ID).exists()
    assert "not installed" in cli("run", "guard", "--model", MODEL_ID, "--input", "x").stderr


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("hf://test-org/missing-GGUF/x.gguf", "repository test-org/missing-GGUF not found"),
        (f"hf://{REPO}/missing.gguf", f"file missing.gguf not found in {REPO}"),
    ],
)
def test_not_found(cli, hub: FakeHub, gguf_bytes: bytes, address: str, message: str) -> None:
    hub.add(REPO, FILE, HubFile(gguf_bytes))
    result = cli("pull", address)
    assert result.returncode == 2 and message in result.stderr


def test_gated_repository_names_the_token_setting(cli, hub: FakeHub, gguf_bytes: bytes) -> None:
    hub.add(REPO, FILE, HubFile(gguf_bytes))
    hub.gated.add(REPO)
    result = cli("pull", ADDRESS)
    assert result.returncode == 2 and "gated" in result.stderr and "HF_TOKEN" in result.stderr


def test_network_unreachable(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    result = cli("pull", ADDRESS, timeout=120)
    assert result.returncode == 1 and "network unreachable" in result.stderr


def test_non_gguf_file_is_refused_before_download(cli, hub: FakeHub, slm_home: Path) -> None:
    hub.add(REPO, "README.gguf", HubFile(b"<!doctype html><p>not a model</p>" * 100))
    result = cli("pull", f"hf://{REPO}/README.gguf")
    assert result.returncode == 1 and "not a GGUF file" in result.stderr
    assert hub.downloads() == [] and installed(slm_home) == []


def test_disk_too_small_is_refused_before_the_first_byte(
    cli, hub: FakeHub, gguf_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = tmp_path / "small-disk"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        monkeypatch.setenv("SLM_DESK_HOME", str(small / "home"))
        hub.add(REPO, FILE, HubFile(gguf_bytes))
        done = subprocess.run(
            [sys.executable, "-m", "slm_desk", "pull", ADDRESS],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=120,
        )
        assert done.returncode == 1 and "not enough disk space" in done.stderr and "MiB free" in done.stderr
        assert hub.file_requests() == ["HEAD"]
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_memory_estimate_refuses_unless_forced(cli, hub: FakeHub, gguf_bytes: bytes, slm_home: Path) -> None:
    hub.add(REPO, FILE, HubFile(gguf_bytes))
    (slm_home / "config").mkdir(parents=True, exist_ok=True)
    (slm_home / "config" / "config.toml").write_text("[models]\nmemory_budget_gb = 0.05\n")
    refused = cli("pull", ADDRESS)
    assert refused.returncode == 2 and "will not fit in memory" in refused.stderr and "--force" in refused.stderr
    assert hub.downloads() == []
    forced = cli("pull", ADDRESS, "--force")
    assert forced.returncode == 0 and installed(slm_home) == [MODEL_ID]


def test_a_hub_that_stalls_after_its_headers_fails_within_the_timeout(
    cli, hub: FakeHub, gguf_bytes: bytes, slm_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add(REPO, FILE, HubFile(gguf_bytes, stall_probe=True))
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "2")
    started = time.monotonic()
    result = cli("pull", ADDRESS, timeout=60)
    assert result.returncode != 0 and "stopped answering" in result.stderr, result.stderr
    assert "internal error" not in result.stderr
    assert time.monotonic() - started < 30
    assert installed(slm_home) == []


def test_a_hub_etag_that_is_not_a_sha256_installs_with_a_warning(cli, hub: FakeHub, slm_home: Path) -> None:
    path = bundled_model_path()
    assert path is not None
    hub.add(REPO, FILE, HubFile(path.read_bytes(), sha256="1234abcd"))
    result = cli("pull", ADDRESS)
    assert result.returncode == 0, result.stderr
    assert "warning: the hub gave no sha256" in result.stderr and "to pin it, add sha256 =" in result.stderr
    record = json.loads((slm_home / "data" / "models" / MODEL_ID / "model.json").read_text())
    assert record["sha256_verified_against"] is None
