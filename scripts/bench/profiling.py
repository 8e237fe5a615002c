"""Optional py-spy recording of a server during a phase, and a summary of the samples.

``--profile DIR`` records the max-throughput and light-load phases of the relay
and of hubbub with ``py-spy record --nonblocking --format raw`` (collapsed
stacks, one line per distinct stack with its sample count) into
``DIR/<system>-<phase>.txt`` (``baseline-max.txt``, ``hubbub-light.txt``, …), then
prints the top functions by own and by inclusive samples. py-spy is not a
project dependency: ``.venv/bin/pip install py-spy`` (needs ptrace rights; as
root it has them). Summarise a file again with
``python -m scripts.bench.profiling FILE [--top N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

PY_SPY_RATE = 250  # samples per second


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter or on PATH, else None."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@contextlib.asynccontextmanager
async def recording(pid: int, out: Path | None) -> AsyncIterator[None]:
    """Record process ``pid`` with py-spy into ``out`` (collapsed stacks) while the
    block runs; does nothing if ``out`` is None.

    ``--nonblocking`` keeps the server running between samples (its figures stay
    near an unprofiled run); time spent in C (grpc core, SQLite, protobuf) counts
    as the calling Python function's own time. ``--native`` was tried: it pauses
    the server per sample and cut its throughput ~10x, so it is not offered.

    Raises:
        RuntimeError: py-spy is not installed.
    """
    if out is None:
        yield
        return
    exe = py_spy()
    if exe is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    proc = await asyncio.create_subprocess_exec(
        exe, "record", "--pid", str(pid), "--nonblocking", "--rate", str(PY_SPY_RATE),
        "--format", "raw", "--output", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(0.5)  # py-spy attaches
    try:
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _frame_name(frame: str) -> str:
    """``function (path/file.py:line)`` → ``file.py:function`` (path and line dropped)."""
    name, _, where = frame.partition(" (")
    filename = where.split(":", 1)[0]
    parts = Path(filename).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else filename
    return f"{short}:{name.strip()}"


THREAD_KINDS = (  # (label, a frame name part that marks the stack's thread)
    ("event loop", "Runner.run"),
    ("sqlite writer thread", "_GroupCommitWriter"),
    ("executor threads (reads, argon2)", "_worker"),
    ("other threads", "Thread.run"),
)


def thread_kind(frames: list[str]) -> str:
    """Which thread a stack was sampled on (``partial stack`` if its root is missing,
    as ``--nonblocking`` sampling sometimes gives)."""
    for label, part in THREAD_KINDS:
        if any(part in frame for frame in frames):
            return label
    return "partial stack"


def summarize(path: Path, top: int = 25) -> str:
    """Top ``top`` functions by own samples and by inclusive samples, in % of all samples.

    ``path`` holds py-spy ``--format raw`` lines: ``frame;frame;…;leaf COUNT``
    (outermost frame first).
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")] or frames
        if not frames:
            continue
        total += count
        threads[thread_kind(frames)] += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if total == 0:
        return f"{path}: no samples"
    seconds = total / PY_SPY_RATE
    lines = [f"{path.name}: {total} samples (~{seconds:.1f} s of CPU at {PY_SPY_RATE} Hz)"]
    lines.append(
        "  by thread: " + ", ".join(f"{k} {100 * n / total:.1f}%" for k, n in threads.most_common())
    )
    lines.append(f"  own %   function (top {top})")
    lines += [f"  {100 * n / total:5.1f}   {name}" for name, n in own.most_common(top)]
    lines.append(f"  incl %  function (top {top})")
    lines += [f"  {100 * n / total:5.1f}   {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m scripts.bench.profiling FILE… [--top N]``: print each file's summary."""
    parser = argparse.ArgumentParser(description="summarise py-spy raw profiles")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for file in args.files:
        print(summarize(file, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
