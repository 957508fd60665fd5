"""swarm-launch: a declarative launcher for swarms of AI agents in tmux.

The Python API is imported lazily, so the CLI starts without loading libtmux.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swarm_launch.exceptions import (
        AgentNotFoundError,
        PaneDeadError,
        SessionCreationError,
        SessionNotFoundError,
        SpecError,
        TmuxSwarmError,
    )
    from swarm_launch.observed import AgentStatus
    from swarm_launch.tmux_manager import AgentPane, TmuxSwarmManager

_EXPORTS = {
    "TmuxSwarmManager": "swarm_launch.tmux_manager",
    "AgentPane": "swarm_launch.tmux_manager",
    "AgentStatus": "swarm_launch.observed",
    "TmuxSwarmError": "swarm_launch.exceptions",
    "SessionNotFoundError": "swarm_launch.exceptions",
    "AgentNotFoundError": "swarm_launch.exceptions",
    "PaneDeadError": "swarm_launch.exceptions",
    "SessionCreationError": "swarm_launch.exceptions",
    "SpecError": "swarm_launch.exceptions",
}

__all__ = [
    "AgentNotFoundError",
    "AgentPane",
    "AgentStatus",
    "PaneDeadError",
    "SessionCreationError",
    "SessionNotFoundError",
    "SpecError",
    "TmuxSwarmError",
    "TmuxSwarmManager",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'swarm_launch' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
