"""The login and account screens of the full-screen client: username and password
(LoginScreen), and creating an account (RegisterScreen)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Input, Label

from .. import render
from . import text as tx

if TYPE_CHECKING:
    from .app import HubbubApp


class _Form(Screen[None]):
    """Shared layout of the login and account screens."""

    DEFAULT_CSS = """
    _Form, LoginScreen, RegisterScreen {
        align: center middle;
    }
    #form {
        width: 60;
        height: auto;
        border: round $accent;
        padding: 1 2;
    }
    #form .title { text-style: bold; margin-bottom: 1; }
    #form #error { color: $error; height: auto; margin-top: 1; }
    #form Horizontal { height: auto; }
    #form Button { margin-right: 2; }
    """

    @property
    def hubbub(self) -> HubbubApp:
        """The app, typed."""
        from .app import HubbubApp

        assert isinstance(self.app, HubbubApp)
        return self.app

    def show_error(self, message: str) -> None:
        """Show one error line (a plain string, never markup)."""
        self.query_one("#error", Label).update(Text(message))


class LoginScreen(_Form):
    """Username and password; Enter logs in. "Create account" opens `RegisterScreen`."""

    def __init__(self, server: str, message: str = "") -> None:
        super().__init__()
        self.server = server
        self.message = message

    def compose(self) -> ComposeResult:
        """The login form."""
        with Vertical(id="form"):
            yield Label(Text(f"Hubbub — log in to {tx.visible(self.server)}"), classes="title")
            yield Input(placeholder="username", id="username")
            yield Input(placeholder="password", password=True, id="password")
            yield Checkbox("Keep me logged in on this computer", value=True, id="keep")
            with Horizontal():
                yield Button("Log in", variant="primary", id="login")
                yield Button("Create account", id="register")
            yield Label(Text(self.message), id="error")

    def on_mount(self) -> None:
        """Focus the username."""
        self.query_one("#username", Input).focus()

    @on(Input.Submitted, "#username")
    def _next_field(self) -> None:
        self.query_one("#password", Input).focus()

    @on(Input.Submitted, "#password")
    @on(Button.Pressed, "#login")
    def _submit(self) -> None:
        username = self.query_one("#username", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not username:
            self.show_error("Enter your username.")
            return
        if not render.valid_username(username):
            self.show_error(render.name_disallowed(username))
            return
        self.show_error("Logging in…")
        keep = self.query_one("#keep", Checkbox).value
        # An app worker: opening the chat removes this screen (and would cancel its workers).
        self.app.run_worker(self._login(username, password, keep), group="login", exclusive=True)

    async def _login(self, username: str, password: str, keep: bool) -> None:
        error = await self.hubbub.log_in(username, password, keep=keep)
        if error and self.is_attached:
            self.show_error(error)

    @on(Button.Pressed, "#register")
    def _register(self) -> None:
        self.app.push_screen(
            RegisterScreen(self.server, self.query_one("#username", Input).value.strip())
        )


class RegisterScreen(_Form):
    """Create an account: username, password twice, optional display name."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def __init__(self, server: str, username: str = "") -> None:
        super().__init__()
        self.server = server
        self.username = username

    def compose(self) -> ComposeResult:
        """The account form."""
        with Vertical(id="form"):
            yield Label(
                Text(f"Hubbub — create an account on {tx.visible(self.server)}"), classes="title"
            )
            yield Input(value=self.username, placeholder="username", id="username")
            yield Input(placeholder="password", password=True, id="password")
            yield Input(placeholder="repeat the password", password=True, id="repeat")
            yield Input(placeholder="display name (optional)", id="display")
            yield Checkbox("Keep me logged in on this computer", value=True, id="keep")
            with Horizontal():
                yield Button("Create account", variant="primary", id="create")
                yield Button("Back", id="back")
            yield Label("", id="error")

    def on_mount(self) -> None:
        """Focus the first empty field."""
        self.query_one("#password" if self.username else "#username", Input).focus()

    @on(Input.Submitted)
    def _advance(self, event: Input.Submitted) -> None:
        if event.input.id == "display":
            self._submit()
        else:
            self.focus_next()

    @on(Button.Pressed, "#create")
    def _submit(self) -> None:
        username = self.query_one("#username", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not render.valid_username(username):
            self.show_error(render.name_disallowed(username))
            return
        if password != self.query_one("#repeat", Input).value:
            self.show_error(render.PASSWORDS_DIFFER)
            return
        display = self.query_one("#display", Input).value.strip()
        self.show_error("Creating the account…")
        keep = self.query_one("#keep", Checkbox).value
        self.app.run_worker(
            self._create(username, password, display, keep), group="login", exclusive=True
        )

    async def _create(self, username: str, password: str, display: str, keep: bool) -> None:
        error = await self.hubbub.register(username, password, display, keep=keep)
        if error and self.is_attached:
            self.show_error(error)

    @on(Button.Pressed, "#back")
    def action_back(self) -> None:
        """Back to the login screen."""
        self.app.pop_screen()
