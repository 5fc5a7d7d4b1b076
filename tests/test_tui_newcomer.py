"""What a new user meets in the app's first minutes: keys that say what they did, in the app's own words."""

from __future__ import annotations

from textual.widgets import DataTable, Input, OptionList, TextArea

from slm_desk.desk import Desk
from slm_desk.tui.app import SlmDeskApp
from tests.test_tui import SIZE, seed_review


def messages(app: SlmDeskApp) -> list[str]:
    return [f"{n.title} {n.message}" for n in app._notifications]


async def test_removing_a_model_that_is_not_installed_says_so() -> None:
    app = SlmDeskApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        table = app.screen.query_one("#models", DataTable)
        table.focus()
        await pilot.press("down", "d")  # the second catalog entry is not installed
        await pilot.pause()
        assert any("is not installed: nothing to remove" in m for m in messages(app))
        assert app.screen.query_one("#models", DataTable)  # no confirmation dialog was pushed


async def test_accepting_an_invalid_answer_points_to_the_correct_key() -> None:
    desk = Desk()
    seed_review(desk)
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        app.screen.query_one("#queue", DataTable).focus()
        await pilot.press("down", "a")  # the second item's answer failed validation
        await pilot.pause()
        shown = messages(app)
        assert any("press c" in m for m in shown) and not any("slm-desk review" in m for m in shown)


async def test_enter_in_history_search_goes_to_the_matching_runs() -> None:
    desk = Desk()
    seed_review(desk)
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        await pilot.pause()
        app.screen.query_one("#search", Input).focus()
        await pilot.press(*"INV-6", "enter")
        await pilot.pause()
        table = app.screen.query_one("#runs", DataTable)
        assert app.focused is table and table.row_count == 1
        await pilot.press("enter")  # and Enter again opens it
        await pilot.pause()
        assert type(app.screen).__name__ == "RunDetail"


async def test_calibrating_a_task_without_labelled_data_speaks_in_app_keys() -> None:
    app = SlmDeskApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        await pilot.pause()
        from textual.widgets import Select

        app.screen.query_one("#task", Select).value = "guard"
        await pilot.pause()
        await pilot.press("k")
        await pilot.pause()
        shown = " ".join(messages(app))
        assert "Review (F3" in shown and "press k again" in shown


async def test_each_task_shows_a_sample_input_and_the_status_names_it() -> None:
    app = SlmDeskApp(initial_task="extract-booking")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        placeholder = str(screen.query_one("#input", TextArea).placeholder)
        assert placeholder.startswith("for example: ") and "ctrl+r" in placeholder
        assert "extract-booking" in str(screen.query_one("#status").render())
        tasks = screen.query_one("#tasks", OptionList)
        tasks.highlighted = list(tasks._options).index(tasks.get_option("route-ticket"))
        await pilot.pause()
        assert "route-ticket" in str(screen.query_one("#status").render())
        assert str(screen.query_one("#input", TextArea).placeholder) != placeholder


async def test_copy_does_not_claim_the_terminal_took_it() -> None:
    desk = Desk()
    app = SlmDeskApp(desk=desk, initial_task="draft-reply")
    async with app.run_test(size=SIZE) as pilot:
        from tests.test_snapshots import _show_drafted_reply

        await _show_drafted_reply(pilot)
        await pilot.press("ctrl+o")
        shown = " ".join(messages(app))
        assert "OSC 52" in shown and "copied to the clipboard" not in shown
