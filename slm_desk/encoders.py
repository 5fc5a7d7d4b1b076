"""The sentence encoder as the desk hands it to heads: its embeddings (kept in the store, so retraining never
embeds a pool item twice), its static word vectors, and each word read in context by its first layers.

A layer of its own between the desk and what it builds on: the desk asks for an encoder by the config and the
store it holds; a head, when it loads, asks for the encoder and the layers it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slm_desk import locations
from slm_desk.data.catalog import ModelRef, load_catalog, resolve_model
from slm_desk.data.config import Config
from slm_desk.data.store import Store
from slm_desk.errors import ModelNotFound
from slm_desk.learn.features import Embed
from slm_desk.learn.training import Embedding
from slm_desk.learn.wordvectors import CONTEXT_LAYERS, Encoder, InContext, WordVectors
from slm_desk.models import embedder, preload
from slm_desk.models.layers import first_layers
from slm_desk.models.layers import named as layers_named


def embedding(config: Config, store: Store) -> tuple[Embedding | None, str]:
    """The sentence encoder a head may read ([models] embedding), and why there is none when there is none."""
    model_id = config.models.embedding
    if not model_id:
        return None, 'embeddings are off ([models] embedding = "")'
    if not preload.models_allowed():
        return None, "this process may not load models"
    try:
        ref = resolve_model(model_id)
    except ModelNotFound as exc:
        return None, f"{exc.message} ({exc.hint})"
    entry = load_catalog().get(ref.id)
    encoder = embedder.local(ref, config.runtime, entry.prefix if entry is not None else "")
    stat = ref.path.stat()
    key = f"{ref.id}:{stat.st_size}:{stat.st_mtime_ns}:{encoder.prefix}"

    def cached(texts: list[str]) -> Any:
        import numpy as np

        found = store.vectors(key, texts)
        missing = [i for i, v in enumerate(found) if v is None]
        if missing:
            fresh = encoder.embed([texts[i] for i in missing])
            store.keep_vectors(key, [texts[i] for i in missing], fresh)
            for i, vector in zip(missing, fresh, strict=True):
                found[i] = vector
        return np.vstack([v for v in found if v is not None]) if found else np.zeros((0, 384), dtype=np.float32)

    words = lambda: WordVectors.read(ref.id, ref.path)  # noqa: E731 - read only when a head compresses
    in_context = Encoder(ref.id, _in_context(config, ref, CONTEXT_LAYERS), CONTEXT_LAYERS)
    return Embedding(ref.id, cached, encoder.embed, words, in_context), ""


def embed_for(config: Config, store: Store, cached: bool) -> Callable[[str], Embed | None]:
    """For a head that reads embeddings from a model id: its embed function (reading the store's, with `cached`),
    when that model is available."""

    def embed(model_id: str) -> Embed | None:
        source = _named(config, store, model_id)
        return None if source is None else source.vectors if cached else source.fresh

    return embed


def reader_for(config: Config, store: Store) -> Callable[[str, int | None], InContext | None]:
    """For a head whose compression tagger reads words in context: the reader of a model id's first `layers`
    layers (None: all of them), when that encoder is available."""

    def reader(model_id: str, layers: int | None) -> InContext | None:
        if _named(config, store, model_id) is None:
            return None
        return _in_context(config, resolve_model(model_id), layers)

    return reader


def _named(config: Config, store: Store, model_id: str) -> Embedding | None:
    """The encoder a head names, when it is the one configured and available."""
    source, _ = embedding(config, store)
    return source if source is not None and source.model == model_id else None


def _in_context(config: Config, ref: ModelRef, layers: int | None) -> InContext:
    """The words-in-context reader of an encoder's first `layers` layers (a model file written on first use,
    beside the downloaded ones), or of all of them."""

    def read(texts: list[list[str]]) -> list[Any]:
        model = ref
        if layers is not None:
            path = first_layers(ref.path, layers, locations.models_dir() / "derived")
            model = ModelRef(layers_named(ref.id, layers), path)
        return embedder.local(model, config.runtime).in_context(texts)

    return read
