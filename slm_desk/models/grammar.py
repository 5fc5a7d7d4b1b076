"""A task's JSON Schema as a llama.cpp grammar (GBNF) that llama.cpp can compile and whose every text is JSON.

llama-cpp-python's `json_schema_to_gbnf` has three faults a task file meets (issue: a `"` in an allowed reply, a
long free-text field, a control character in an answer):
- a literal (an enum value, a const) is escaped for quotes but not for backslashes, so the JSON `\\"` of a quote in
  a value ends the grammar's literal early: llama.cpp refuses the grammar, on every input;
- a string's characters are `[^"\\]`, which admits raw control characters that JSON refuses;
- `maxLength` N is written as N nested optional rules, which llama.cpp refuses from about 1,100.
`Converter` fixes them: literals escaped in full, string characters as JSON allows them (no control characters,
which is also what a negated character class in a pattern now excludes), and lengths as llama.cpp's own
`{m,n}` repetition. `compile_check` compiles a grammar with llama.cpp's parser, from the bundled model's vocabulary
alone (no weights, a tenth of a second), so a task is refused when it is checked, not when it runs.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from slm_desk.models import threads

# a character inside a JSON string: anything but a quote, a backslash or a control character, or an escape
JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_NOT_IN_JSON = '"\\\\\\x7F\\x00-\\x1F'  # prepended to every negated class: [^...] never admits them either
_LITERAL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape(literal: str) -> str:
    """A GBNF string literal's body: every character llama.cpp's parser reads specially is escaped."""
    return "".join(
        _LITERAL_ESCAPES.get(c) or (f"\\x{ord(c):02X}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in literal
    )


def _llama_cpp_ready() -> None:
    """Before llama.cpp first loads in this process: its threads' wait policy (`threads.prepare`, the default
    config's, unless a model loaded first) and its log lines (to Python logging, not stderr)."""
    from slm_desk.data.config import RuntimeConfig

    threads.prepare(RuntimeConfig())
    threads.quiet_llama_logs()


def _converter_class() -> type:
    _llama_cpp_ready()
    from llama_cpp.llama_grammar import PRIMITIVE_RULES, BuiltinRule, SchemaConverter

    class Converter(SchemaConverter):
        def _format_literal(self, literal: str) -> str:
            return f'"{_escape(literal)}"'

        def _generate_constant_rule(self, value: Any) -> str:
            # unicode as itself, as a model writes it and label scoring reads it (the converter wrote \u00e9)
            return self._format_literal(json.dumps(value, ensure_ascii=False))

        def _add_primitive(self, name: str, rule: Any) -> str:
            if name == "char":
                rule = BuiltinRule(JSON_CHAR, [])
            return str(super()._add_primitive(name, rule))

        def visit(self, schema: dict[str, Any], name: str) -> str:
            lengths = "minLength" in schema or "maxLength" in schema
            if schema.get("type") == "string" and lengths and "pattern" not in schema and "format" not in schema:
                rule_name = name + "-" if name in RESERVED else name or "root"
                char = self._add_primitive("char", PRIMITIVE_RULES["char"])
                low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
                repeat = f"{{{low},{int(high)}}}" if high is not None else f"{{{low},}}"
                return str(self._add_rule(rule_name, f'"\\"" {char}{repeat} "\\"" space'))
            return str(super().visit(schema, name))

    return Converter


RESERVED: set[str] = set()
_class: type | None = None
_class_lock = threading.Lock()


def to_gbnf(schema: dict[str, Any], prop_order: list[str] | None = None) -> str:
    """The grammar of `schema`, its object keys in `prop_order` (llama.cpp's converter, with its faults fixed)."""
    global _class
    with _class_lock:
        if _class is None:
            from llama_cpp.llama_grammar import RESERVED_NAMES

            RESERVED.update(RESERVED_NAMES)
            _class = _converter_class()
    order = {name: i for i, name in enumerate(prop_order or [])}
    converter = _class(prop_order=order, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(schema, "task"), "")
    return _json_safe_classes(str(converter.format_grammar()))


def _json_safe_classes(gbnf: str) -> str:
    """Every negated character class (a pattern's `[^a]` or `.`, the string rule's own) also refuses what a JSON
    string cannot hold raw: a quote, a backslash, a control character."""
    return re.sub(r"\[\^(?!" + re.escape(_NOT_IN_JSON) + ")", "[^" + _NOT_IN_JSON.replace("\\", "\\\\"), gbnf)


class Vocabulary:
    """The bundled model's vocabulary, loaded without its weights, for llama.cpp's grammar parser."""

    _lock = threading.Lock()
    _vocab: Any = None
    _model: Any = None  # the vocabulary lives in it: kept as long as the process

    @classmethod
    def get(cls) -> Any:
        with cls._lock:
            if cls._vocab is None:
                _llama_cpp_ready()
                import llama_cpp

                from slm_desk.data.catalog import BUNDLED_ID, resolve_model

                params = llama_cpp.llama_model_default_params()
                params.vocab_only = True
                model = llama_cpp.llama_model_load_from_file(str(resolve_model(BUNDLED_ID).path).encode(), params)
                if not model:
                    raise RuntimeError("llama.cpp could not read the bundled model's vocabulary")
                cls._model = model
                cls._vocab = llama_cpp.llama_model_get_vocab(model)
            return cls._vocab


def compiles(gbnf: str, vocab: Any = None) -> bool:
    """Whether llama.cpp's own grammar parser accepts `gbnf` (with `vocab`, or the bundled model's)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocab or Vocabulary.get(), gbnf.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def spells(text: str, gbnf: str, vocab: Any = None) -> bool:
    """Whether llama.cpp's grammar sampler lets the vocabulary write `text` (its own tokens, one by one) under
    `gbnf`: some characters (seen: U+BCA46) compile in a literal and then no token may write them."""
    import ctypes

    import llama_cpp

    vocab = vocab or Vocabulary.get()
    encoded = text.encode("utf-8")
    ids = (llama_cpp.llama_token * (len(encoded) + 8))()
    n = llama_cpp.llama_tokenize(vocab, encoded, len(encoded), ids, len(ids), False, False)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not sampler or n < 0:
        return False
    one = (llama_cpp.llama_token_data * 1)()
    single = llama_cpp.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)
    try:
        for token in ids[:n]:
            one[0] = llama_cpp.llama_token_data(token, 0.0, 0.0)
            single.size = 1
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(single))
            if one[0].logit < -1e30:
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


def problems(schema: dict[str, Any], vocab: Any = None) -> list[str]:
    """Why llama.cpp would refuse the grammar of `schema` or a value it allows, per field (empty when none)."""
    found = []
    whole = compiles(to_gbnf(schema, list(schema.get("properties", {}))), vocab)
    for field, sub in schema.get("properties", {}).items():
        gbnf = to_gbnf(sub)
        if not whole and not compiles(gbnf, vocab):
            found.append(
                f"field {field!r}: llama.cpp cannot compile its grammar ({json.dumps(sub, ensure_ascii=False)[:120]})"
            )
            continue
        for value in sub.get("enum", []) if isinstance(sub.get("enum"), list) else []:
            if isinstance(value, str) and not spells(json.dumps(value, ensure_ascii=False), gbnf, vocab):
                found.append(
                    f"field {field!r}: the model's vocabulary cannot write the allowed value {value!r} under "
                    "llama.cpp's grammar; use other characters"
                )
    return found if found or whole else ["llama.cpp cannot compile the schema's grammar"]
