"""Where the interactive client's typed lines come from.

:class:`LineInput` is the interface; :class:`PromptInput` reads a terminal with
prompt_toolkit (history and :class:`ChatCompleter` for chat lines, none for the login
dialogue, hidden typing for passwords) and :class:`PlainInput` reads a stdin that is
not a terminal (tests, pipes).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import DummyHistory, InMemoryHistory
from prompt_toolkit.layout.processors import Processor, Transformation, TransformationInput

from . import render

#: The prompt of a chat line (not echoed by :class:`PlainInput`).
CHAT_PROMPT = "> "


class LineInput(Protocol):
    """Where typed lines come from. `ask` raises EOFError on Ctrl-D / end of input."""

    async def ask(self, prompt: str, *, secret: bool = False, chat: bool = False) -> str:
        """Show `prompt`, return one line (without newline); `secret` hides the typing."""
        ...


class _HideInput(Processor):
    """Shows nothing of what is typed and keeps the cursor still (password entry)."""

    def apply_transformation(self, transformation_input: TransformationInput) -> Transformation:
        return Transformation([], source_to_display=lambda i: 0, display_to_source=lambda i: 0)


class ChatCompleter(Completer):
    """Completes, at the start of a line, `!commands`, `@names` from `names()` and
    `#groups` from `groups()`."""

    def __init__(
        self,
        names: Callable[[], Iterable[str]],
        groups: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self._names = names
        self._groups = groups

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        """Yield completions for the word before the cursor if it is the line's first word."""
        before = document.text_before_cursor
        word = before.lstrip()
        if not word or any(ch.isspace() for ch in word):
            return
        if word.startswith("!"):
            for name in render.COMMANDS:
                if name.startswith(word.lower()):
                    yield Completion(name, start_position=-len(word))
        elif word[0] in "@#":
            sigil, prefix = word[0], word[1:].casefold()
            known = self._names() if sigil == "@" else self._groups()
            for name in sorted(set(known)):
                if name.casefold().startswith(prefix):
                    yield Completion(
                        f"{sigil}{name} ", start_position=-len(word), display=f"{sigil}{name}"
                    )


class PromptInput:
    """prompt_toolkit input: one session with history and completion for chat lines,
    one without history for the login dialogue (so passwords are never kept)."""

    def __init__(
        self, names: Callable[[], Iterable[str]], groups: Callable[[], Iterable[str]] = tuple
    ) -> None:
        self._chat = PromptSession[str](
            history=InMemoryHistory(),
            completer=ChatCompleter(names, groups),
            complete_while_typing=False,
        )
        self._login = PromptSession[str](history=DummyHistory())
        self._secret = PromptSession[str](history=DummyHistory(), input_processors=[_HideInput()])

    async def ask(self, prompt: str, *, secret: bool = False, chat: bool = False) -> str:
        """Read one line; raises EOFError on Ctrl-D and KeyboardInterrupt on Ctrl-C."""
        session = self._secret if secret else self._chat if chat else self._login
        return await session.prompt_async(prompt, set_exception_handler=False)


class PlainInput:
    """Line input for a stdin that is not a terminal; a daemon thread reads the lines."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            self._loop.call_soon_threadsafe(self._lines.put_nowait, line.rstrip("\r\n"))
        self._loop.call_soon_threadsafe(self._lines.put_nowait, None)

    async def ask(self, prompt: str, *, secret: bool = False, chat: bool = False) -> str:
        """Read one line; raises EOFError at the end of input."""
        if prompt.strip() and prompt != CHAT_PROMPT:
            print(prompt, end="", flush=True)
        line = await self._lines.get()
        if line is None:
            self._lines.put_nowait(None)
            raise EOFError
        return line
