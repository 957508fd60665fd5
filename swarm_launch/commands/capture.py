"""`swarm-launch capture`: an agent's rendered screen plus its scrollback.

Fullscreen TUIs draw on the alternate screen, which has no scrollback: there,
capture shows the visible screen only, and the agent's log is the full record.
"""

from __future__ import annotations

import asyncio

import click

from swarm_launch.cli import Globals
from swarm_launch.commands._io import manager


def run(globals_: Globals, *, spec: str, agent: str, lines: int | None, ansi: bool) -> int:
    text = asyncio.run(manager(globals_, spec, [agent]).capture_agent_output(
        agent, lines=lines, ansi=ansi))
    # color=True with --ansi: click would strip the escapes asked for when not on a tty.
    click.echo(text, nl=False, color=True if ansi else None)
    return 0
