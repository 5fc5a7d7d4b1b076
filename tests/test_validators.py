from __future__ import annotations

from slm_desk.contract.validators import MaxLength, NonEmpty, NoNewDigits, NullIff, Regex, TemplateSlots, Verbatim


def test_verbatim_accepts_copies_and_allowed_values_only() -> None:
    rule = Verbatim(kind="verbatim", fields=["name", "date"], allow=["there"])
    assert rule.check({"name": "Kacie", "date": None}, "under the name of Kacie Huso", None) == []
    assert rule.check({"name": "there", "date": None}, "no name here", None) == []
    assert rule.check({"name": "kacie", "date": None}, "Kacie", None) == [
        "name 'kacie' does not appear in the input; copy it exactly or use 'there'"  # what the task allows
    ]
    plain = Verbatim(kind="verbatim", fields=["name"])
    assert plain.check({"name": "Tom"}, "hi", None) == [
        "name 'Tom' does not appear in the input; copy it exactly or use null"
    ]
    assert Verbatim(kind="verbatim", fields=["name"], ignore_case=True).check({"name": "kacie"}, "Kacie", None) == []


def test_regex_is_a_full_match_and_ignores_null() -> None:
    rule = Regex(kind="regex", field="id", pattern=r"INV-\d+")
    assert rule.check({"id": "INV-12"}, "", None) == []
    assert rule.check({"id": None}, "", None) == []
    assert rule.check({"id": "INV-12x"}, "", None)


def test_no_new_digits() -> None:
    rule = NoNewDigits(kind="no_new_digits", fields=["query"])
    assert rule.check({"query": "iPhone 13 battery"}, "my iphone 13 dies", None) == []
    assert rule.check({"query": "iPhone 14 battery"}, "my iphone 13 dies", None) == [
        "query contains '14', which is not in the input"
    ]


def test_non_empty_and_max_length() -> None:
    assert NonEmpty(kind="non_empty", fields=["q"]).check({"q": "  "}, "", None) == ["q is empty"]
    rule = MaxLength(kind="max_length", field="q", max_chars=100, max_ratio=1.0)
    assert rule.check({"q": "x" * 20}, "y" * 20, None) == []
    assert rule.check({"q": "x" * 30}, "y" * 20, None) == ["q is 30 characters; at most 20 allowed"]


def test_null_iff() -> None:
    rule = NullIff(kind="null_iff", field="span", when_field="label", equals=["safe"])
    assert rule.check({"label": "safe", "span": None}, "", None) == []
    assert rule.check({"label": "pii", "span": "a@b.c"}, "", None) == []
    assert rule.check({"label": "safe", "span": "x"}, "", None) == ["span must be null when label is 'safe'"]
    assert rule.check({"label": "pii", "span": None}, "", None) == ["span is required when label is 'pii'"]


def test_template_slots_must_all_be_filled() -> None:
    rule = TemplateSlots(kind="template")
    template = "Hi {name}, about your {topic}."
    assert rule.check({"name": "Tom", "topic": "order"}, "", template) == []
    assert rule.check({"name": "", "topic": "order"}, "", template) == ["slot 'name' is not filled: the draft needs it"]
    assert rule.check({"name": None, "topic": "order"}, "", "Hi {name|there}, about your {topic}.") == []  # fallback
