"""What the agent I/O commands share: the manager of a spec's swarm, the text to send."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from swarm_launch.cli import Globals
from swarm_launch.commands._common import running_swarm
from swarm_launch.desired import replica_ids
from swarm_launch.exceptions import UserError
from swarm_launch.model import SwarmSpec, message_text
from swarm_launch.tmux_manager import TmuxSwarmManager


def manager(globals_: Globals, spec: str,
            agents: Sequence[str] = ()) -> TmuxSwarmManager:
    """The manager of the swarm as it runs (see `running_swarm`); `agents` named on the
    command line are checked against the spec first (`one_agent`)."""
    swarm, swarm_manager = spec_and_manager(globals_, spec)
    for name in agents:
        one_agent(swarm, name)
    return swarm_manager


def spec_and_manager(globals_: Globals,
                     spec: str) -> tuple[SwarmSpec | None, TmuxSwarmManager]:
    from swarm_launch.reconcile import manager_for

    swarm, target = running_swarm(globals_, spec, None)
    return swarm, manager_for(target)


def replicas_of(swarm: SwarmSpec | None, name: str) -> list[str] | None:
    """The agent ids of the spec entry `name` when it has replicas; None otherwise."""
    entry = swarm.agents.get(name) if swarm is not None else None
    if entry is None or not (entry.replicated or entry.replicas != 1):
        return None
    return [agent_id for agent_id, _ in replica_ids(entry)]


def one_agent(swarm: SwarmSpec | None, name: str) -> str:
    """`name` as an agent id: a spec entry with replicas names several agents, so the
    error says which ones (any other name is for the swarm as it runs to answer)."""
    ids = replicas_of(swarm, name)
    if ids is not None:
        raise UserError(f"{name!r} is a spec entry with replicas "
                        f"({', '.join(ids) or 'none'}): name one of them")
    return name


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
