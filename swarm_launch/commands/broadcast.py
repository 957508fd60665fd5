"""`swarm-launch broadcast`: send the same text to every agent, or to --only some."""

from __future__ import annotations

import asyncio

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
    asyncio.run(manager(globals_, spec).broadcast(message, only=targets))
    return 0
