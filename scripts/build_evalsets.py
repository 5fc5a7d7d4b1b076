"""Build slm-desk's built-in eval sets from the public data in ../shared/data.

    python scripts/build_evalsets.py [DATA_DIR]

Writes slm_desk/evalsets/route-ticket.jsonl (banking77 intents mapped to route-ticket's six queues),
extract-booking.jsonl (restaurant8k slot spans), both PolyAI's (CC BY 4.0), and rewrite-followup.jsonl (the
follow-up questions of CAST_EVAL_TOPICS of TREC CAsT 2019, MIT), lines of {"input": ..., "output": {...}}.
Deterministic (seeded); few-shot example inputs of the tasks are left out so an eval never scores a memorised
example, and no conversation of an eval topic is in any pool (scripts/teach_data.py).
"""

from __future__ import annotations

import csv
import json
import random
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "slm_desk" / "evalsets"
PER_ROUTE, BOOKINGS = 50, 300
ROUTES = {
    "card_issue": "card_arrival card_linking card_delivery_estimate card_not_working contactless_not_working "
    "getting_virtual_card card_acceptance get_physical_card visa_or_mastercard disposable_card_limits card_swallowed "
    "getting_spare_card order_physical_card virtual_card_not_working get_disposable_virtual_card activate_my_card "
    "card_about_to_expire apple_pay_or_google_pay supported_cards_and_currencies",
    "payments_and_transfers": "pending_cash_withdrawal automatic_top_up pending_top_up cancel_transfer top_up_limits "
    "wrong_amount_of_cash_received transfer_not_received_by_recipient top_up_reverted "
    "balance_not_updated_after_cheque_or_cash_deposit topping_up_by_card declined_cash_withdrawal pending_card_payment "
    "declined_transfer Refund_not_showing_up request_refund declined_card_payment pending_transfer transfer_timing "
    "reverted_card_payment? beneficiary_not_allowed receiving_money failed_transfer transfer_into_account "
    "verify_top_up top_up_by_cash_or_cheque top_up_failed balance_not_updated_after_bank_transfer exchange_via_app",
    "account_access": "pin_blocked passcode_forgotten change_pin edit_personal_details why_verify_identity "
    "unable_to_verify_identity verify_my_identity verify_source_of_funds terminate_account",
    "fees_and_charges": "exchange_rate card_payment_wrong_exchange_rate extra_charge_on_statement "
    "top_up_by_bank_transfer_charge card_payment_fee_charged transaction_charged_twice transfer_fee_charged "
    "wrong_exchange_rate_for_cash_withdrawal exchange_charge top_up_by_card_charge cash_withdrawal_charge",
    "fraud_or_security": "lost_or_stolen_card compromised_card card_payment_not_recognised "
    "direct_debit_payment_not_recognised cash_withdrawal_not_recognised lost_or_stolen_phone",
    "other": "age_limit fiat_currency_support atm_support country_support",
}
ROUTE_OF = {intent: route for route, intents in ROUTES.items() for intent in intents.split()}
SLOTS = ["people", "date", "time", "first_name", "last_name"]


def example_inputs(task: str) -> set[str]:
    data = tomllib.loads((ROOT / "slm_desk" / "builtin_tasks" / f"{task}.toml").read_text())
    return {e["input"] for e in data.get("examples", [])}


