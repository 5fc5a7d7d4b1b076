"""An encoder's first layers as a model file of their own: where the text tagger reads each word in context.

llama.cpp runs every layer a GGUF holds, and cannot stop early or be told to skip blocks (a block_count override
is refused: the file's tensors no longer match). A sentence encoder's first layers already place each word in its
text, and cost a fraction of the whole: MiniLM's first 2 of 6 layers read 472 TREC descriptions a second against
170, and the text tagger scored as well or better with them (`learn/compress.py`). So the first layers are written
out once as a model of their own, beside the downloaded models, named by the source's size and time, and
rewritten when the source changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from slm_desk.errors import ModelFileError


def named(model_id: str, layers: int | None) -> str:
    """What a reader of an encoder's first `layers` layers (None: all of them) is called, for a person."""
    return f"{model_id}'s first {layers} layers" if layers else model_id


def first_layers(source: Path, layers: int, folder: Path) -> Path:
    """The path of a GGUF holding `source`'s first `layers` blocks and everything outside its blocks, written into
    `folder` the first time (atomically: a reader never sees half a file)."""
    stat = source.stat()
    stem = f"{source.stem}.first{layers}"
    path = folder / f"{stem}.{stat.st_size}-{stat.st_mtime_ns}.gguf"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        _write(source, layers, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    for older in folder.glob(f"{stem}.*.gguf"):  # what an earlier copy of the source gave
        if older != path:
            older.unlink(missing_ok=True)
    return path


def _write(source: Path, layers: int, target: Path) -> None:
    import gguf

    try:
        reader = gguf.GGUFReader(source)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{source} is not a readable GGUF model ({exc})", "pull the encoder again") from exc
    arch = reader.fields["general.architecture"].contents()
    count = f"{arch}.block_count"
    if count not in reader.fields or int(reader.fields[count].contents()) < layers:
        raise ModelFileError(
            f"{source} has no {layers} layers to read words in context from",
            "set [models] embedding to a sentence encoder with more layers, or retrain with --features tfidf",
        )
    writer = gguf.GGUFWriter(target, arch=arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":  # the writer's own
            continue
        kind = field.types[0]
        value = layers if name == count else field.contents()
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, value, kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(name, value, kind)
    for tensor in reader.tensors:
        parts = tensor.name.split(".")
        if parts[0] == "blk" and int(parts[1]) >= layers:
            continue
        writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
