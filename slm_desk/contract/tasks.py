"""Task contracts: TOML files holding instructions, few-shot examples, a JSON Schema, validators and risk levels.

Built-in tasks ship in `slm_desk/builtin_tasks/`; a file of the same name in the user's tasks folder
overrides one. A task is checked when it loads: the schema must be enforceable by the grammar, label
fields must list their risk, and every few-shot example must itself pass the task's validation.
"""

from __future__ import annotations

import json
import re
import tomllib
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slm_desk import locations
from slm_desk.contract import templates as drafting
from slm_desk.contract.followup import priors
from slm_desk.contract.schema_guard import problems as schema_problems
from slm_desk.contract.validators import Regex, TemplateSlots, Validator, Verbatim, fields_named
from slm_desk.errors import TaskError, UsageError

Risk = Literal["low", "medium", "high"]


class RiskRule(BaseModel):
    """How sure an accepted answer with this risk must be: precision `target`, or always a second check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: float = Field(gt=0.5, lt=1.0, description="precision an accepted answer must reach")
    always_review: bool = Field(False, description="never accept automatically, whatever the confidence")


DEFAULT_RISK: dict[Risk, RiskRule] = {
    "low": RiskRule(target=0.80),
    "medium": RiskRule(target=0.90),
    "high": RiskRule(target=0.97, always_review=True),
}


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str
    output: str = Field(description="the exact JSON the model should answer with")


class Retrieval(BaseModel):
    """How many labelled pool items become the few-shot turns for each input, and how they are found."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(8, ge=0, le=32, description="pool items per prompt; 0 keeps the task's static examples")
    method: Literal["tfidf"] = Field("tfidf", description="similarity: TF-IDF over word and character n-grams")


def _accepts_null(schema: dict[str, Any]) -> bool:
    kinds = schema.get("type")
    if kinds == "null" or (isinstance(kinds, list) and "null" in kinds) or None in schema.get("enum", [0]):
        return True
    return any(_accepts_null(option) for option in schema.get("anyOf", []) + schema.get("oneOf", []))


