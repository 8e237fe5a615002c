"""End-to-end: the README's shell examples, run in order as a new user pastes them.

Convention (keep it when adding examples to README.md):

- A fenced block whose info string is ``sh``, ``bash`` or ``shell`` is RUN. Blocks with
  another language (``json``, ``console``) or none (transcripts) are never run.
- ``sh no-test`` (the word ``no-test`` anywhere after the language) marks a shell block
  that cannot run here: ``make run``/``make test``, the interactive ``hubbub``, a second
  server, anything needing root or another machine. Keep these few; say in the README
  why the block is special.
- The blocks run in README order as ONE bash script (``set -euo pipefail``), so a
  variable set in one block (``$DAVE``) is there in the next. Any non-zero exit, or any
  output on stderr, fails the test, naming the block and its README line.

The setting is the README's own: a fresh ``hubbub-server --database ./data/hubbub.db``
(as ``make run`` starts it) and the script both run in an empty temporary directory
(the clone's stand-in, so files the examples write land there). What differs, and how:

- the port: every ``127.0.0.1:50051`` in a block becomes the test server's free port,
  and ``HUBBUB_SERVER`` is set to it (the CLI's default is ``127.0.0.1:50051``);
- PATH starts with this checkout's ``.venv/bin`` and ``node_modules/.bin`` (the README
  puts them on PATH the same way; ``npm ci`` is run first if buf is missing);
- ``XDG_CONFIG_HOME`` and ``TMPDIR`` point into the temporary directory, so the saved
  login and ``mktemp`` files stay out of the user's home.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..harness.server_process import VENV_BIN, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN_LANGUAGES = {"sh", "bash", "shell"}
SKIP_MARKER = "no-test"
README_ADDRESS = "127.0.0.1:50051"
FENCE = re.compile(r"^(`{3,})(.*)$")
BLOCK_MARK = "@@readme-block"


@dataclass(frozen=True)
class Block:
    """One fenced code block: its info string, the 1-based line of its first text line,
    and its text."""

    info: str
    line: int
    text: str

    @property
    def runs(self) -> bool:
        """True for a shell block without the ``no-test`` marker."""
        words = self.info.split()
        return bool(words) and words[0] in RUN_LANGUAGES and SKIP_MARKER not in words[1:]


def readme_blocks(markdown: str) -> list[Block]:
    """Every fenced block of ``markdown`` in order (fences of 3+ backticks)."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, info = opening.group(1), opening.group(2).strip()
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].startswith(fence):
            body.append(lines[index])
            index += 1
        blocks.append(Block(info, index - len(body) + 1, "\n".join(body)))
        index += 1
    return blocks


def script_for(blocks: list[Block], port: int) -> str:
    """One bash script of the runnable blocks, each announced by a marker line on stdout."""
    parts = ["set -euo pipefail"]
    for number, block in enumerate(blocks):
        parts.append(f"echo '{BLOCK_MARK} {number}'")
        parts.append(block.text.replace(README_ADDRESS, f"127.0.0.1:{port}"))
    parts.append(f"echo '{BLOCK_MARK} end'")
    return "\n".join(parts) + "\n"


def _ensure_buf() -> None:
    """``node_modules/.bin/buf`` of this checkout, installed with ``npm ci`` if missing."""
    if (ROOT / "node_modules" / ".bin" / "buf").exists():
        return
    done = subprocess.run(
        ["make", "-s", "node_modules/.bin/buf"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, f"npm ci failed (make system-deps installs npm):\n{done.stderr}"


def test_readme_marker_convention() -> None:
    """The block parser runs `sh`/`bash`/`shell` blocks only, and never `sh no-test` ones."""
    text = "```sh\necho a\n```\n```sh no-test\nmake run\n```\n```\nWelcome\n```\n```json\n{}\n```\n"
    blocks = readme_blocks(text)
    assert [(b.info, b.line, b.runs) for b in blocks] == [
        ("sh", 2, True),
        ("sh no-test", 5, False),
        ("", 8, False),
        ("json", 11, False),
    ]


def test_readme_shell_examples_run_in_order(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Every runnable shell block of README.md, pasted in order against a fresh server,
    exits 0 and writes nothing to stderr."""
    blocks = [b for b in readme_blocks(README.read_text(encoding="utf-8")) if b.runs]
    assert len(blocks) >= 10, "the README lost its runnable examples (or the marker changed)"
    _ensure_buf()
    workdir = tmp_path / "clone"
    (workdir / "tmp").mkdir(parents=True)
    (workdir / "xdg-config").mkdir()
    server = server_factory(database=workdir / "data" / "hubbub.db")
    script = tmp_path / "readme.sh"
    script.write_text(script_for(blocks, server.port), encoding="utf-8")
    env = {
        **os.environ,
        "PATH": os.pathsep.join(
            [str(VENV_BIN), str(ROOT / "node_modules" / ".bin"), os.environ.get("PATH", "")]
        ),
        "HUBBUB_SERVER": f"127.0.0.1:{server.port}",
        "XDG_CONFIG_HOME": str(workdir / "xdg-config"),
        "TMPDIR": str(workdir / "tmp"),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        ["bash", str(script)],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # background jobs of the examples are ended with it
    )
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        stderr += "\n(killed: still running after 300 s)"
    finally:
        with contextlib.suppress(ProcessLookupError):  # the examples' background jobs
            os.killpg(proc.pid, signal.SIGKILL)
    marks = re.findall(rf"^{BLOCK_MARK} (\S+)$", stdout, re.MULTILINE)
    last = marks[-1] if marks else "0"
    if last == "end":
        where = "after the last block"
    else:
        block = blocks[int(last)]
        where = f"in the block at README.md line {block.line}:\n{block.text}"
    report = f"{where}\n--- stdout (end) ---\n{stdout[-3000:]}\n--- stderr ---\n{stderr}"
    assert proc.returncode == 0, f"exit status {proc.returncode} {report}"
    assert stderr == "", f"unexpected stderr {report}"
    assert last == "end", report
