"""Readiness: an agent is ready once its log, since its start, matches a pattern.

The log (fed by tmux `pipe-pane`) holds every byte the agent printed, so a
banner that scrolled off screen still counts; terminal noise is stripped first.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable

from swarm_launch.logpipe import MARKER_PREFIX

# Lines logpipe and supervise write (start markers, restart notes) are ours, not the agent's.
_MARKER = re.compile(rf"^{re.escape(MARKER_PREFIX)}.*$\n?", re.MULTILINE)
# Enough to hold a TUI's start-up screens; older text is dropped from the match window.
_WINDOW_BYTES = 256 * 1024


def log_size(path: str) -> int:
    """Where an agent's next start begins in its log (0 when there is no log yet)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def latest_start(path: str, agent_id: str, *, max_scan: int = 8 * 1024 * 1024) -> int:
    """Where the agent's latest start begins in its log: its last start marker, searched
    backwards through at most `max_scan` bytes. 0 when none is there (the log rotated
    since: the whole current file counts)."""
    marker = f"{MARKER_PREFIX}agent {agent_id} started ".encode()
    try:
        with open(path, "rb") as handle:
            end = os.fstat(handle.fileno()).st_size
            begin = max(0, end - max_scan)
            handle.seek(begin)
            data = handle.read(end - begin)
    except OSError:
        return 0
    at = data.rfind(b"\n" + marker)
    if at >= 0:
        return begin + at + 1
    return begin if data.startswith(marker) else 0


async def wait_for_output(path: str, pattern: str | None, *, start: int, timeout_s: float,
                          poll_s: float = 0.05,
                          gone: Callable[[], Awaitable[bool]] | None = None) -> bool:
    """True once the log after `start` matches `pattern` (None: any output at all); False
    after `timeout_s`, or as soon as `gone()` (asked about once a second) says the agent
    will never print it (it exited for good)."""
    regex = re.compile(pattern, re.MULTILINE) if pattern else None
    deadline = time.monotonic() + timeout_s
    asked = time.monotonic()
    offset, text = start, _Text()
    while True:
        chunk, offset = _read_from(path, offset)
        if chunk:
            seen = text.add(chunk)
            if regex.search(seen) if regex else seen.strip():
                return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if gone is not None and now - asked >= 1.0:
            asked = now
            if await gone():
                return bool(regex.search(text.add("", final=True)) if regex else False)
        await asyncio.sleep(poll_s)


class _Text:
    """The log since the start, as a person would read it: terminal noise stripped from
    whole lines only (a `\r` that ends one chunk and the text that overwrites it in the
    next are one line), swarm-launch's own marker lines left out; the last
    _WINDOW_BYTES of it."""

    def __init__(self) -> None:
        self.seen, self.partial = "", ""

    def add(self, chunk: str, *, final: bool = False) -> str:
        from swarm_launch.logfiles import strip_terminal_noise

        whole, _, partial = (self.partial + chunk).rpartition("\n")
        self.partial = partial[-_WINDOW_BYTES:]  # a TUI may draw for long without a newline
        if final:
            whole, self.partial = whole + "\n" + self.partial if whole else self.partial, ""
        if whole:
            clean = _MARKER.sub("", strip_terminal_noise(whole + "\n"))
            self.seen = (self.seen + clean)[-_WINDOW_BYTES:]
        # The unfinished line counts too (a prompt waits without a newline), as shown now.
        return self.seen + _MARKER.sub("", strip_terminal_noise(self.partial))


def _read_from(path: str, offset: int) -> tuple[str, int]:
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size < offset:
                offset = 0  # rotated under us: the new file is all new output
            handle.seek(offset)
            data = handle.read(_WINDOW_BYTES)
    except FileNotFoundError:
        return "", offset
    return data.decode("utf-8", errors="replace"), offset + len(data)
