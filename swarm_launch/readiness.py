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

from swarm_launch.logfiles import LogFollower
from swarm_launch.logpipe import MARKER_PREFIX

# Lines logpipe and supervise write (start markers, restart notes) are ours, not the agent's.
_MARKER = re.compile(rf"^{re.escape(MARKER_PREFIX)}.*$\n?", re.MULTILINE)
# Without a `ready` pattern, a prompt goes once the agent printed something, or once it
# has been quiet this long (a program waiting for input may print nothing at all): at
# start-up (startup.Startup) and after a restart (supervise.resend_prompt) alike.
PROMPT_QUIET_S = 3.0
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


def follow_from_now(path: str) -> LogFollower | None:
    """A follower of `path` from its current end, made before the agent starts: the log is
    created empty if missing (the writer then appends to this very file), so whatever the
    agent prints is read from the file held open, even once rotation renamed or removed it.
    None if the log cannot be made (the writer will say why in its own way)."""
    from swarm_launch import store
    from swarm_launch.exceptions import StoreError

    try:
        store.ensure_private_dir(os.path.dirname(path))
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
    except (OSError, StoreError):
        return None
    return LogFollower(path)


async def wait_for_output(path: str, pattern: str | None, *, start: int, timeout_s: float,
                          poll_s: float = 0.05,
                          gone: Callable[[], Awaitable[bool]] | None = None,
                          follower: LogFollower | None = None) -> bool:
    """True once the log after `start` matches `pattern` (None: any output at all); False
    after `timeout_s`, or as soon as `gone()` (asked about once a second) says the agent
    will never print it (it exited for good).

    Read with a LogFollower: output that rotated into LOG.1 between two polls (a banner
    then a burst) is still read, as long as the rotated file is kept."""
    regex = re.compile(pattern, re.MULTILINE) if pattern else None

    def matches(seen: str) -> bool:
        return bool(regex.search(seen)) if regex else bool(seen.strip())

    deadline = time.monotonic() + timeout_s
    asked = time.monotonic()
    if follower is None:  # an agent already running: from its latest start
        follower = LogFollower(path, from_start=True)
        follower.seek(start)
    text = _Text()
    try:
        while True:
            if matches(text.add(follower.poll(), follower.pending)):
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            if gone is not None and now - asked >= 1.0:
                asked = now
                if await gone():  # what it printed before it went still counts
                    while follower.behind:
                        if matches(text.add(follower.poll(), follower.pending)):
                            return True
                    return matches(text.add(follower.poll(), follower.pending))
            if not follower.behind:
                await asyncio.sleep(poll_s)
    finally:
        follower.close()


class _Text:
    """The log since the start, as a person would read it: terminal noise stripped from
    whole lines (a `\r` redraw spread over two writes is one line), swarm-launch's own
    marker lines left out; the last _WINDOW_BYTES of it, then the unfinished line."""

    def __init__(self) -> None:
        self.seen = ""
        self._pending, self._unfinished = b"", ""  # the last unfinished line, cleaned

    def add(self, lines: list[bytes], pending: bytes) -> str:
        from swarm_launch.logfiles import strip_terminal_noise

        if lines:
            whole = b"\n".join(lines).decode("utf-8", errors="replace") + "\n"
            self.seen = (self.seen + _MARKER.sub("", strip_terminal_noise(whole)))[-_WINDOW_BYTES:]
        # A prompt waits without a newline: the unfinished line counts too, as shown now
        # (cleaned again only when it changed: a TUI may draw long without a newline).
        if pending != self._pending:
            self._pending = pending
            text = pending[-_WINDOW_BYTES:].decode("utf-8", errors="replace")
            self._unfinished = _MARKER.sub("", strip_terminal_noise(text))
        return self.seen + self._unfinished
