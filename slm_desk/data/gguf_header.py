"""Read a GGUF file's metadata from its header alone, without loading (or even having) the weights.

Works on a prefix of the file, so `pull` can check a remote file with one Range request before downloading
it: is it GGUF at all, what architecture, how large a KV cache will it need.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
HEADER_PROBE_BYTES = 8 * 2**20
MAX_FIELD = 64 * 2**20  # no string in a real header comes near this (a chat template is a few KB)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# llama.cpp's `general.file_type` (enum llama_ftype) for the quantisations people actually download.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    32: "BF16",
}


class NotGGUF(ValueError):
    """The bytes do not start with the GGUF magic."""


class Truncated(ValueError):
    """The header continues past the bytes we have."""


class _Reader:
    """The header, read in large chunks and parsed from memory: a vocabulary is 100,000 strings, and reading each
    through the file object took half a second of every `run`'s start."""

    CHUNK = 1 << 20

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buffer = b""
        self.pos = 0  # in the buffer
        self.consumed = 0  # file offset of the buffer's start

    def tell(self) -> int:
        return self.consumed + self.pos

    def _have(self, n: int) -> None:
        if n > MAX_FIELD:  # a corrupt or hostile length: never ask for it (2**62 bytes is a MemoryError, not a file)
            raise NotGGUF(f"the header declares a field of {n:,} bytes at offset {self.tell()}: it is damaged")
        while len(self.buffer) - self.pos < n:
            more = self.stream.read(max(self.CHUNK, n))
            if not more:
                raise Truncated(f"header needs more than the {self.consumed + len(self.buffer)} bytes available")
            self.consumed += self.pos
            self.buffer = self.buffer[self.pos :] + more
            self.pos = 0

    def take(self, n: int) -> bytes:
        self._have(n)
        data = self.buffer[self.pos : self.pos + n]
        self.pos += n
        return data

    def scalar(self, kind: int) -> Any:
        fmt = _SCALARS[kind]
        size = struct.calcsize(fmt)
        self._have(size)
        value = struct.unpack_from(fmt, self.buffer, self.pos)[0]
        self.pos += size
        return value

    def string(self) -> str:
        return self.take(self.scalar(10)).decode("utf-8", "replace")

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            self._have(8)
            (n,) = struct.unpack_from("<Q", self.buffer, self.pos)
            self.pos += 8
            self._have(n)
            self.pos += n

    def value(self, kind: int) -> Any:
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.scalar(4), self.scalar(10)
            if count > MAX_FIELD:
                raise NotGGUF(f"the header declares an array of {count:,} items: it is damaged")
            if count <= 64:
                return [self.value(item_kind) for _ in range(count)]
            # vocabularies are huge and useless here: keep their length only, and skip them without decoding
            if item_kind == _STRING:
                self.skip_strings(count)
            elif item_kind in _SCALARS:
                self.take(count * struct.calcsize(_SCALARS[item_kind]))
            else:
                for _ in range(count):
                    self.value(item_kind)
            return f"<array of {count}>"
        if kind not in _SCALARS:
            raise NotGGUF(f"unknown GGUF value type {kind}")
        return self.scalar(kind)


def _read_header(stream: BinaryIO) -> tuple[dict[str, Any], _Reader]:
    """The key/value metadata, and the reader where the tensor infos begin."""
    reader = _Reader(stream)
    try:
        magic = reader.take(4)
    except Truncated:
        magic = reader.buffer
    if magic != MAGIC:
        raise NotGGUF(f"not a GGUF file (it starts with {magic!r}, not {MAGIC!r})")
    version = reader.scalar(4)
    if version not in (2, 3):
        raise NotGGUF(f"unsupported GGUF version {version}")
    tensor_count, kv_count = reader.scalar(10), reader.scalar(10)
    meta: dict[str, Any] = {"gguf.version": version, "gguf.tensor_count": tensor_count}
    for _ in range(kv_count):
        key = reader.string()
        meta[key] = reader.value(reader.scalar(4))
    return meta, reader


