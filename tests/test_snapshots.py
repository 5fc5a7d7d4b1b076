"""Snapshot tests of the screens people look at, at 80x24 (the smallest terminal we support).

Update after an intended UI change with: .venv/bin/python -m pytest tests/test_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from slm_desk.tui.app import SlmDeskApp


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("run", []),
        ("history", ["f2"]),
        ("review", ["f3"]),
        ("models", ["f4"]),
        ("calibration", ["f6"]),
        ("settings", ["f7"]),
    ],
)
def test_screen(snap_compare, name: str, keys: list[str]) -> None:
    assert snap_compare(SlmDeskApp(initial_task="extract-ticket"), press=keys, terminal_size=(80, 24))
