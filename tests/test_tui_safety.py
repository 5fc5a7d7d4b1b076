"""Two users of one model from the app: a second ctrl+r, Esc then ctrl+r, a run during calibration. No crash.

Before the pipeline owned a lock per model, each of these aborted the process inside ggml (GGML_ASSERT), and
the test suite itself died with it: these tests run the real bundled model on purpose.
"""

from __future__ import annotations

import pytest
from textual.widgets import ProgressBar, TextArea

from slm_desk.tui.app import SlmDeskApp
from slm_desk.tui.calibration_screen import CalibrationScreen
from slm_desk.tui.run_screen import RunScreen
from tests.conftest import INVOICE_TICKET, messages, model_lock

pytestmark = pytest.mark.model


SIZE = (100, 32)
BOOKING = "A table for 4 at 7pm on Friday, name is Sam Jones"


async def test_ctrl_r_twice_during_a_run_gives_one_answer() -> None:
    app = SlmDeskApp(initial_task="extract-booking")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        screen.query_one("#input", TextArea).text = BOOKING
        with model_lock(app.desk, "extract-booking"):  # the first run is in progress at the second and third press
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert screen.running
            await pilot.press("ctrl+r", "ctrl+r")
            await pilot.pause()  # a notification is a message: counted once the app has handled it
        refused = sum("in progress" in message for message in messages(app))
        assert refused == 2
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.result is not None and screen.result.input == BOOKING
        assert len(app.desk.store.runs()) == 1  # one answer, and a refusal that says why for each other press


async def test_escape_then_ctrl_r_waits_for_the_cancelled_generation() -> None:
    app = SlmDeskApp(initial_task="extract-booking")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        screen.query_one("#input", TextArea).text = BOOKING
        with model_lock(app.desk, "extract-booking"):  # the first run is in progress at Esc
            await pilot.press("ctrl+r", "escape", "ctrl+r")
            assert screen.running  # the second run, waiting for the model
        await app.workers.wait_for_complete()
        await pilot.pause()
        for _ in range(3):  # the first run may still be finishing its token when the second starts
            if screen.result is not None:
                break
            await app.workers.wait_for_complete()
            await pilot.pause(0.5)
        assert screen.result is not None and screen.result.input == BOOKING


async def test_a_run_during_calibration_gets_its_answer_and_calibration_cancels() -> None:
    app = SlmDeskApp(initial_task="extract-ticket")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        await pilot.pause()
        calibration = app.screen
        assert isinstance(calibration, CalibrationScreen)
        await pilot.press("k")  # route-ticket: 300 items, far longer than this test
        await pilot.pause(0.5)
        assert calibration.query_one("#calibrate-progress", ProgressBar).display
        await pilot.press("f1")
        await pilot.pause()
        run = app.screen
        assert isinstance(run, RunScreen)
        run.query_one("#input", TextArea).text = INVOICE_TICKET
        await pilot.press("ctrl+r")
        for _ in range(240):  # the run takes turns with calibration's items on the one model
            await pilot.pause(0.25)
            if run.result is not None:
                break
        assert run.result is not None and run.result.input == INVOICE_TICKET
        await pilot.press("f6")
        await pilot.pause()
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not calibration.query_one("#calibrate-progress", ProgressBar).display
        assert app.desk.store.calibration("route-ticket", 1, "smollm2-135m") is None  # nothing half-saved
