"""What the agent I/O commands share: the manager of a spec's swarm, the text to send."""

from __future__ import annotations

import sys
from typing import TextIO

from swarm_launch.cli import Globals
from swarm_launch.commands._common import running_swarm
from swarm_launch.exceptions import UserError
from swarm_launch.model import message_text
from swarm_launch.tmux_manager import TmuxSwarmManager


def manager(globals_: Globals, spec: str) -> TmuxSwarmManager:
    """The manager of the swarm as it runs (see `running_swarm`)."""
    from swarm_launch.reconcile import manager_for

    return manager_for(running_swarm(globals_, spec, None)[1])


def text_argument(text: str | None) -> str:
    """TEXT as given, or all of stdin when TEXT is omitted (never both, never neither);
    either way as typed (`model.message_text`: `send A "$(cat notes)"` and `send A < notes`
    send the same)."""
    if text is not None:
        return message_text(text)
    stdin: TextIO = sys.stdin
    if stdin.isatty():
        raise UserError("give the TEXT to send, or pipe it on stdin")
    # Bytes, whatever the locale: those that are not UTF-8 reach the agent as they came.
    raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    return message_text(raw.decode("utf-8", "surrogateescape"))