def _is_text(schema: dict[str, Any]) -> bool:
    kinds = schema.get("type")
    if kinds == "string" or (isinstance(kinds, list) and "string" in kinds):
        return True
    return any(_is_text(option) for option in schema.get("anyOf", []) + schema.get("oneOf", []))


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int = Field(1, ge=1, description="bump when the contract changes; calibration is kept per version")
    description: str
    instructions: str
    schema_text: str = Field(alias="schema", description="JSON Schema of the output, as JSON text")
    examples: list[Example] = Field(default_factory=list)
    validators: list[Validator] = Field(default_factory=list)
    labels: dict[str, dict[str, Risk]] = Field(default_factory=dict, description="label field -> label -> risk")
    template: str | None = Field(None, description="text with {slot} placeholders filled from the output")
    templates: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="a template per label of one label field ([templates.intent]: label -> text); `template` is "
        "the one for a label without its own",
    )
    constants: dict[str, str] = Field(
        default_factory=dict,
        description="slot values a person sets once (a phone number); [constants] in config.toml overrides them",
    )
    risk: dict[Risk, RiskRule] = Field(default_factory=dict, description="per risk level; defaults in DEFAULT_RISK")
    default_risk: Risk = Field("low", description="risk of an answer that has no label field")
    accept_unmeasured: bool = Field(
        False,
        description="accept a valid answer of a model no calibration profile measured on this task (validity "
        "alone); by default such an answer goes to review",
    )
    max_tokens: int = Field(128, gt=0, le=4096, description="generation budget for one answer")
    retrieval: Retrieval = Field(default_factory=Retrieval, description="few-shot turns from the example pool")
    edits: str | None = Field(
        None,
        description="a field the grammar narrows to the input's last line, unchanged or with one edit whose words "
        "come from the earlier lines (a follow-up question rewritten: contract/followup.py)",
    )
    choice_prior: dict[str, float] = Field(
        default_factory=dict,
        exclude=True,
        description="set by for_input, never in a task file: nats added to the model's log-likelihood of each "
        "edits candidate (contract/followup.py: priors)",
    )
    text_match: float = Field(
        0.8, gt=0.0, le=1.0, description="token F1 against the gold text at which a free-text field counts as right"
    )
    compress: list[str] = Field(
        default_factory=list,
        description="free-text fields written mostly in the input's own words: a trained head keeps or drops each "
        "input word (learn/compress.py)",
    )
    read_chars: int | None = Field(
        None,
        gt=0,
        description="read only the first N characters of an input (a long bug report); the envelope says when an "
        "input was cut, and where",
    )
    source: str = Field("", exclude=True, description="where the task was loaded from")

    @model_validator(mode="before")
    @classmethod
    def _templates_are_checked(cls, data: Any) -> Any:
        """A task with a template checks its slots whether or not the file declares the `template` validator."""
        if isinstance(data, dict) and (data.get("template") or data.get("templates")):
            rules = list(data.get("validators", []))
            if not any(
                isinstance(r, dict) and r.get("kind") == "template" or isinstance(r, TemplateSlots) for r in rules
            ):
                data = {**data, "validators": [*rules, {"kind": "template"}]}
        return data

    @field_validator("schema_text")
    @classmethod
    def _schema_is_json_object(cls, value: str) -> str:
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"schema is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ValueError("schema nests too deeply to read (thousands of levels); flatten it") from exc
        if not isinstance(parsed, dict) or parsed.get("type") != "object":
            raise ValueError('schema must be a JSON object schema with "type": "object"')
        return value

    @cached_property
    def output_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = json.loads(self.schema_text)
        return schema

    @cached_property
    def output_validator(self) -> jsonschema.Draft202012Validator:
        """The schema's validator, built once per task (a batch validates thousands of answers). It resolves only
        the schema's own references: jsonschema would fetch an http `$ref` from anywhere, and a run stays offline."""
        from referencing import Registry
        from referencing.exceptions import NoSuchResource

        def offline(uri: str) -> Any:
            raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # attrs classes: mypy sees no __init__ args

        registry: Registry[Any] = Registry(retrieve=offline)  # type: ignore[call-arg]
        return jsonschema.Draft202012Validator(self.output_schema, registry=registry)

    @cached_property
    def fields(self) -> list[str]:
        return list(self.output_schema.get("properties", {}))

    def for_input(self, text: str) -> Task:
        """This task as the model should generate it for one input. A field the input must supply verbatim in a
        fixed form (a `verbatim` and a `regex` validator on it, like an invoice id) can only be one of the form's
        matches in the input, or null: the grammar, not the model's memory of its examples, decides which ids
        exist. The contract is unchanged; answers are still validated against the task itself."""
        copied = {f for v in self.validators if isinstance(v, Verbatim) for f in v.fields}
        properties = dict(self.output_schema.get("properties", {}))
        for rule in self.validators:
            if not isinstance(rule, Regex) or rule.field not in copied or rule.field not in properties:
                continue
            found = list(dict.fromkeys(m.group() for m in re.finditer(rule.pattern, text)))
            nullable = _accepts_null(properties[rule.field])
            if found:
                properties[rule.field] = {"enum": found + ([None] if nullable else [])}
            elif nullable:
                properties[rule.field] = {"type": "null"}
        prior: dict[str, float] = {}
        if self.edits in properties:
            prior = priors(text)  # every candidate, in order, with its prior
            properties[self.edits] = {"enum": list(prior)}
        if properties == self.output_schema.get("properties", {}):
            return self
        schema_text = json.dumps({**self.output_schema, "properties": properties})
        narrowed = self.model_copy(update={"schema_text": schema_text, "choice_prior": prior})
        # computed from the schema: anew for the copy
        for cached in ("output_schema", "output_validator", "fields", "text_fields"):
            narrowed.__dict__.pop(cached, None)
        return narrowed

    def template_for(self, output: dict[str, Any]) -> str | None:
        """The template an answer is drafted from: its key label's, else the task's one (None: no draft)."""
        for field, table in self.templates.items():
            chosen = table.get(str(output.get(field)))
            if chosen is not None:
                return chosen
        return self.template

    def render(self, output: dict[str, Any]) -> str | None:
        """The draft: the answer's template with its slots filled (None without a template, or with a hole)."""
        template = self.template_for(output)
        return drafting.render(template, output, self.constants) if template is not None else None

    def forced_fields(self) -> list[str]:
        """Fields whose schema admits exactly one value (what `for_input` leaves when the input has no id)."""
        properties = self.output_schema.get("properties", {})
        return [
            f
            for f, p in properties.items()
            if p == {"type": "null"} or "const" in p or (isinstance(p.get("enum"), list) and len(p["enum"]) == 1)
        ]

    @cached_property
    def text_fields(self) -> list[str]:
        """Free-text fields: written, not chosen from labels nor copied verbatim; scored by token F1."""
        verbatim = {f for v in self.validators if isinstance(v, Verbatim) for f in v.fields}
        properties = self.output_schema.get("properties", {})
        return [
            f
            for f in self.fields
            if f not in self.labels and f not in verbatim and "enum" not in properties[f] and _is_text(properties[f])
        ]

    def match_bar(self, field: str) -> float | None:
        """The token F1 at which `field` counts as right, or None when only the exact value is right."""
        return self.text_match if field in self.text_fields else None

    def risk_of(self, field: str, label: Any) -> Risk | None:
        return self.labels.get(field, {}).get(label) if isinstance(label, str) else None

    def rule(self, risk: Risk) -> RiskRule:
        return self.risk.get(risk, DEFAULT_RISK[risk])

    def always_reviewed(self, output: dict[str, Any]) -> list[str]:
        """The answer's label groups whose risk level never allows automatic acceptance."""
        return [group for group, risk in self.groups(output) if self.rule(risk).always_review]

    @cached_property
    def head_fields(self) -> dict[str, Literal["label", "span", "compress"]]:
        """What a trained head learns for each output field: a label (a classifier), a span copied verbatim from
        the input (a sequence tagger), or text kept word by word from it (`compress`). Empty when some field is none
        of these (free text that only a model can write)."""
        verbatim = {f for v in self.validators if isinstance(v, Verbatim) for f in v.fields}
        kinds: dict[str, Literal["label", "span", "compress"]] = {}
        for field in self.fields:
            if field in self.labels:
                kinds[field] = "label"
            elif field in verbatim:
                kinds[field] = "span"
            elif field in self.compress:
                kinds[field] = "compress"
            else:
                return {}
        return kinds

    def read(self, text: str) -> tuple[str, str | None]:
        """The part of an input the task reads (`read_chars`), and what was cut, said plainly (None when nothing)."""
        if self.read_chars is None or len(text) <= self.read_chars:
            return text, None
        return text[: self.read_chars], f"read the first {self.read_chars:,} of the input's {len(text):,} characters"

    def groups(self, output: dict[str, Any]) -> list[tuple[str, Risk]]:
        """The calibration groups an answer falls in ('field=label', or '*' without labels) and their risk."""
        groups = [(f"{f}={output.get(f)}", self.risk_of(f, output.get(f)) or self.default_risk) for f in self.labels]
        return groups or [("*", self.default_risk)]


