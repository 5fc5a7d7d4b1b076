"""Review spends a person's labels where they teach most: the queue's order, one key per label, undo, and a
correction that replaces an earlier label says so. The store, the head and the app are real; no model loads."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from textual.widgets import DataTable, Static

from slm_desk.contract.results import RunResult, Tokens
from slm_desk.contract.tasks import load_task
from slm_desk.data import review
from slm_desk.desk import Desk
from slm_desk.tui.app import SlmDeskApp
from tests.conftest import first_items, messages
from tests.test_tui import SIZE

POOL = Path(__file__).parent / "data" / "route-ticket.pool.jsonl"
ROUTE = load_task("route-ticket")
LABELS = list(ROUTE.labels["route"])


def queue(desk: Desk, text: str, route: str | None, confidence: float | None) -> None:
    desk.store.record(
        RunResult(
            task="route-ticket",
            task_version=ROUTE.version,
            model="m",
            input=text,
            output={"route": route} if route else None,
            rejected_output=None if route else '{"route": "nope"}',
            valid=route is not None,
            errors=[] if route else ["route: 'nope' is not one of the labels"],
            confidence=confidence,
            decision="review",
            reason="confidence below the threshold",
            attempts=1,
            latency_ms=1,
            tokens=Tokens(),
        )
    )


@given(
    st.lists(
        st.tuples(st.booleans(), st.booleans(), st.none() | st.floats(0.0, 1.0, allow_nan=False)),
        max_size=30,
    )
)
def test_teaching_order_puts_disagreement_then_the_least_sure_first(rows) -> None:  # type: ignore[no-untyped-def]
    items = [{"id": i, "disagrees": d, "high_risk": h, "confidence": c} for i, (d, h, c) in enumerate(rows)]
    ordered = review.teaching_order(items)
    assert sorted(item["id"] for item in ordered) == list(range(len(items)))  # nothing lost, nothing twice
    for a, b in zip(ordered, ordered[1:], strict=False):
        ka = (not a["disagrees"], 0.0 if a["confidence"] is None else a["confidence"])
        kb = (not b["disagrees"], 0.0 if b["confidence"] is None else b["confidence"])
        assert ka <= kb  # 0.0 is a confidence like any other, and the lowest; high risk is marked, not moved


@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.none() | st.floats(0.0, 1.0, allow_nan=False),
            st.none() | st.floats(0.0, 1.0, allow_nan=False),
            st.integers(0, 5),
        ),
        max_size=30,
    )
)
def test_the_head_s_margin_orders_and_near_duplicates_wait(rows) -> None:  # type: ignore[no-untyped-def]
    """The head's margin, where there is one, ranks before the answer's confidence; with embeddings, an item as
    near as NEAR to one above it moves after every item that is not, each group in its own order."""
    import numpy as np

    basis = np.eye(6)
    items = [
        {"id": i, "disagrees": d, "margin": m, "confidence": c, "vector": basis[v]}
        for i, (d, m, c, v) in enumerate(rows)
    ]
    ordered = review.teaching_order(items)
    assert sorted(item["id"] for item in ordered) == list(range(len(items)))

    def sure(item: dict) -> float:  # type: ignore[type-arg]
        value = item["margin"] if item["margin"] is not None else item["confidence"]
        return 0.0 if value is None else value

    seen: set[int] = set()
    firsts = []
    for item in sorted(items, key=lambda it: (not it["disagrees"], sure(it), it["id"])):
        axis = int(np.argmax(item["vector"]))
        if axis not in seen:
            seen.add(axis)
            firsts.append(item["id"])
    assert [item["id"] for item in ordered[: len(firsts)]] == firsts  # one of each kind, least sure first


def test_the_queue_marks_where_the_head_disagrees_and_puts_it_first(tmp_path: Path) -> None:
    desk = Desk()
    desk.add_examples(ROUTE, first_items(POOL, 200, tmp_path / "pool.jsonl"))
    desk.train(ROUTE)
    queue(desk, "How do I top up my account with cash?", "payments_and_transfers", 0.2)  # what the head says too?
    queue(desk, "Someone stole my card and used it", "fees_and_charges", 0.9)  # the head says fraud_or_security
    queue(desk, "Why was I charged a fee?", "fees_and_charges", 0.5)
    items = desk.review_queue()
    stolen = next(item for item in items if item["input"].startswith("Someone stole"))
    assert stolen["head_answer"] == {"route": "fraud_or_security"} and stolen["disagrees"]
    assert items[0]["disagrees"]  # a disagreement comes before every item that has none
    assert [item["id"] for item in desk.review_queue(teaching_order=False)] == [1, 2, 3]  # arrival order


async def test_label_with_number_keys_undo_and_the_cursor_stays() -> None:
    desk = Desk()
    for n, confidence in enumerate((0.9, 0.3, 0.6)):
        queue(desk, f"question {n} about my card", "other", confidence)
    desk.store.add_to_pool("route-ticket", ROUTE.version, [("question 1 about my card", {"route": "other"}, "file")])
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await app.workers.wait_for_complete()  # the teaching order comes from a worker, off the event loop
        await pilot.pause()
        table = app.screen.query_one("#queue", DataTable)
        assert [str(table.get_row_at(r)[0]) for r in range(3)] == ["2", "3", "1"]  # least confident first
        assert f"1 {LABELS[0]}  2 {LABELS[1]}" in str(app.screen.query_one("#detail", Static).render())
        table.focus()
        await pilot.press("down")  # item 3
        await pilot.press(str(LABELS.index("card_issue") + 1))
        await pilot.pause()
        assert desk.store.pool_output("route-ticket", ROUTE.version, "question 2 about my card") == {
            "route": "card_issue"
        }
        assert table.row_count == 2 and table.cursor_row == 1  # on the item that took its place
        table.move_cursor(row=0)
        await pilot.press(str(LABELS.index("fees_and_charges") + 1))  # item 2, whose input the pool had
        await pilot.pause()
        assert any("replaces the earlier label" in m and '"other"' in m for m in messages(app)), messages(app)
        await pilot.press("u")
        await pilot.pause()
        assert table.row_count == 2 and any("undone" in m for m in messages(app))
        assert desk.store.pool_output("route-ticket", ROUTE.version, "question 1 about my card") == {"route": "other"}
        await pilot.press("u", "u")  # the first verdict, then nothing left
        await pilot.pause()
        assert table.row_count == 3 and desk.store.pool_output("route-ticket", 1, "question 2 about my card") is None
        assert any(m.strip() == "nothing to undo" for m in messages(app))
        await pilot.press("9")  # route-ticket has six labels
        assert any("has 6 labels: press 1-6" in m for m in messages(app))


async def test_an_invalid_answer_can_be_labelled_with_a_key() -> None:
    desk = Desk()
    queue(desk, "my card does not work", None, None)
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        app.screen.query_one("#queue", DataTable).focus()
        await pilot.press(str(LABELS.index("card_issue") + 1))
        await pilot.pause()
        assert desk.store.pool_output("route-ticket", ROUTE.version, "my card does not work") == {"route": "card_issue"}
        assert "nothing to review" in str(app.screen.query_one("#detail", Static).render())


async def test_the_head_retrains_by_itself_after_n_new_labels(slm_home: Path, tmp_path: Path) -> None:
    (slm_home / "config").mkdir(parents=True, exist_ok=True)
    (slm_home / "config" / "config.toml").write_text("[teach]\nretrain_after = 2\n")
    desk = Desk()
    desk.add_examples(ROUTE, first_items(POOL, 200, tmp_path / "pool.jsonl"))
    desk.train(ROUTE)
    first = desk.store.head_trained_at("route-ticket", ROUTE.version)
    for n in range(3):
        queue(desk, f"a new question {n} about my card", "other", 0.5)
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        app.screen.query_one("#queue", DataTable).focus()
        await pilot.press(str(LABELS.index("card_issue") + 1))
        await pilot.pause()
        assert not any("retrain" in m for m in messages(app))  # one label: not yet
        await pilot.press(str(LABELS.index("fees_and_charges") + 1))  # another key: the same one twice is one press
        await pilot.pause()
        assert any("2 new labels for route-ticket: retraining its head" in m for m in messages(app))
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert any("head retrained on 202 items: held-out accuracy" in m and "(was " in m for m in messages(app)), (
            messages(app)
        )
    assert desk.store.head_trained_at("route-ticket", ROUTE.version) != first
    assert desk.due_for_retraining(ROUTE) is None  # the count starts again from the new head
