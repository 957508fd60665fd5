"""`swarm-launch attach`: show the swarm's session, at an agent's window.

Inside tmux on the same server the client is switched; anywhere else tmux
attaches (nested inside another server, with $TMUX unset for it).
"""

from __future__ import annotations

import asyncio
import os

from swarm_launch.cli import Globals
from swarm_launch.commands._io import manager
from swarm_launch.exceptions import UserError


def run(globals_: Globals, *, spec: str, agent: str | None) -> int:
    inside = os.environ.get("TMUX")
    argv = asyncio.run(manager(globals_, spec, [agent] if agent else []).attach_argv(
        agent, inside=inside))
    if "switch-client" not in argv and not os.isatty(0):
        # Else tmux's own "open terminal failed: not a terminal", naming no way out.
        raise UserError(f"attach needs a terminal, and its input is not one; to read an "
                        f"agent from a script: swarm-launch capture {spec} AGENT, or "
                        f"swarm-launch logs {spec} AGENT")
    env = dict(os.environ)
    if "switch-client" not in argv:
        env.pop("TMUX", None)  # tmux refuses to nest unless told we mean it
    os.execvpe(argv[0], argv, env)  # noqa: S606 - argv from the tmux layer, no shell
    return 0  # not reached: tmux replaced this process
