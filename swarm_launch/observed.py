"""Observed state: what tmux says runs, parsed from one `list-panes -s -F` query.

Pure: the tmux module runs the query with LIST_PANES_FORMAT and hands the text
to `parse_panes`; nothing here talks to tmux.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# User options that mark a pane as ours; read back with every observation.
OPT_CLUSTER = "@swarm_cluster"
OPT_AGENT = "@swarm_agent"
OPT_HASH = "@swarm_hash"
OPT_STARTED = "@swarm_started"
# The @swarm_started value of the start whose output matched the agent's ready pattern:
# readiness outlives the log that showed it (rotation), and a restart invalidates it.
OPT_READY = "@swarm_ready"
OPT_RESTARTS = "@swarm_restarts"
OPT_NEXT_RESTART = "@swarm_next_restart"
OPT_GAVE_UP = "@swarm_gave_up"
# Set at spawn on an agent with an initial prompt, removed once `up` has sent it: a prompt
# an interrupted `up` never sent is owed by the next one.
OPT_PROMPT_DUE = "@swarm_prompt_due"
# The restart policy (supervise.OPT_POLICY): observed as present or not, and its
# reset_after_s, the 4th word of "MODE MAX_RESTARTS BACKOFF RESET_AFTER_S LOG_PATH".
OPT_POLICY = "@swarm_restart"
# Where a stop holds the policy aside while it runs (supervise.OPT_POLICY_HELD): present on
# a running pane after the stop is over, the stop was killed before it gave it back.
OPT_POLICY_HELD = "@swarm_restart_held"
_RESET_AFTER_OF_POLICY = "#{s/^[^ ]+ [^ ]+ [^ ]+ ([^ ]+).*$/\\1/:" + OPT_POLICY + "}"

_FIELDS = (
    "#{pane_id}",
    "#{window_id}",
    "#{window_index}",
    "#{session_id}",
    "#{pane_pid}",
    "#{pane_dead}",
    "#{pane_dead_status}",
    "#{pane_dead_signal}",
    "#{" + OPT_CLUSTER + "}",
    "#{" + OPT_AGENT + "}",
    "#{" + OPT_HASH + "}",
    "#{" + OPT_STARTED + "}",
    "#{" + OPT_RESTARTS + "}",
    "#{" + OPT_NEXT_RESTART + "}",
    "#{" + OPT_GAVE_UP + "}",
    "#{" + OPT_READY + "}",
    "#{?" + OPT_POLICY + ",1,}",
    _RESET_AFTER_OF_POLICY,
    "#{" + OPT_PROMPT_DUE + "}",
    "#{?" + OPT_POLICY_HELD + ",1,}",
)
# Fields are separated by a byte that no id, hash or number contains.
SEPARATOR = "\x1f"
LIST_PANES_FORMAT = SEPARATOR.join(_FIELDS)


class AgentStatus(enum.Enum):
    """What an agent is doing, as far as tmux can tell."""

    PENDING = "pending"   # planned, not yet created
    RUNNING = "running"   # its pane's process is alive
    STOPPED = "stopped"   # its process exited 0
    FAILED = "failed"     # its process exited non-zero or was killed by a signal
    UNKNOWN = "unknown"   # tmux did not say


@dataclass(frozen=True)
class PaneState:
    """One pane as tmux reports it; `agent_id` is empty for panes that are not ours."""

    pane_id: str
    window_id: str
    window_index: int
    session_id: str
    pid: int | None
    dead: bool
    exit_status: int | None
    exit_signal: int | None
    cluster: str
    agent_id: str
    config_hash: str
    started_at: float | None
    restarts: int
    next_restart_at: float | None
    gave_up: bool
    ready_since_start: bool = False  # its ready pattern was seen since its latest start
    supervised: bool = False  # it has a restart policy (its pane-died hook restarts it)
    # Its policy's reset_after_s: the supervisor counts restarts from 0 again after it.
    reset_after_s: float | None = None
    prompt_due: bool = False  # its initial prompt is still to send (OPT_PROMPT_DUE)
    policy_held: bool = False  # a stop holds its restart policy aside (OPT_POLICY_HELD)

    @property
    def status(self) -> AgentStatus:
        return agent_status(self)

    @property
    def exit_code(self) -> int | None:
        """The exit code shell-style: the status, or 128+signal for a killed process."""
        if not self.dead:
            return None
        if self.exit_signal is not None:
            return 128 + self.exit_signal
        return self.exit_status


def agent_status(pane: PaneState) -> AgentStatus:
    if not pane.dead:
        return AgentStatus.RUNNING if pane.pid else AgentStatus.UNKNOWN
    # A policy that gave up ends a crash loop: a failure, even of exits 0 under `always`.
    if pane.gave_up or pane.exit_signal is not None or (pane.exit_status or 0) != 0:
        return AgentStatus.FAILED
    if pane.exit_status == 0:
        return AgentStatus.STOPPED
    return AgentStatus.UNKNOWN


def parse_panes(text: str) -> tuple[PaneState, ...]:
    """Parse `list-panes -F LIST_PANES_FORMAT` output, one pane per line."""
    return tuple(_parse_line(line) for line in text.splitlines() if line.strip())


def owned_by(panes: Iterable[PaneState], cluster: str) -> dict[str, PaneState]:
    """The panes tagged as agents of `cluster`, by agent id.

    Should two panes claim one id (a crash between create and cleanup), the
    newest pane (highest id number) wins; `duplicates` finds the others.
    """
    owned: dict[str, PaneState] = {}
    for pane in sorted(_ours(panes, cluster), key=_pane_number):
        owned[pane.agent_id] = pane
    return owned


def duplicates(panes: Iterable[PaneState], cluster: str) -> tuple[PaneState, ...]:
    """Panes of `cluster` that lost to a newer pane with the same agent id."""
    pane_list = list(_ours(panes, cluster))
    winners: Mapping[str, PaneState] = owned_by(pane_list, cluster)
    return tuple(p for p in pane_list if winners[p.agent_id].pane_id != p.pane_id)


def _ours(panes: Iterable[PaneState], cluster: str) -> Iterable[PaneState]:
    return (p for p in panes if p.cluster == cluster and p.agent_id)


def _pane_number(pane: PaneState) -> int:
    return _int(pane.pane_id.lstrip("%")) or 0


def _parse_line(line: str) -> PaneState:
    parts = line.split(SEPARATOR)
    parts += [""] * (len(_FIELDS) - len(parts))
    (pane_id, window_id, window_index, session_id, pid, dead, dead_status, dead_signal,
     cluster, agent, config_hash, started, restarts, next_restart, gave_up,
     ready, supervised, reset_after, prompt_due, held) = parts[:len(_FIELDS)]
    is_dead = dead == "1"
    return PaneState(
        pane_id=pane_id,
        window_id=window_id,
        window_index=_int(window_index) or 0,
        session_id=session_id,
        pid=_int(pid),
        dead=is_dead,
        exit_status=_int(dead_status) if is_dead else None,
        exit_signal=_int(dead_signal) if is_dead else None,
        cluster=cluster,
        agent_id=agent,
        config_hash=config_hash,
        started_at=_float(started),
        restarts=_int(restarts) or 0,
        next_restart_at=_float(next_restart),
        gave_up=gave_up == "1",
        ready_since_start=bool(ready) and ready == started,
        supervised=supervised == "1",
        reset_after_s=_float(reset_after) if supervised == "1" else None,
        prompt_due=prompt_due == "1",
        policy_held=held == "1",
    )


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
