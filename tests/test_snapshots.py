"""Snapshot tests of the screens people look at, at 80x24 (the smallest terminal we support).

Update after an intended UI change with: .venv/bin/python -m pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from slm_desk.contract.tasks import task_names
from slm_desk.tui.app import SlmDeskApp


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("run", []),
        ("history", ["f2"]),
        ("review", ["f3"]),
        ("models", ["f4"]),
        ("teach", ["f5"]),
        ("calibration", ["f6"]),
        ("settings", ["f7"]),
    ],
)
def test_screen(snap_compare, name: str, keys: list[str]) -> None:
    assert snap_compare(SlmDeskApp(initial_task="extract-ticket"), run_before=_steady(*keys), terminal_size=(80, 24))


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_teach_screen(snap_compare, size: tuple[int, int]) -> None:
    from pathlib import Path

    from slm_desk.contract.tasks import load_task
    from slm_desk.desk import Desk

    desk = Desk()
    desk.add_examples(load_task("route-ticket"), Path(__file__).parent / "data" / "route-ticket.pool.jsonl")
    assert snap_compare(SlmDeskApp(desk=desk), run_before=_steady("f5"), terminal_size=size)


def _steady(*keys: str):  # type: ignore[no-untyped-def]
    """Press `keys`, then stop every text cursor on the screen blinking: a snapshot taken half a second later
    would otherwise catch the cursor on or off by chance (seen on a loaded CI machine)."""

    async def before(pilot) -> None:  # type: ignore[no-untyped-def]
        from textual.widgets import Input, TextArea

        await pilot.press(*keys)
        await pilot.pause()
        for widget in pilot.app.screen.query("TextArea, Input"):
            if isinstance(widget, TextArea | Input):
                widget.cursor_blink = False
        await pilot.pause()

    return before


def _drafted_reply() -> object:
    """A draft-reply result as the pipeline returns it (the layout is under test here, not the model)."""
    from slm_desk.contract.results import RunResult, Tokens
    from slm_desk.contract.tasks import load_task

    output = {
        "customer_name": "Dana",
        "topic": "order",
        "action": "We have started a refund to your original payment method.",
        "timeframe": "5 business days",
    }
    return RunResult(
        task="draft-reply",
        task_version=2,
        model="smollm2-135m",
        input="Hi, this is Dana. My order arrived broken, I want my money back.",
        output=output,
        valid=True,
        errors=[],
        confidence=0.82,
        raw_confidence=0.82,
        field_confidence={"customer_name": 0.99, "topic": 0.9, "action": 0.82, "timeframe": 0.85},
        decision="accept",
        reason="valid; task not calibrated, so no confidence threshold applied",
        rendered=load_task("draft-reply").render(output),
        attempts=1,
        latency_ms=900,
        tokens=Tokens(prompt=300, completion=30),
    )


async def _show_drafted_reply(pilot) -> None:  # type: ignore[no-untyped-def]
    from slm_desk.tui.run_screen import RunScreen

    screen = pilot.app.screen
    screen.post_message(RunScreen.Completed(_drafted_reply()))
    await pilot.pause()
    screen.query_one("#verdict-scroll").scroll_end(animate=False)
    await pilot.pause()
    await _steady()(pilot)


def test_draft_reply_result_scrolls_into_view_at_80x24(snap_compare) -> None:
    """The drafted reply is below the fold of a small terminal: its area scrolls to it (the footer stays whole)."""
    app = SlmDeskApp(initial_task="draft-reply")
    assert snap_compare(app, run_before=_show_drafted_reply, terminal_size=(80, 24))


def test_run_screen_at_60x20_collapses_the_task_list(snap_compare) -> None:
    assert snap_compare(SlmDeskApp(initial_task="extract-booking"), run_before=_steady(), terminal_size=(60, 20))


async def test_the_whole_reply_is_reachable_at_80x24() -> None:
    app = SlmDeskApp(initial_task="draft-reply")
    async with app.run_test(size=(80, 24)) as pilot:
        await _show_drafted_reply(pilot)
        scroll = app.screen.query_one("#verdict-scroll")
        assert scroll.max_scroll_y > 0, "the result fits without scrolling: the test no longer tests scrolling"
        assert scroll.scroll_y == scroll.max_scroll_y
        shown = app.export_screenshot().replace("&#160;", " ")
        assert "The Support Team" in shown  # the reply's last line is on screen


async def test_narrow_terminals_keep_the_task_names_and_drop_the_description() -> None:
    app = SlmDeskApp(initial_task="extract-booking")
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        assert app.screen.query_one("#task-pane").outer_size.width == 22
        assert not app.screen.query_one("#task-description").display
        tasks = app.screen.query_one("#tasks")
        longest = max(task_names(), key=len)
        assert len(longest) <= tasks.content_region.width, longest  # every name on one line, none wrapped
    async with SlmDeskApp(initial_task="extract-booking").run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert pilot.app.screen.query_one("#task-pane").outer_size.width == 24


@pytest.mark.parametrize("size", [(60, 20), (120, 40)])
async def test_every_screen_key_is_in_the_navigation_bar_at_any_width(size: tuple[int, int]) -> None:
    async with SlmDeskApp().run_test(size=size) as pilot:
        await pilot.pause()
        shown = str(pilot.app.screen.query_one("#nav").render())
        assert all(f"F{n} " in shown for n in range(1, 8)), shown
        assert ("F7 Settings" in shown) == (size[0] >= 68), shown  # titles shorten only where they must


@pytest.mark.parametrize("key", ["f1", "f2", "f3", "f4", "f5", "f6", "f7"])
async def test_every_footer_key_fits_a_60_column_terminal(key: str) -> None:
    """Models' footer lost its last keys at 60x20 ("Set escalation", "Set encoder" and the rest cut)."""
    from textual.widgets._footer import FooterKey

    async with SlmDeskApp().run_test(size=(60, 20)) as pilot:
        await pilot.press(key)
        await pilot.pause()
        keys = list(pilot.app.screen.query(FooterKey))
        assert keys and all(k.region.right <= 60 and k.region.width > 0 for k in keys), [
            (k.key, k.region) for k in keys
        ]


async def test_the_whole_reliability_diagram_shows_at_80x24() -> None:
    """At 80x24 the diagram's lower rows, its axis and its counts were below the screen's edge."""
    async with SlmDeskApp(initial_task="route-ticket").run_test(size=(80, 24)) as pilot:
        await pilot.press("f6")
        await pilot.pause()
        plot = pilot.app.screen.query_one("#plot")
        assert "confidence" in str(plot.render()) and plot.region.height > 0
        lines = str(plot.render()).splitlines()
        counts = next(i for i, line in enumerate(lines) if line.lstrip().startswith("n "))
        assert plot.region.y + counts < 24 - 1, (plot.region, counts)  # above the footer
