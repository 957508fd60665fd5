"""The reconciler's brain: (desired, observed) -> ordered actions with reasons (pure).

Removals come first (they free names and resources), then replacements, then
creations in file order; agents in sync are kept, and said so; agents whose pane needs
a change in place (no restart) are updated.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from swarm_launch.desired import DesiredAgent
from swarm_launch.observed import PaneState, duplicates, owned_by

# A restart is done within a few seconds of its time (supervise's tmux calls time out
# after 5 s); one this late will not come: its supervisor is gone.
RESTART_OVERDUE_S = 10.0


class Kind(enum.Enum):
    CREATE = "create"
    REPLACE = "replace"
    REMOVE = "remove"
    KEEP = "keep"
    UPDATE = "update"  # kept running; its pane's options are changed in place


# A held policy (`tmux_script.disarm_script`, `supervise.OPT_POLICY_HELD`) is a stop under
# way, or one that was itself stopped (SIGKILL, a crash) before it gave the policy back.
DISARMED_REASON = ("restart policy was left disarmed by an interrupted stop; "
                   "re-armed in place (no restart)")
PROMPT_REASON = "prompt changed (applies at its next restart; no restart now)"


@dataclass(frozen=True)
class Action:
    """One step of a plan: what happens to which agent, and why."""

    kind: Kind
    agent_id: str
    reason: str
    desired: DesiredAgent | None = None
    observed: PaneState | None = None

    @property
    def changes(self) -> bool:
        return self.kind is not Kind.KEEP


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    # The session exists, and nothing in it is ours (no placeholder, no agent): someone
    # else made it under our session's name, and `up` adds the agents to it.
    foreign_session: bool = False

    @property
    def changes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.changes)

    @property
    def in_sync(self) -> bool:
        return not self.changes

    def of_kind(self, kind: Kind) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind is kind)

    @property
    def left_running(self) -> tuple[Action, ...]:
        """The agents this plan neither starts nor stops: kept, or updated in place."""
        return tuple(a for a in self.actions if a.kind in (Kind.KEEP, Kind.UPDATE))

    def summary(self, *, pending: bool = False) -> str:
        """`3 created, 1 replaced, 1 removed, 4 unchanged` (or `3 to create, ...`)."""
        words = _PENDING_WORDS if pending else _DONE_WORDS
        text = ", ".join(f"{len(self.of_kind(kind))} {word}" for kind, word in words)
        updates = len(self.of_kind(Kind.UPDATE))
        return text + (f", {updates} {'to update' if pending else 'updated'}" if updates else "")


_DONE_WORDS = ((Kind.CREATE, "created"), (Kind.REPLACE, "replaced"),
               (Kind.REMOVE, "removed"), (Kind.KEEP, "unchanged"))
_PENDING_WORDS = ((Kind.CREATE, "to create"), (Kind.REPLACE, "to replace"),
                  (Kind.REMOVE, "to remove"), (Kind.KEEP, "unchanged"))


def plan(
    desired: Mapping[str, DesiredAgent],
    panes: Iterable[PaneState],
    *,
    cluster: str,
    prune: bool = True,
    recorded: Mapping[str, Mapping[str, str]] | None = None,
    now: float | None = None,
    replace: Collection[str] = (),
    stopping: bool = False,
    prompts: Mapping[str, str] | None = None,
) -> Plan:
    """What `up` must do so that tmux runs exactly `desired`.

    `panes` may include foreign panes: only those tagged with `cluster` count.
    `recorded` (per-agent field hashes from the last applied state) only
    sharpens the reasons; the decision rests on tmux's tags alone.
    `now` (epoch seconds) lets a pending restart that is long overdue (its supervisor
    died or timed out) count as no restart: the dead agent is replaced.
    `replace` (agent ids, from `replacements`) are replaced even when in sync.
    `stopping`: another run holds the swarm's lock, so a restart policy held aside may be
    its stop under way, not a stop that was interrupted: such an agent is kept, untouched.
    `prompts` (per agent, the restart prompt digest its pane was last given, as recorded):
    a kept agent with a restart policy whose pane holds another prompt for its restarts
    than the spec's now is updated (`up` rewrites it there); None: not checked.
    """
    pane_list = list(panes)
    observed = owned_by(pane_list, cluster)
    removals = [Action(Kind.REMOVE, p.agent_id, "duplicate pane of this agent", observed=p)
                for p in duplicates(pane_list, cluster)]
    removals += [_undesired(observed[a], prune) for a in sorted(observed.keys() - desired.keys())]
    others = [_desired_action(d, observed.get(i), (recorded or {}).get(i), now, stopping)
              for i, d in desired.items()]
    if prompts is not None:
        others = [_prompt_update(a, prompts.get(a.agent_id)) for a in others]
    others = [_forced(a) if a.agent_id in replace else a for a in others]
    replaces = [a for a in others if a.kind is Kind.REPLACE]
    rest = [a for a in others if a.kind is not Kind.REPLACE]
    foreign = bool(pane_list) and not any(p.cluster == cluster for p in pane_list)
    return Plan((*removals, *replaces, *rest), foreign_session=foreign)


def _prompt_update(action: Action, recorded: str | None) -> Action:
    """A kept agent whose restarts would send another prompt than the spec's (README:
    `prompt`, `prompt_file` text and `ready` reach the next restart, no restart now)."""
    pane, agent = action.observed, action.desired
    if action.kind is not Kind.KEEP or pane is None or agent is None or not pane.supervised:
        return action
    if recorded == agent.restart_prompt_digest:
        return action
    reason = PROMPT_REASON if recorded is not None else (
        "prompt for its restarts not recorded; written again (no restart now)")
    return Action(Kind.UPDATE, action.agent_id, reason, desired=agent, observed=pane)


def _forced(action: Action) -> Action:
    """An agent the user asked to replace: replaced if running or dead, created if missing."""
    if action.kind not in (Kind.KEEP, Kind.UPDATE):
        return action
    return Action(Kind.REPLACE, action.agent_id, "replace requested (--replace)",
                  desired=action.desired, observed=action.observed)


def replacements(desired: Mapping[str, DesiredAgent], names: Iterable[str], *,
                 entries: Collection[str] = ()) -> frozenset[str]:
    """The agent ids that `--replace NAME` means: an agent id, or a spec entry (`entries`)
    with all its replicas (none for `replicas: 0`). Raises ValueError naming what is not
    in the spec."""
    chosen: set[str] = set()
    unknown: list[str] = []
    for name in names:
        ids = [i for i, a in desired.items() if name in (i, a.spec.id)]
        chosen.update(ids)
        if not ids and name not in entries:
            unknown.append(name)
    if unknown:
        raise ValueError(f"not in the spec: {', '.join(unknown)} "
                         f"(its agents: {', '.join(desired) or 'none'})")
    return frozenset(chosen)


def _undesired(pane: PaneState, prune: bool) -> Action:
    if prune:
        return Action(Kind.REMOVE, pane.agent_id, "not in the spec", observed=pane)
    return Action(Kind.KEEP, pane.agent_id, "not in the spec; kept (--no-prune)", observed=pane)


def _desired_action(
    agent: DesiredAgent, pane: PaneState | None, recorded: Mapping[str, str] | None,
    now: float | None, stopping: bool = False,
) -> Action:
    def act(kind: Kind, reason: str) -> Action:
        return Action(kind, agent.agent_id, reason, desired=agent, observed=pane)

    if pane is None:
        return act(Kind.CREATE, "missing")
    if pane.config_hash != agent.config_hash:
        return act(Kind.REPLACE, _what_changed(agent, recorded))
    if not pane.dead and agent.spec.restart.mode != "never" and not pane.supervised:
        if not pane.policy_held:  # nothing to give back: start it again with its policy
            return act(Kind.REPLACE, "its restart policy is missing from its pane")
        if stopping:
            return act(Kind.KEEP, "being stopped by another run")
        return act(Kind.UPDATE, DISARMED_REASON)
    pending = pane.next_restart_at is not None and not pane.gave_up
    if pane.dead and pending and not _overdue(pane, now):
        return act(Kind.KEEP, "restart pending (restart policy)")
    if pane.dead:
        overdue = "; its pending restart never came" if pending else ""
        return act(Kind.REPLACE, f"dead ({_exit_text(pane)}){overdue}")
    return act(Kind.KEEP, "in sync")


def _overdue(pane: PaneState, now: float | None) -> bool:
    return (now is not None and pane.next_restart_at is not None
            and now - pane.next_restart_at > RESTART_OVERDUE_S)


def _what_changed(agent: DesiredAgent, recorded: Mapping[str, str] | None) -> str:
    if not recorded:
        return "spec changed"
    changed = [name for name, digest in agent.field_hashes.items()
               if recorded.get(name) != digest]
    return f"spec changed: {', '.join(changed)}" if changed else "spec changed"


def _exit_text(pane: PaneState) -> str:
    if pane.exit_signal is not None:
        return f"killed by signal {pane.exit_signal}"
    return f"exit {pane.exit_status}" if pane.exit_status is not None else "exit status unknown"
