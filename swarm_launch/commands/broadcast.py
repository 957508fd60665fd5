"""`swarm-launch broadcast`: send the same text to every agent, or to --only some."""

from __future__ import annotations

import asyncio

import click

from swarm_launch.cli import Globals
from swarm_launch.commands._io import manager, text_argument
from swarm_launch.exceptions import UserError


def run(globals_: Globals, *, spec: str, text: str | None, only: str | None) -> int:
    message = text_argument(text)
    targets = None
    if only is not None:
        targets = [name.strip() for name in only.split(",") if name.strip()]
        if not targets:
            raise UserError("--only needs at least one agent id (e.g. --only a,b)")
    done = asyncio.run(manager(globals_, spec).broadcast(message, only=targets))
    if done.skipped:  # only without --only, which refuses an exited agent outright
        click.echo(f"sent to {len(done.sent)} agent{'s' if len(done.sent) > 1 else ''}; "
                   f"skipped {', '.join(done.skipped)}: exited, nothing sent", err=True)
    return 0
