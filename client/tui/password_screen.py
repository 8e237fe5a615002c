"""The `!password` dialog of the full-screen client: the current password and the new
one twice."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from .. import render

if TYPE_CHECKING:
    pass


class PasswordScreen(ModalScreen[tuple[str, str] | None]):
    """`!password`: the current password and the new one twice; dismissed with
    (current, new), or None when cancelled."""

    DEFAULT_CSS = """
    PasswordScreen { align: center middle; }
    #box { width: 56; height: auto; border: round $accent; padding: 1 2; background: $surface; }
    #box Input { margin-bottom: 1; }
    #box #error { color: $error; }
    #box Horizontal { height: auto; }
    #box Button { margin-right: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        """The three password fields."""
        with Vertical(id="box"):
            yield Label("Change your password (logs out your other sessions)")
            yield Input(placeholder="current password", password=True, id="current")
            yield Input(placeholder="new password", password=True, id="new")
            yield Input(placeholder="repeat the new password", password=True, id="repeat")
            with Horizontal():
                yield Button("Change", variant="primary", id="change")
                yield Button("Cancel", id="cancel")
            yield Label("", id="error")

    @on(Input.Submitted)
    def _advance(self, event: Input.Submitted) -> None:
        if event.input.id == "repeat":
            self._change()
        else:
            self.focus_next()

    @on(Button.Pressed, "#change")
    def _change(self) -> None:
        new = self.query_one("#new", Input).value
        if new != self.query_one("#repeat", Input).value:
            self.query_one("#error", Label).update(render.PASSWORDS_DIFFER)
            return
        if not new:
            self.query_one("#error", Label).update("The new password is empty.")
            return
        self.dismiss((self.query_one("#current", Input).value, new))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)
