"""`swarm-launch send`: paste text into one agent literally, then submit it."""

from __future__ import annotations

import asyncio

from swarm_launch.cli import Globals
from swarm_launch.commands._io import manager, text_argument


def run(globals_: Globals, *, spec: str, agent: str, text: str | None) -> int:
    message = text_argument(text)
    asyncio.run(manager(globals_, spec, [agent]).send_to_agent(agent, message))
    return 0
