"""Status rows: each agent's pane, process, health and sync with the spec (pure)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from swarm_launch.observed import AgentStatus, PaneState, duplicates, owned_by


@dataclass(frozen=True)
class AgentRow:
    id: str
    pane_id: str | None
    pid: int | None
    status: str
    exit_code: int | None
    uptime_s: float | None
    restarts: int
    next_restart_at: float | None
    gave_up: bool
    sync: str

    def document(self) -> dict[str, Any]:
        return asdict(self)


def rows(wanted: Mapping[str, str], panes: Iterable[PaneState], *, cluster: str,
         now: float, reset_after: Mapping[str, float] | None = None,
         orphans: Collection[str] | None = None, stopping: bool = False) -> list[AgentRow]:
    """One row per wanted agent (id -> config hash), in order, then the others: orphans
    (`orphans`: only those, the others `unknown`; None: all of them, as with a spec).
    After an agent's row, its duplicates: older panes tagged with its id, which `up`
    removes (sync `duplicate`).

    An agent running its restart policy's reset_after_s (the pane's policy, else
    `reset_after`: agent -> seconds) since its latest start shows 0 restarts, the count
    its next crash will start from.

    `stopping`: another run holds the swarm's lock, so a policy held aside may be its stop
    under way (`plan.plan`'s `stopping`), not one left disarmed."""
    pane_list = list(panes)
    observed, resets = owned_by(pane_list, cluster), reset_after or {}
    result = [_row(agent_id, observed.get(agent_id), now, resets.get(agent_id),
                   _sync(observed.get(agent_id), config_hash, stopping))
              for agent_id, config_hash in wanted.items()]
    result += [_row(p.agent_id, p, now, None,
                    "orphan" if orphans is None or a in orphans else "unknown")
               for a, p in sorted(observed.items()) if a not in wanted]
    return _with_duplicates(result, duplicates(pane_list, cluster), now)


def _with_duplicates(result: list[AgentRow], extra: Iterable[PaneState],
                     now: float) -> list[AgentRow]:
    """`result` with a row for each duplicate pane after its agent's row."""
    by_agent: dict[str, list[AgentRow]] = {}
    for pane in extra:
        by_agent.setdefault(pane.agent_id, []).append(_row(pane.agent_id, pane, now, None,
                                                           "duplicate"))
    return [row for main in result for row in (main, *by_agent.get(main.id, ()))]


def _row(agent_id: str, pane: PaneState | None, now: float, reset_after_s: float | None,
         sync: str) -> AgentRow:
    if pane is None:
        return AgentRow(agent_id, None, None, AgentStatus.PENDING.value, None, None, 0, None,
                        False, sync)
    alive = not pane.dead and pane.started_at is not None
    if pane.reset_after_s is not None:  # the policy it runs with, which its supervisor uses
        reset_after_s = pane.reset_after_s
    return AgentRow(
        id=agent_id,
        pane_id=pane.pane_id,
        pid=pane.pid,
        status=pane.status.value,
        exit_code=pane.exit_code,
        uptime_s=round(now - pane.started_at, 1) if alive and pane.started_at else None,
        restarts=0 if alive and reset_after_s is not None and pane.started_at is not None
        and now - pane.started_at >= reset_after_s else pane.restarts,
        next_restart_at=pane.next_restart_at,
        gave_up=pane.gave_up,
        sync=sync,
    )


# The desired hash when it cannot be known: the spec's `${VAR}`s are not all set here.
UNKNOWN_HASH = "?"


def _sync(pane: PaneState | None, config_hash: str, stopping: bool) -> str:
    if pane is None:
        return "missing"
    if config_hash == UNKNOWN_HASH:
        return "unknown"
    if pane.config_hash != config_hash or (left_disarmed(pane) and not stopping):
        return "drifted"  # `up` replaces it, or (disarmed) gives its policy back in place
    return "in-sync"


def left_disarmed(pane: PaneState) -> bool:
    """A running agent whose restart policy a stop holds aside: a stop killed before it gave
    it back (as `plan` sees it: `~ update`, DISARMED_REASON), or one under way."""
    return pane.policy_held and not pane.supervised and not pane.dead


def disarmed(panes: Iterable[PaneState], cluster: str) -> list[str]:
    """The agents `left_disarmed`, by id."""
    return sorted(a for a, pane in owned_by(panes, cluster).items() if left_disarmed(pane))


def duration(seconds: float | None) -> str:
    """`42s`, `5m03s`, `2h07m`, `3d04h`: short and sortable by eye."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