def routes(data: Path) -> list[dict]:
    categories = json.loads((data / "banking77" / "categories.json").read_text())
    unmapped = set(categories) - set(ROUTE_OF)
    assert not unmapped, f"intents without a route: {sorted(unmapped)}"
    skip = example_inputs("route-ticket")
    by_route: dict[str, list[str]] = defaultdict(list)
    with (data / "banking77" / "train.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["text"] not in skip:
                by_route[ROUTE_OF[row["category"]]].append(row["text"].strip())
    rng = random.Random(77)
    items = [
        {"input": text, "output": {"route": route}}
        for route in ROUTES
        for text in rng.sample(sorted(set(by_route[route])), PER_ROUTE)
    ]
    rng.shuffle(items)
    return items


def booking_items(data: Path, skip: set[str]) -> list[dict]:
    """Every restaurant8k utterance not in `skip`, once, with its slot spans copied verbatim."""
    items, seen = [], set()
    for record in json.loads((data / "restaurant8k" / "train.json").read_text(encoding="utf-8")):
        text = record["userInput"]["text"]
        if text in skip or text in seen:
            continue
        seen.add(text)
        output = dict.fromkeys(SLOTS)
        for label in record.get("labels", []):
            span = label["valueSpan"]
            output[label["slot"]] = text[span.get("startIndex", 0) : span["endIndex"]]
        items.append({"input": text, "output": output})
    return items


def bookings(data: Path) -> list[dict]:
    items = booking_items(data, example_inputs("extract-booking"))
    rng = random.Random(8)
    with_slots = [i for i in items if any(i["output"].values())]
    without = [i for i in items if not any(i["output"].values())]
    chosen = rng.sample(with_slots, BOOKINGS * 4 // 5) + rng.sample(without, BOOKINGS // 5)
    rng.shuffle(chosen)
    return chosen


# 12 of CAsT 2019's 32 conversations judge rewrite-followup; the other 20 and all of 2020 are its pool. 2019 only:
# its rewrites use nothing but the earlier questions, which is all a rewrite of ours may use.
CAST_EVAL_TOPICS = sorted(
    random.Random(2019).sample(
        [
            1,
            2,
            31,
            33,
            35,
            37,
            39,
            41,
            43,
            45,
            47,
            49,
            51,
            53,
            55,
            57,
            59,
            61,
            63,
            65,
            67,
            69,
            71,
            72,
            73,
            74,
            75,
            76,
            77,
            78,
            79,
            80,
        ],
        12,
    )
)


def cast_turns(data: Path, year: int) -> list[dict]:
    return [json.loads(line) for line in (data / "cast" / f"rewrites-{year}.jsonl").read_text().splitlines()]


def followup_item(turn: dict) -> dict:
    """A CAsT turn as rewrite-followup's input (the earlier questions, then the follow-up) and gold output."""
    return {"input": "\n".join([*turn["history"], turn["utterance"]]), "output": {"query": turn["rewrite"]}}


def followups(data: Path) -> list[dict]:
    """The eval topics' follow-ups: every turn with a history (a first question has nothing to resolve)."""
    return [followup_item(t) for t in cast_turns(data, 2019) if t["topic"] in CAST_EVAL_TOPICS and t["history"]]


# held out of the shared files for the jobs that write text and the guard; scripts/teach_data.py pools the rest
TOPICS, BUGS, SUPPORT, PROMPTS, EMAILS = 150, 300, 540, 110, 40
BUG_CHARS = 2000  # a report is stored to here (title-bug-report reads 1,000): some reach 74,000 characters
SUPPORT_FIELDS = [
    "order_id",
    "invoice_id",
    "person_name",
    "account_type",
    "delivery_city",
    "delivery_country",
    "refund_amount",
]
HANDWRITTEN = ROOT / "scripts" / "handwritten"  # the sets written for slm-desk that these replaced: pool items now


def topic_items(data: Path) -> list[dict]:
    """TREC topics (NIST): a searcher's description and the short query written for it."""
    lines = (data / "trec-topics" / "topics.jsonl").read_text(encoding="utf-8").splitlines()
    topics = map(json.loads, lines)
    return [{"input": t["description"].strip(), "output": {"query": t["title"].strip()}} for t in topics]


def bug_items(data: Path, chars: int | None = None) -> list[dict]:
    """gitbugs' Hadoop reports (CC BY 4.0) and their one-line titles; `chars` cuts a stored report."""
    lines = (data / "gitbugs" / "hadoop_train.jsonl").read_text(encoding="utf-8").splitlines()
    items = []
    for row in map(json.loads, lines):
        report = row["description"].strip()
        if report and row["summary"].strip():
            items.append({"input": report[:chars] if chars else report, "output": {"title": row["summary"].strip()}})
    return items


def support_items(data: Path) -> list[dict]:
    """Bitext's customer messages (CDLA-Sharing-1.0): the intent, the customer's detail copied from the message as
    its offsets say (the data's `value` sometimes drops leading zeros or changes case), and the data's own reply as
    the `reference` a draft's tone is compared with (ROUGE-L)."""
    items = []
    for row in map(json.loads, (data / "bitext" / "train.jsonl").read_text(encoding="utf-8").splitlines()):
        output = {"intent": row["intent"], **dict.fromkeys(SUPPORT_FIELDS)}
        if row["entity"]:
            entity = row["entity"]
            output[entity["type"]] = row["instruction"][entity["start"] : entity["end"]]
        items.append({"input": row["instruction"], "output": output, "reference": row["response"]})
    return items


def prompt_items(data: Path) -> list[dict]:
    """deepset's prompts (Apache-2.0), labelled without a span: an injection line names its label only (a pool line
    may leave out what it does not know); a benign one is safe, whose span is null by the task's rule."""
    lines = (data / "prompt-injections" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [
        {"input": r["text"], "output": {"label": "prompt_injection"} if r["label"] == "injection" else SAFE}
        for r in map(json.loads, lines)
    ]


def email_items(data: Path) -> list[dict]:
    """BIPIA's emails (MIT): clean ones safe, attacked ones with the attack's span."""
    lines = (data / "prompt-injections" / "bipia_email_train.jsonl").read_text(encoding="utf-8").splitlines()
    items = []
    for r in map(json.loads, lines):
        if r["output"] == "injection":
            start, end = r["span"]
            items.append({"input": r["input"], "output": {"label": "prompt_injection", "span": r["input"][start:end]}})
        else:
            items.append({"input": r["input"], "output": SAFE})
    return items


SAFE = {"label": "safe", "span": None}


def held_apart(items: list[dict], n: int, seed: int, skip: set[str]) -> list[dict]:
    """`n` items drawn by `seed`, none of them in `skip` (a task's few-shot examples)."""
    return random.Random(seed).sample([i for i in items if i["input"] not in skip], n)


def write(name: str, items: list[dict]) -> None:
    path = OUT / f"{name}.jsonl"
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    print(f"{path.relative_to(ROOT)}: {len(items)} items")


if __name__ == "__main__":
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    write("route-ticket", routes(data_dir))
    write("extract-booking", bookings(data_dir))
    write("rewrite-followup", followups(data_dir))
    for name, items, n, seed in (
        ("rewrite-query", topic_items(data_dir), TOPICS, 51),
        ("title-bug-report", bug_items(data_dir, BUG_CHARS), BUGS, 1888),
        ("draft-support-reply", support_items(data_dir), SUPPORT, 27),
    ):
        write(name, held_apart(items, n, seed, example_inputs(name)))
    guard = held_apart(prompt_items(data_dir), PROMPTS, 546, example_inputs("guard"))
    write("guard", guard + held_apart(email_items(data_dir), EMAILS, 200, example_inputs("guard")))