def read_metadata(stream: BinaryIO) -> dict[str, Any]:
    """All key/value metadata of a GGUF header (large arrays summarised)."""
    return _read_header(stream)[0]


# ggml type -> (values per block, bytes per block), for the types GGUF files carry (ggml.c's type_traits)
_BLOCKS = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """Where a GGUF file's tensor data lies, from its header; `cut_short` when the file ends before it does."""

    data_start: int
    data_bytes: int
    file_bytes: int

    @property
    def needed_bytes(self) -> int:
        return self.data_start + self.data_bytes

    @property
    def cut_short(self) -> bool:
        return self.file_bytes < self.needed_bytes


def read_tensors(path: Path) -> dict[str, list[int]]:
    """Each tensor's name and dimensions (ggml's order: the row length first), from the header alone."""
    with path.open("rb") as f:
        meta, reader = _read_header(f)
        return {name: dims for name, dims, _, _ in _tensor_infos(reader, meta)}


def _tensor_infos(reader: _Reader, meta: dict[str, Any]) -> Any:
    count = int(meta["gguf.tensor_count"])
    if count > MAX_FIELD:
        raise NotGGUF(f"the header declares {count:,} tensors: it is damaged")
    for _ in range(count):
        name = reader.string()
        n_dims = reader.scalar(4)
        if n_dims > 8:
            raise NotGGUF(f"tensor {name!r} declares {n_dims} dimensions: the header is damaged")
        dims = [reader.scalar(10) for _ in range(n_dims)]
        yield name, dims, reader.scalar(4), reader.scalar(10)


def read_file_layout(path: Path) -> tuple[dict[str, Any], Layout | None]:
    """The header's metadata and its tensors' layout, in one pass over the header (reading the vocabulary takes
    most of the time); the layout is None when a tensor type is unknown here. A file shorter than its tensors
    (a cut download, a truncated adapter) is refused before llama.cpp reads past its end."""
    with path.open("rb") as f:
        meta, reader = _read_header(f)
        end = 0
        for _, dims, kind, offset in _tensor_infos(reader, meta):
            if kind not in _BLOCKS:
                return meta, None
            per_block, block_bytes = _BLOCKS[kind]
            count = 1
            for d in dims:
                count *= d
            end = max(end, offset + count // per_block * block_bytes)
        alignment = int(meta.get("general.alignment", 32) or 32)
        start = -(-reader.tell() // alignment) * alignment
    return meta, Layout(start, end, path.stat().st_size)


@dataclass(frozen=True)
class ModelShape:
    """What a person wants to know before running a model, from its header."""

    architecture: str
    name: str
    size_label: str
    quantization: str
    context_length: int
    layers: int
    kv_heads: int
    key_dim: int
    value_dim: int
    has_chat_template: bool

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """f16 K and V for every layer at `n_ctx` tokens: llama.cpp's default cache type."""
        return n_ctx * self.layers * self.kv_heads * (self.key_dim + self.value_dim) * 2


def shape(meta: dict[str, Any]) -> ModelShape:
    arch = str(meta.get("general.architecture", "unknown"))

    def get(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        return int(value) if isinstance(value, (int, float)) else default

    heads = get("attention.head_count", 1) or 1
    embedding = get("embedding_length")
    file_type = meta.get("general.file_type")
    return ModelShape(
        architecture=arch,
        name=str(meta.get("general.name", "")),
        size_label=str(meta.get("general.size_label", "")),
        quantization=FILE_TYPES.get(file_type, f"type {file_type}") if isinstance(file_type, int) else "unknown",
        context_length=get("context_length"),
        layers=get("block_count"),
        kv_heads=get("attention.head_count_kv", heads) or heads,
        key_dim=get("attention.key_length", embedding // heads),
        value_dim=get("attention.value_length", embedding // heads),
        has_chat_template=bool(meta.get("tokenizer.chat_template")),
    )
