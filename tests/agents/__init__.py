"""Small real programs run as agents by the tmux tests."""

from __future__ import annotations

import os

AGENTS_DIR = os.path.dirname(os.path.abspath(__file__))


def agent(name: str) -> str:
    """The path of the test program `name`.py."""
    return os.path.join(AGENTS_DIR, f"{name}.py")
