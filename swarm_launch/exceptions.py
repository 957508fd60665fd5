"""Every error swarm-launch raises on purpose.

`UserError` subclasses are user-facing: the CLI prints them as one `error: ...`
line and exits 1. Anything else is a bug: exit 3 with the traceback in a log file.
"""

from __future__ import annotations

from dataclasses import dataclass


class UserError(Exception):
    """A failure the user can fix; its message says what to do next."""


class TmuxSwarmError(UserError):
    """Base of every error about tmux and the agents running in it."""


class TmuxNotFoundError(TmuxSwarmError):
    """tmux is missing or too old."""


class TmuxTimeoutError(TmuxSwarmError):
    """A tmux call did not answer within its timeout."""


class SessionNotFoundError(TmuxSwarmError):
    """The swarm's session (or the whole tmux server) is gone."""


class SessionCreationError(TmuxSwarmError):
    """tmux refused to create the session or a window; carries tmux's message."""


class AgentNotFoundError(TmuxSwarmError):
    """No agent with that id in this swarm."""


class PaneDeadError(TmuxSwarmError):
    """The agent's pane is dead: its process has exited."""


class StoreError(UserError):
    """AI_SWARM_DIR is unsafe, unwritable, or its lock is held too long."""


class LockTimeoutError(StoreError):
    """Another swarm-launch run holds this swarm's lock."""


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec file, located for `FILE:LINE:COL: $.path: message`."""

    file: str
    line: int
    column: int
    json_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.json_path}: {self.message}"


class SpecError(UserError):
    """A spec file is invalid; carries every problem found, not just the first."""

    def __init__(self, file: str, issues: list[SpecIssue]) -> None:
        self.file = file
        self.issues = sorted(issues, key=lambda i: (i.line, i.column, i.json_path))
        count = len(self.issues)
        noun = "error" if count == 1 else "errors"
        super().__init__(f"{count} {noun} in {file}; nothing was changed.")

    def report(self) -> str:
        """All issues, one per line, then the summary line."""
        return "\n".join([*map(str, self.issues), str(self)])
