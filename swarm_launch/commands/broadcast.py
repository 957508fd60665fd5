"""`swarm-launch broadcast`: send the same text to every agent, or to --only some."""

from __future__ import annotations

import asyncio

import click

from swarm_launch.cli import Globals
from swarm_launch.commands._io import replicas_of, spec_and_manager, text_argument
from swarm_launch.exceptions import UserError


def run(globals_: Globals, *, spec: str, text: str | None, only: str | None) -> int:
    message = text_argument(text)
    swarm, swarm_manager = spec_and_manager(globals_, spec)
    targets = None
    if only is not None:
        names = [name.strip() for name in only.split(",") if name.strip()]
        if not names:
            raise UserError("--only needs at least one agent id (e.g. --only a,b)")
        # A spec entry with replicas stands for all of them, as in `logs` and `depends_on`.
        targets = list(dict.fromkeys(agent for name in names
                                     for agent in (replicas_of(swarm, name) or [name])))
    done = asyncio.run(swarm_manager.broadcast(message, only=targets))
    if done.skipped:  # only without --only, which refuses an exited agent outright
        click.echo(f"sent to {len(done.sent)} agent{'s' if len(done.sent) > 1 else ''}; "
                   f"skipped {', '.join(done.skipped)}: exited, nothing sent", err=True)
    return 0
