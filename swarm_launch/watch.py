"""`up --watch`: re-reconcile whenever the spec file changes; never tear anything down on exit.

A stat poll of one file (inode, size, mtime) catches in-place writes, editors'
atomic rename-saves and `git pull` alike, with no dependency; a change is
applied once the file has been still for a debounce interval.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

POLL_S = 0.2
DEBOUNCE_S = 0.3
GONE_S = 1.0  # missing this long: deleted or moved away, not an editor's rename-save

Signature = tuple[int, int, int] | None


def signature(path: str) -> Signature:
    """What changes when the file does (None while it is missing, mid-save)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def watch(path: str, on_change: Callable[[], None], *,
          should_stop: Callable[[], bool] = lambda: False, seen: Signature = None,
          on_gone: Callable[[], None] = lambda: None) -> None:
    """Call `on_change` after each settled change of `path`, until interrupted, and
    `on_gone` once each time the file has been missing for GONE_S.

    `seen`: the file as the last change handled found it (taken before that apply read
    it: a save during the apply is a change to handle); by default, as it is now."""
    seen = seen or signature(path)
    missing_since: float | None = None  # None: the file is there
    told = False
    while not should_stop():
        time.sleep(POLL_S)
        current = signature(path)
        if current is None:
            missing_since = missing_since or time.monotonic()
            if not told and time.monotonic() - missing_since >= GONE_S:
                told = True
                on_gone()
            continue
        missing_since, told = None, False
        if current == seen:
            continue
        settled = _settle(path, current)
        if settled is not None and settled != seen:
            seen = settled
            on_change()


def _settle(path: str, current: Signature) -> Signature:
    """Wait until the file stops changing (an editor may write it in several steps)."""
    while True:
        time.sleep(DEBOUNCE_S)
        latest = signature(path)
        if latest == current:
            return latest
        current = latest
