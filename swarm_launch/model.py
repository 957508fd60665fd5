"""The typed, frozen form of a loaded swarm spec: what the loader produces.

Every field has its default here, so a new optional spec field is one line in
the schema, one here, and one in the loader; nothing else needs to move.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

RestartMode = Literal["never", "on-failure", "always"]
MAX_SPEC_BYTES = 1024 * 1024  # a spec file, and a prompt file it names


@dataclass(frozen=True)
class TmuxSettings:
    """Which tmux server the swarm lives on (None, None: the default server)."""

    socket_name: str | None = None
    socket_path: str | None = None


@dataclass(frozen=True)
class Backoff:
    """Exponential delay between restarts: initial_s * factor**n, capped at max_s."""

    initial_s: float = 1.0
    max_s: float = 60.0
    factor: float = 2.0


@dataclass(frozen=True)
class RestartPolicy:
    """When tmux itself respawns a dead agent, and when it gives up."""

    mode: RestartMode = "never"
    max_restarts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    reset_after_s: float = 60.0


@dataclass(frozen=True)
class Readiness:
    """An agent is ready once its output (its log) matches `pattern`."""

    pattern: str
    timeout_s: float = 60.0


@dataclass(frozen=True)
class StopSettings:
    """Graceful stop: `signal` to the process group, then KILL after timeout_s."""

    signal: str = "TERM"
    timeout_s: float = 10.0


@dataclass(frozen=True)
class SendSettings:
    """How text is submitted to this agent: the key, and the pause before it."""

    submit_key: str = "Enter"
    submit_delay_ms: int = 150


@dataclass(frozen=True)
class LogSettings:
    """Size cap of an agent's log before rotation, and how many old logs to keep."""

    max_bytes: int = 50 * 1024 * 1024
    keep: int = 3


@dataclass(frozen=True)
class AgentSpec:
    """One agent entry of the spec, interpolated, with paths made absolute."""

    id: str
    command: str | tuple[str, ...]
    workdir: str
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # interpolated secrets
    replicas: int = 1
    # True when the spec declares `replicas`: ids are then `{id}-{i}` even for 1, so
    # scaling 3 -> 1 keeps `{id}-0` running instead of replacing every replica.
    replicated: bool = False
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    ready: Readiness | None = None
    depends_on: tuple[str, ...] = ()
    prompt: str | None = None
    send: SendSettings = field(default_factory=SendSettings)
    logs: LogSettings = field(default_factory=LogSettings)
    stop: StopSettings = field(default_factory=StopSettings)


@dataclass(frozen=True)
class SwarmSpec:
    """A whole spec file: the swarm's identity, its tmux server, its agents in file order."""

    name: str
    path: str
    spec_hash: str
    workdir: str
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # interpolated secrets
    tmux: TmuxSettings = field(default_factory=TmuxSettings)
    agents: Mapping[str, AgentSpec] = field(default_factory=dict)

    @property
    def session_name(self) -> str:
        return session_name(self.name)


def session_name(swarm_name: str) -> str:
    """The tmux session a swarm lives in."""
    return f"swarm-{swarm_name}"


ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def message_text(text: str) -> str:
    """Text to send as typed: CRLF line ends as LF (a CR is a key press of its own to an
    agent: each would submit an extra, empty line), without the newline a file ends in
    (not meant as one more, empty, submission)."""
    text = text.replace("\r\n", "\n")
    return text[:-1] if text.endswith("\n") else text


# The names a shell gives a stream (`up /dev/stdin < spec`, `up <(cat spec)`): a spec read
# from one has no directory of its own, and one such name read twice is two specs.
_STREAM_NAME = re.compile(r"/dev/(stdin|fd/\d+)|/proc/(self|thread-self|\d+)(/task/\d+)?/fd/\d+")


def stream_name(path: str) -> bool:
    """Whether the absolute `path` is a stream's name rather than a file's."""
    return _STREAM_NAME.fullmatch(path) is not None
