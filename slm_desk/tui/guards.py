"""Guards for Textual's own widgets where a key at machine speed reaches them before they are laid out.

OptionList (the list a Select drops down) looks up the highlighted option's line to move a page, and the lines exist
only once the list has been laid out: a drop-down opened and PageDown pressed in the same instant, with a screen
switch between (one `tmux send-keys` burst: Enter, F6, PageDown), raised `KeyError` in `OptionList._move_page` and
ended the app. Textual guards the same lookup in `scroll_to_highlight`; `_move_page` does not (8.2.8). Here a page
key that comes too early does nothing, as an arrow key would.
"""

from __future__ import annotations

import contextlib
from typing import Any

from textual.widgets import OptionList

_move_page = OptionList._move_page


def _move_page_once_laid_out(self: OptionList, direction: Any) -> None:
    with contextlib.suppress(KeyError):  # not laid out yet: the next key finds the lines
        _move_page(self, direction)


OptionList._move_page = _move_page_once_laid_out  # type: ignore[method-assign]