def _consistency_errors(task: Task) -> list[str]:
    """Everything a schema validator alone would not catch in a task file."""
    errors: list[str] = []
    try:
        jsonschema.Draft202012Validator.check_schema(task.output_schema)
    except jsonschema.SchemaError as exc:
        errors.append(f"schema is not valid JSON Schema: {exc.message}")
    errors += [str(problem) for problem in schema_problems(task.output_schema)]
    for validator in task.validators:
        errors += [
            f"validator '{validator.kind}' names unknown field {f!r}"
            for f in fields_named(validator)
            if f not in task.fields
        ]
    for field, risks in task.labels.items():
        allowed = set(task.output_schema.get("properties", {}).get(field, {}).get("enum", []))
        if field not in task.fields:
            errors.append(f"labels name unknown field {field!r}")
        elif set(risks) != allowed:
            errors.append(
                f"labels for {field!r} must list exactly the schema's enum {sorted(allowed)}, got {sorted(risks)}"
            )
    errors += [
        f"compress names {f!r}, which is not a string field of the schema"
        for f in task.compress
        if not _is_text(task.output_schema.get("properties", {}).get(f, {}))
    ]
    if task.edits is not None and not _is_text(task.output_schema.get("properties", {}).get(task.edits, {})):
        errors.append(f"edits names {task.edits!r}, which is not a string field of the schema")
    if task.template is not None:
        errors += drafting.problems(task.template, task.fields, task.constants)
    for field, table in task.templates.items():
        labels = task.labels.get(field)
        if labels is None:
            errors.append(f"templates are keyed by {field!r}, which is not a label field ([labels.{field}])")
            continue
        errors += [
            f"templates.{field} names {label!r}, which is not one of its labels"
            for label in table
            if label not in labels
        ]
        uncovered = [label for label in labels if label not in table]
        if uncovered and task.template is None:
            errors.append(
                f"templates.{field} has no template for {', '.join(map(repr, uncovered))}, and the task has no "
                "`template` for a label without one"
            )
        for label, text in table.items():
            errors += drafting.problems(text, task.fields, task.constants, f"templates.{field}.{label}:")
    if len(task.templates) > 1:
        errors.append(
            f"templates are keyed by one label field, not {len(task.templates)} ({', '.join(task.templates)})"
        )
    return errors


