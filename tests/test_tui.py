"""The Textual app, driven with Pilot: every screen's main flow, with real inference on the Run screen."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, OptionList, Static, Switch, TextArea

from slm_desk.contract.calibration import Sample, build_profile
from slm_desk.contract.results import RunResult, Tokens
from slm_desk.contract.tasks import load_task
from slm_desk.desk import Desk
from slm_desk.tui.app import SlmDeskApp
from slm_desk.tui.modals import Confirm, CorrectAnswer, RunDetail
from slm_desk.tui.run_screen import RunScreen
from tests.conftest import INVOICE_TICKET, messages, model_lock

SIZE = (100, 32)


def text_of(app: SlmDeskApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def run_ticket(app: SlmDeskApp, pilot, text: str = INVOICE_TICKET) -> RunScreen:
    screen = app.screen
    assert isinstance(screen, RunScreen)
    screen.query_one("#input", TextArea).text = text
    await pilot.press("ctrl+r")
    await app.workers.wait_for_complete()
    await pilot.pause()
    return screen


@pytest.mark.model
async def test_run_screen_runs_a_task_with_real_inference() -> None:
    app = SlmDeskApp(initial_task="extract-ticket")
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.focused, TextArea)
        screen = await run_ticket(app, pilot)
        result = screen.result
        assert result is not None and result.task == "extract-ticket"
        assert result.valid and result.output is not None and result.output["invoice_id"] == "INV-8821"
        table = screen.query_one("#fields", DataTable)
        assert table.row_count == 3 and str(table.get_row_at(1)[0]) == "invoice_id"
        verdict = text_of(app, "#verdict")
        assert result.decision.upper() in verdict and ("VALID" in verdict)
        assert "done:" in text_of(app, "#status")
        assert app.desk.store.runs()[0]["input"] == INVOICE_TICKET  # recorded in the history
        await pilot.press("ctrl+o")  # copy: the envelope goes to the clipboard
        assert json.loads(app.clipboard)["task"] == "extract-ticket"


@pytest.mark.model
async def test_escape_cancels_and_the_ui_recovers() -> None:
    app = SlmDeskApp(initial_task="extract-booking")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        screen.query_one("#input", TextArea).text = "A table for 4 at 7pm on Friday, name is Sam Jones"
        with model_lock(app.desk, "extract-booking"):  # the run is in progress when Esc is pressed
            await pilot.press("ctrl+r")
            assert screen.running
            await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not screen.running
        assert "cancelled" in text_of(app, "#status") and screen.result is None
        await run_ticket(app, pilot)  # and it still runs afterwards
        assert screen.result is not None


@pytest.mark.model
async def test_history_search_open_and_rerun() -> None:
    app = SlmDeskApp(initial_task="extract-ticket")
    async with app.run_test(size=SIZE) as pilot:
        await run_ticket(app, pilot)
        await run_ticket(app, pilot, "The app crashes on start")
        await pilot.press("f2")
        await pilot.pause()
        table = app.screen.query_one("#runs", DataTable)
        assert table.row_count == 2
        app.screen.query_one("#search", Input).value = "INV-8821"
        await pilot.pause()
        assert table.row_count == 1 and "1 run matching" in text_of(app, "#count")
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, RunDetail)
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.current_mode == "run"
        assert len(app.desk.store.runs()) == 3


def seed_review(desk: Desk) -> None:
    base = dict(
        task="extract-ticket",
        task_version=1,
        model="m",
        errors=[],
        decision="review",
        attempts=1,
        latency_ms=1,
        tokens=Tokens(),
        reason="confidence below the threshold",
    )
    desk.store.record(
        RunResult(
            input="Refund INV-5",
            output={"issue_type": "billing", "invoice_id": "INV-5", "urgency": "low"},
            valid=True,
            **base,
        )
    )
    desk.store.record(
        RunResult(
            input="Refund INV-6 now",
            output=None,
            rejected_output='{"issue_type": "x"}',
            valid=False,
            **{**base, "errors": ["bad"], "attempts": 2},
        )
    )
    desk.store.record(
        RunResult(
            input="spam spam",
            output=None,
            rejected_output="{",
            valid=False,
            **{**base, "errors": ["bad"], "attempts": 2},
        )
    )


async def test_review_accept_correct_reject() -> None:
    desk = Desk()
    seed_review(desk)
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await pilot.pause()
        table = app.screen.query_one("#queue", DataTable)
        assert table.row_count == 3
        table.focus()
        await pilot.press("a")  # first item has a valid answer
        await pilot.pause()
        assert table.row_count == 2
        await pilot.press("c")  # second: correct it in the editor, checked as we type
        await pilot.pause()
        assert isinstance(app.screen, CorrectAnswer)
        editor = app.screen.query_one("#answer", TextArea)
        editor.text = '{"issue_type": "billing", "invoice_id": "INV-999", "urgency": "high"}'
        await pilot.pause()
        assert "does not appear in the input" in str(app.screen.query_one("#problems", Static).render())
        editor.text = '{"issue_type": "billing", "invoice_id": "INV-6", "urgency": "high"}'
        await pilot.pause()
        assert "valid" in str(app.screen.query_one("#problems", Static).render())
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("x")  # third: reject
        await pilot.pause()
        assert table.row_count == 0 and "nothing to review" in text_of(app, "#detail")
    statuses = desk.store.db.execute("SELECT status FROM review ORDER BY id").fetchall()
    assert [s[0] for s in statuses] == ["accepted", "corrected", "rejected"]


async def test_models_screen_lists_and_sets_defaults(slm_home: Path) -> None:
    app = SlmDeskApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        table = app.screen.query_one("#models", DataTable)
        assert table.row_count >= 8
        first = [str(c) for c in table.get_row_at(0)]
        assert first[0] == "smollm2-135m" and first[2] == "bundled" and first[4] == "yes"
        table.focus()
        await pilot.press("e")  # the small model as its own escalation target: refused, and said why
        await pilot.pause()
        assert app.desk.config.models.escalation is None
        assert any("smollm2-135m is the small model" in m for m in messages(app))
        encoder = next(i for i in range(table.row_count) if str(table.get_row_at(i)[0]) == "all-minilm-l6-v2")
        table.move_cursor(row=encoder)
        await pilot.press("s")  # a sentence encoder cannot answer a task
        await pilot.pause()
        assert app.desk.config.models.small == "smollm2-135m"
        assert any("all-minilm-l6-v2 is a sentence encoder" in m for m in messages(app))
        await pilot.press("m")  # ... but it can be the encoder heads read
        await pilot.pause()
        assert app.desk.config.models.embedding == "all-minilm-l6-v2"
        table.move_cursor(row=1)
        await pilot.press("s")  # not installed: refused with a hint
        await pilot.pause()
        assert app.desk.config.models.small == "smollm2-135m"
    assert tomllib.loads((slm_home / "config" / "config.toml").read_text())["models"]["embedding"] == "all-minilm-l6-v2"


async def test_models_screen_pulls_with_progress(slm_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slm_desk.data.catalog import bundled_model_path
    from tests.hub_server import HubFile, serve

    hub, server = serve()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    data = bundled_model_path().read_bytes()  # type: ignore[union-attr]
    hub.add("test-org/Tiny-GGUF", "tiny.gguf", HubFile(data))
    (slm_home / "config").mkdir(parents=True, exist_ok=True)
    (slm_home / "config" / "models.toml").write_text(
        '[[models]]\nid = "aaa-tiny"\nrepo = "test-org/Tiny-GGUF"\nfile = "tiny.gguf"\n'
        f'size_bytes = {len(data)}\nlicense = "Apache-2.0"\ncontext_length = 8192\ngood_for = "tests"\nrole = "small"\n'
    )
    try:
        app = SlmDeskApp()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f4")
            await pilot.pause()
            table = app.screen.query_one("#models", DataTable)
            table.focus()
            row = [str(table.get_row_at(i)[0]) for i in range(table.row_count)].index("aaa-tiny")
            table.move_cursor(row=row)
            await pilot.press("p")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert [str(c) for c in table.get_row_at(row)][2] == "yes"
    finally:
        server.shutdown()


async def test_calibration_screen_plots_the_profile() -> None:
    desk = Desk()
    task = load_task("route-ticket")
    samples = [Sample(c / 100, c % 3 != 0, ["route=card_issue"]) for c in range(1, 100)]
    desk.store.save_calibration(build_profile(task, "smollm2-135m", samples, 99, {"route": 0.6}))
    app = SlmDeskApp(desk=desk)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        await pilot.pause()
        assert "99 examples" in text_of(app, "#summary")
        plot = text_of(app, "#plot")
        assert "reliability diagram" in plot and "███" in plot and "confidence" in plot
        thresholds = app.screen.query_one("#thresholds", DataTable)
        assert thresholds.row_count == 6


async def test_settings_write_config_keeping_comments(slm_home: Path) -> None:
    config = slm_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("# mine\n[runtime]\nthreads = 2  # two cores here\n")
    app = SlmDeskApp()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f7")
        await pilot.pause()
        screen = app.screen
        screen.query_one("#escalation-enabled", Switch).value = True
        await pilot.press("ctrl+s")  # enabled without an endpoint: refused, nothing written
        await pilot.pause()
        assert not app.desk.config.escalation.enabled
        screen.query_one("#escalation-base_url", Input).value = "http://127.0.0.1:9/v1"
        screen.query_one("#escalation-model", Input).value = "larger"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.desk.config.escalation.enabled and app.desk.config.escalation.base_url == "http://127.0.0.1:9/v1"
    text = config.read_text()
    assert "# mine" in text and "# two cores here" in text and 'base_url = "http://127.0.0.1:9/v1"' in text


@pytest.mark.model
async def test_escalation_asks_before_text_leaves_the_machine(slm_home: Path) -> None:
    (slm_home / "config").mkdir(parents=True, exist_ok=True)
    (slm_home / "config" / "config.toml").write_text(
        '[escalation]\nenabled = true\nbase_url = "https://escalation.invalid/v1"\nmodel = "big"\n'
    )
    app = SlmDeskApp(initial_task="extract-ticket")
    async with app.run_test(size=SIZE) as pilot:
        screen = await run_ticket(app, pilot)
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert isinstance(app.screen, Confirm) and "escalation.invalid" in app.screen.question
        await pilot.press("escape")  # keep it local
        await pilot.pause()
        assert app.screen is screen and screen.result is not None and not screen.result.escalated
        assert app.desk.store.escalations_today() == 0


@pytest.mark.model
async def test_loopback_escalation_needs_no_prompt_and_failure_goes_to_review(slm_home: Path) -> None:
    (slm_home / "config").mkdir(parents=True, exist_ok=True)
    (slm_home / "config" / "config.toml").write_text(
        '[escalation]\nenabled = true\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "big"\nretries = 0\n'
    )
    app = SlmDeskApp(initial_task="extract-ticket")
    async with app.run_test(size=SIZE) as pilot:
        screen = await run_ticket(app, pilot)
        await pilot.press("ctrl+g")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.result is not None and screen.result.decision == "review"
        assert "escalation failed" in screen.result.reason


async def test_command_palette_reaches_every_screen() -> None:
    app = SlmDeskApp()
    async with app.run_test(size=SIZE) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for name in ("Run", "History", "Review", "Models", "Calib", "Settings"):
            assert any(t.startswith(f"Go to {name}") for t in titles), name
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Go to Models")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        assert app.current_mode == "models"


async def test_task_list_shows_descriptions() -> None:
    app = SlmDeskApp(initial_task="guard")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        tasks = app.screen.query_one("#tasks", OptionList)
        assert tasks.option_count >= 6
        assert "prompt_injection" in text_of(app, "#task-description")
