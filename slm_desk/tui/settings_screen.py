"""Settings: escalation, runtime and logging, written to config.toml with the user's comments kept."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Input, Label, Static, Switch

from slm_desk.data.config import set_value
from slm_desk.errors import SlmDeskError
from slm_desk.tui.base import DeskScreen
from slm_desk.tui.messages import ConfigChanged

# (section, key, label, kind)
FIELDS = [
    ("escalation", "enabled", "Escalation enabled", "bool"),
    ("escalation", "base_url", "Endpoint (OpenAI-compatible /v1)", "str"),
    ("escalation", "model", "Endpoint model name", "str"),
    ("escalation", "api_key_env", "API key env var (the key is never stored)", "str"),
    ("escalation", "local_model", "...or a local model id", "str"),
    ("escalation", "auto", "Escalate in pipe mode without --escalate", "bool"),
    ("runtime", "threads", "Threads (0 = physical cores)", "int"),
    ("runtime", "gpu_layers", "GPU layers ('auto' or a number)", "layers"),
    ("runtime", "n_ctx", "Context window (tokens)", "int"),
    ("history", "enabled", "Record runs in the history (off: REVIEW answers skip the review queue too)", "bool"),
    ("teach", "retrain_after", "Retrain a head after N labels given in Review (0 = never)", "int"),
]


class SettingsScreen(DeskScreen):
    SUB_TITLE = "Settings"
    MODE = "settings"
    BINDINGS = [Binding("ctrl+s", "save", "Save")]

    def compose(self) -> ComposeResult:
        yield from self.top()
        with VerticalScroll(id="settings"):
            yield Static(
                "ctrl+s writes config.toml (`slm-desk paths --get config_file`); your comments are kept.",
                classes="hint",
            )
            for section, key, label, kind in FIELDS:
                with Horizontal(classes="setting"):
                    yield Label(label, classes="setting-label")
                    widget_id = f"{section}-{key}"
                    yield Switch(id=widget_id) if kind == "bool" else Input(id=widget_id)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.load_values()

    def on_screen_resume(self) -> None:
        self.load_values()

    def load_values(self) -> None:
        config = self.desk.config
        for section, key, _, kind in FIELDS:
            value = getattr(getattr(config, section), key)
            widget = self.query_one(f"#{section}-{key}")
            if kind == "bool":
                widget.value = bool(value)  # type: ignore[attr-defined]
            else:
                widget.value = "" if value is None else str(value)  # type: ignore[attr-defined]

    def action_save(self) -> None:
        desk = self.desk
        changed = []
        # switches that enable a section go last, after the values they depend on
        for section, key, label, kind in sorted(FIELDS, key=lambda f: f[1] == "enabled"):
            raw = self.query_one(f"#{section}-{key}").value  # type: ignore[attr-defined]
            current = getattr(getattr(desk.config, section), key)
            try:
                value = self._parse(raw, kind)
            except ValueError:
                kind_name = {"int": "a whole number", "float": "a number"}.get(kind, f"a {kind}")
                self.notify(f"{label}: {raw!r} is not {kind_name}", severity="error")
                return
            if value != current and not (value is None and current is None):
                if value is None:
                    continue  # clearing a key is done in the file itself
                try:
                    set_value(section, key, value)
                except SlmDeskError as exc:
                    self.notify(exc.message, title="not saved", severity="error")
                    return
                changed.append(f"{section}.{key}")
        desk.reload_config()
        self.app.post_message(ConfigChanged())
        self.notify("saved: " + (", ".join(changed) or "nothing changed"))

    @staticmethod
    def _parse(raw: object, kind: str) -> object:
        if kind == "bool":
            return bool(raw)
        text = str(raw).strip()
        if not text:
            return None
        if kind == "int":
            return int(text)
        if kind == "layers":
            return text if text == "auto" else int(text)
        return text