def _example_errors(task: Task) -> list[str]:
    from slm_desk.contract.validation import validate_output

    errors = []
    for i, example in enumerate(task.examples, 1):
        _, problems = validate_output(task, example.output, example.input)
        errors += [f"example {i} ({example.input[:40]!r}): {p}" for p in problems]
    return errors


def parse_task(text: str, name: str, source: str) -> Task:
    """Parse and check one task file's text; raise TaskError naming every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"task file {source} is not valid TOML: {exc}", "fix the file's syntax") from exc
    data.setdefault("name", name)
    if "choice_prior" in data:
        raise TaskError(f"task file {source} sets choice_prior, which each input sets", "remove the key")
    try:
        task = Task.model_validate({**data, "source": source})
    except ValidationError as exc:
        reasons = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        # every reason in one round: the contract checks too, on the keys that did read, where they can run
        broken = {e["loc"][0] for e in exc.errors() if e["loc"]}
        try:
            draft = Task.model_validate({**{k: v for k, v in data.items() if k not in broken}, "source": source})
        except ValidationError:
            draft = None
        raise TaskError(
            f"task file {source} is refused:\n  - " + "\n  - ".join(reasons + (_problems(draft) if draft else [])),
            TASK_FILE_HINT,
        ) from exc
    problems = _problems(task)
    if problems:
        raise TaskError(f"task {task.name!r} ({source}) is refused:\n  - " + "\n  - ".join(problems), TASK_FILE_HINT)
    return task


TASK_FILE_HINT = "see 'Task file format' in the README; `slm-desk tasks show extract-ticket` prints a working one"


def _problems(task: Task) -> list[str]:
    """Every reason a parsed task file is refused: its contract, and its examples where the schema can check them
    (not when it is invalid, or has a $ref that is not its own: checking would need the network)."""
    try:
        problems = _consistency_errors(task)
        if not any(p.startswith("schema is not valid JSON Schema") or "'$ref'" in p for p in problems):
            problems += _example_errors(task)
    except RecursionError:
        problems = ["schema nests too deeply to check (thousands of levels); flatten it"]
    return problems


def _builtin_files() -> dict[str, Any]:
    folder = resources.files("slm_desk") / "builtin_tasks"
    return {entry.name.removesuffix(".toml"): entry for entry in folder.iterdir() if entry.name.endswith(".toml")}


def _user_files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(locations.user_tasks_dir().glob("*.toml"))}


def task_names() -> dict[str, str]:
    """Every task name and where it comes from ('built-in' or 'user'), users overriding built-ins."""
    names = {name: "built-in" for name in _builtin_files()}
    names.update({name: "user" for name in _user_files()})
    return dict(sorted(names.items()))


def task_text(name: str) -> tuple[str, str]:
    """The raw TOML of a task and where it lives."""
    user = _user_files()
    if name in user:
        try:
            return user[name].read_text(encoding="utf-8-sig"), str(user[name])  # -sig: a BOM some editors write
        except UnicodeDecodeError as exc:
            raise TaskError(f"{user[name]} is not UTF-8 text (bad byte at {exc.start})", "save it as UTF-8") from exc
        except PermissionError as exc:
            raise TaskError(
                f"cannot read the task file {user[name]}: permission denied",
                f"make it readable (chmod u+r {user[name]}), or remove it to use the built-in {name!r} if there is one",
            ) from exc
        except OSError as exc:  # a folder, or a link to nothing, where the task file should be
            raise TaskError(
                f"cannot read the task file {user[name]}: {exc.strerror or exc}",
                f"make it a TOML file, or remove it to use the built-in {name!r} if there is one",
            ) from exc
    builtin = _builtin_files()
    if name in builtin:
        return builtin[name].read_text(encoding="utf-8"), f"built-in:{name}"
    known = ", ".join(task_names()) or "none"
    raise UsageError(f"unknown task {name!r}", f"known tasks: {known}; `slm-desk tasks` lists them")


def load_task(name: str) -> Task:
    text, source = task_text(name)
    return parse_task(text, name, source)
