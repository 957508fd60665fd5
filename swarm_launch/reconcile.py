"""Observe, plan, apply, record: the shell around the pure planner.

`up` plans without the lock first, so a no-op `up` costs one tmux query and
no mutation; only when something must change does it take the swarm's lock,
re-observe (another run may have done the work) and apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from swarm_launch import records, store
from swarm_launch.desired import DesiredAgent, expand
from swarm_launch.exceptions import StoreError, TmuxSwarmError, UserError
from swarm_launch.model import RestartPolicy, StopSettings, SwarmSpec
from swarm_launch.observed import PaneState, owned_by
from swarm_launch.plan import Action, Kind, Plan, plan, replacements
from swarm_launch.records import SwarmTarget
from swarm_launch.sockets import same_socket, server_listening
from swarm_launch.startup import Startup, prompt_owed
from swarm_launch.tmux_manager import TmuxSwarmManager
from swarm_launch.tmux_script import prompt_option

Report = Callable[[Action, str | None], None]


@dataclass
class Applied:
    """What an `up` or `down` did: each changing action with its error (None: done)."""

    plan: Plan
    outcomes: list[tuple[Action, str | None]] = field(default_factory=list)
    unconverged: list[str] = field(default_factory=list)
    prompt_errors: dict[str, str] = field(default_factory=dict)
    not_ready: list[str] = field(default_factory=list)
    why_not_ready: dict[str, str] = field(default_factory=dict)  # agent -> the reason
    exited: dict[str, int | None] = field(default_factory=dict)  # agent -> exit code
    # `down` on a server without the swarm: where it still runs, and its agent count there
    elsewhere: tuple[records.RecordedServer, int] | None = None
    kept_session: bool = False  # `down` left the session: it holds windows of others
    # The records could not be written (a full disk): the run fails, once it is told
    record_error: str | None = None

    @property
    def failed(self) -> int:
        return sum(1 for _, error in self.outcomes if error)

    def counts(self) -> dict[Kind, int]:
        """Actions done per kind: a failed one counts only in `failed`."""
        failed = {a.agent_id for a, error in self.outcomes if error}
        return {kind: sum(1 for a in self.plan.of_kind(kind) if a.agent_id not in failed)
                for kind in Kind}

    def summary(self) -> str:
        """`3 created, 1 replaced, 1 removed, 4 unchanged`, then `, 1 failed` if any did."""
        failed = self.failed
        done = self.counts()
        words = (("created", Kind.CREATE), ("replaced", Kind.REPLACE),
                 ("removed", Kind.REMOVE), ("unchanged", Kind.KEEP))
        text = ", ".join(f"{done[kind]} {word}" for word, kind in words)
        text += f", {done[Kind.UPDATE]} updated" if done[Kind.UPDATE] else ""
        return text + (f", {failed} failed" if failed else "")

    @property
    def ok(self) -> bool:
        return (all(error is None for _, error in self.outcomes) and not self.unconverged
                and not self.prompt_errors and not self.not_ready and not self.exited)


def manager_for(target: SwarmTarget) -> TmuxSwarmManager:
    return TmuxSwarmManager(target.name, base_dir=target.base_dir,
                            socket_name=target.socket_name, socket_path=target.socket_path)


async def compute_plan(manager: TmuxSwarmManager, spec: SwarmSpec, *, prune: bool,
                       desired: dict[str, DesiredAgent] | None = None,
                       replace: Collection[str] = (),
                       state: Mapping[str, Any] | None = None,
                       stopping: bool = False) -> Plan:
    """Observe once, then plan; `desired` saves re-expanding a spec already expanded.

    `replace`: agent ids or spec entries to replace even when in sync (`--replace`);
    a name not in the spec is a UserError raised before tmux is asked anything.
    `state`: the swarm's state.json, when the caller has already read it.
    `stopping`: another run holds the swarm's lock (`swarm_busy`), see `plan.plan`."""
    desired = expand(spec) if desired is None else desired
    forced = replacement_ids(spec, desired, replace)
    panes = await manager.observe()
    state = records.load_state(spec.name) if state is None else state
    return plan(desired, panes, cluster=spec.name, prune=prune,
                recorded=records.recorded_field_hashes(state), now=time.time(), replace=forced,
                stopping=stopping, prompts=records.recorded_prompt_digests(state))


def swarm_busy(name: str) -> bool:
    """Another run (`up`, `down`) holds the swarm's lock at this moment."""
    return store.held_by_another(os.path.join(store.data_dir(), name))


def down_under_way(name: str) -> bool:
    """A `down`, or a run we cannot tell, holds the swarm's lock: it may remove what a
    look without the lock found. Not an `up`: it leaves the swarm running, and a no-op
    `up` must not wait for one (`up --wait` waits for readiness under the lock)."""
    holder = store.lock_holder(os.path.join(store.data_dir(), name))
    return holder is not None and holder != "up"


async def running_elsewhere(manager: TmuxSwarmManager, name: str,
                            state: Mapping[str, Any] | None = None,
                            ) -> tuple[records.RecordedServer, int] | None:
    """The server the swarm was last applied on and its agent count there, when that is
    another server than `manager`'s and runs some; a query only when the servers differ.
    A recorded server we cannot talk to (gone, another tmux) holds nothing we could stop."""
    recorded = records.recorded_server(name, state)
    if recorded is None or same_socket(recorded.socket, manager.socket_label()):
        return None
    if not server_listening(recorded.socket):  # killed, or gone with its machine
        return None
    socket_name, socket_path = recorded.options()
    there = TmuxSwarmManager(name, socket_name=socket_name, socket_path=socket_path)
    try:
        count = len(owned_by(await there.observe(), name))
    except TmuxSwarmError:
        return None
    return (recorded, count) if count else None


async def refuse_if_running_elsewhere(manager: TmuxSwarmManager, name: str,
                                      state: Mapping[str, Any] | None = None) -> None:
    """A swarm is one thing, recorded under its name: `up` on another server while it still
    runs where it was last applied would start a second one and leave the first invisible
    to `ls`, `status` and `down`."""
    elsewhere = await running_elsewhere(manager, name, state)
    if elsewhere:
        raise UserError(f"swarm {name!r} still runs on {elsewhere_words(*elsewhere)}, "
                        "where it was last applied; stop it there first "
                        f"(`swarm-launch {elsewhere[0].flag()}down --name {name}`), "
                        "or give this swarm another name")


def elsewhere_words(server: records.RecordedServer, count: int) -> str:
    return f"{server.words()} ({count} agent{'s' if count > 1 else ''})"


def replacement_ids(spec: SwarmSpec, desired: Mapping[str, DesiredAgent],
                    names: Collection[str]) -> frozenset[str]:
    """The agent ids `--replace NAME...` means; a UserError names any not in the spec."""
    try:
        return replacements(desired, names, entries=spec.agents.keys())
    except ValueError as exc:
        raise UserError(f"--replace: {exc}") from None


async def up(spec: SwarmSpec, target: SwarmTarget, *, prune: bool, wait: bool = False,
             wait_timeout_s: float | None = None, report: Report | None = None,
             replace: Collection[str] = ()) -> Applied:
    """Make tmux run exactly what `spec` says; record the run.

    Initial prompts are sent once their agents are ready; with `wait`, also wait
    for every started agent with a readiness pattern.
    """
    started = time.time()
    manager = manager_for(target)
    desired = expand(spec)
    first = await compute_plan(manager, spec, prune=prune, desired=desired, replace=replace)
    # Not while a `down` holds the lock: it would remove what we found.
    if first.in_sync and not wait and not _prompts_owed(first) \
            and _records_current(spec, first) and not down_under_way(spec.name):
        _record(target, spec, "up", started, applied=Applied(first), desired=desired,
                panes=None)
        _retrack(manager, {a.agent_id: a.observed.pane_id for a in first.actions
                           if a.observed is not None})
        return Applied(first)
    async with store.locked_async(records.swarm_dir(spec.name), what=f"swarm {spec.name!r}",
                                  command="up"):
        state = records.load_state(spec.name)  # read once under the lock, used thrice
        await refuse_if_running_elsewhere(manager, spec.name, state)
        current = await compute_plan(manager, spec, prune=prune, desired=desired,
                                     replace=replace, state=state)
        applied = Applied(current)
        startup = Startup(manager, desired, timeout_s=wait_timeout_s if wait else None)
        try:
            await _apply(manager, current, applied, report, startup,
                         stops=records.recorded_stops(state))
            startup.owe_prompts(current.left_running)
            applied.prompt_errors = await startup.send_prompts()
            if wait:  # every agent, not only those this run started
                startup.watch_running(a.agent_id for a in current.left_running)
                applied.not_ready = await startup.not_ready()
                applied.why_not_ready = {a: startup.why[a] for a in applied.not_ready
                                         if a in startup.why}
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Ctrl-C: the history still says this run happened, and what it got done.
            done = {a.agent_id for a, _ in applied.outcomes}
            for action in current.actions:
                if action.agent_id in startup.starts and action.agent_id not in done:
                    _done(applied, report, action, startup.errors.get(action.agent_id))
            records.append_run(target, command="up", spec_hash=spec.spec_hash,
                               started=started, outcomes=applied.outcomes, ok=False,
                               interrupted=True)
            await _record_state_interrupted(manager, target, spec, desired, applied)
            raise
        finally:
            await startup.close()
        after = await _watch_recrashes(manager, current, await manager.observe())
        applied.unconverged = _unconverged(desired, after, spec.name)
        applied.exited = _exited(desired, after, spec.name)
        _record(target, spec, "up", started, applied=applied, desired=desired,
                panes=after)
        _retrack(manager, {a: p.pane_id for a, p in owned_by(after, spec.name).items()})
    return applied


def _retrack(manager: TmuxSwarmManager, agents: Mapping[str, str]) -> None:
    """The session's entry in swarm_sessions.json, restored if a killed run left it out
    (only spawns and `start` write it)."""
    if agents:
        manager.retrack(agents)


async def down(target: SwarmTarget, spec: SwarmSpec | None = None, *,
               report: Report | None = None) -> Applied:
    """Stop every agent of the swarm, then its session if nothing foreign is left."""
    started = time.time()
    manager = manager_for(target)
    desired = expand(spec) if spec else {}
    async with store.locked_async(records.swarm_dir(target.name),
                                  what=f"swarm {target.name!r}", command="down"):
        panes = await manager.observe()
        ours = sorted(owned_by(panes, target.name).values(), key=lambda p: p.agent_id)
        removal = Plan(tuple(Action(Kind.REMOVE, p.agent_id, "down", observed=p,
                                    desired=desired.get(p.agent_id)) for p in ours))
        applied = Applied(removal)
        try:
            await _apply(manager, removal, applied, report,
                         stops=records.recorded_stops(records.load_state(target.name)))
            await manager.shutdown(graceful=True)
            applied.kept_session = bool(await manager.observe())
        except TmuxSwarmError:  # some pane is left: recorded as a failed run, then raised
            records.append_run(target, command="down", spec_hash=None, started=started,
                               outcomes=applied.outcomes, ok=False)
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):  # as an interrupted `up` is
            records.append_run(target, command="down", spec_hash=None, started=started,
                               outcomes=applied.outcomes, ok=False, interrupted=True)
            raise
        if not panes and not records.is_recorded(target.name):
            return applied  # nothing ran, nothing to record: no phantom swarm in `ls`
        applied.elsewhere = None if ours else await running_elsewhere(manager, target.name)
        with _recording(applied):
            if applied.elsewhere is None:  # else the records keep naming where it runs
                records.write_state(target, spec_hash=None, desired={}, panes=())
            records.append_run(target, command="down", spec_hash=None, started=started,
                               outcomes=applied.outcomes, ok=applied.ok)
    return applied


async def _apply(manager: TmuxSwarmManager, current: Plan, applied: Applied,
                 report: Report | None, startup: Startup | None = None, *,
                 stops: Mapping[str, StopSettings]) -> None:
    """Kill what leaves (batched per stop setting), then start what arrives, in order.

    A replacement that could not start (its workdir is missing) leaves the running agent
    alone rather than leave nothing running."""
    unstartable = {a.agent_id: f"not replaced: {error}; the running agent was kept"
                   for a in current.actions if a.kind is Kind.REPLACE
                   and (error := _cannot_start(a))}
    leaving = [a for a in current.actions if a.kind in (Kind.REMOVE, Kind.REPLACE)
               and a.agent_id not in unstartable]
    kill_errors: dict[str, str] = dict(unstartable)
    def stop_key(action: Action) -> tuple[str, float]:
        stop = _stop_of(action, stops)
        return (stop.signal, stop.timeout_s)

    for stop, group in groupby(sorted(leaving, key=stop_key), key=stop_key):
        actions = list(group)
        error = await _kill(manager, actions, StopSettings(*stop))
        kill_errors.update({a.agent_id: error for a in actions if error})
    for action in (a for a in leaving if a.kind is Kind.REMOVE):
        _done(applied, report, action, kill_errors.get(action.agent_id))
    arriving = [a for a in current.actions if a.kind in (Kind.CREATE, Kind.REPLACE)]
    # An old pane we failed to stop is left alone: a new one beside it would duplicate it.
    spawn_errors: dict[str, str] = {}
    if startup is not None:
        spawn_errors = await startup.start([a for a in arriving if a.agent_id not in kill_errors])
    for action in arriving:
        error = kill_errors.get(action.agent_id) or spawn_errors.get(action.agent_id)
        _done(applied, report, action, error)
    await _update_in_place(manager, current, applied, report)


async def _update_in_place(manager: TmuxSwarmManager, current: Plan, applied: Applied,
                           report: Report | None) -> None:
    """The agents updated without a restart: a restart policy a killed stop left held
    aside is given back, and the prompt their restarts send is the spec's again."""
    updating = current.of_kind(Kind.UPDATE)
    disarmed = [a.observed for a in updating if a.observed is not None
                and a.observed.policy_held and not a.observed.supervised]
    prompts = {a.observed.pane_id: prompt_option(a.desired.spec.prompt, a.desired.spec.ready)
               for a in updating if a.observed is not None and a.desired is not None}
    error = None
    try:
        await manager.rearm(disarmed)
        await manager.set_restart_prompts(prompts)
    except TmuxSwarmError as exc:
        error = str(exc)
    for action in updating:
        _done(applied, report, action, error)


def _cannot_start(action: Action) -> str | None:
    workdir = action.desired.spec.workdir if action.desired else None
    if workdir and not os.path.isdir(workdir):
        return f"workdir {workdir} is not a directory"
    return None


async def _kill(manager: TmuxSwarmManager, actions: Sequence[Action],
                stop: StopSettings) -> str | None:
    pane_ids = [a.observed.pane_id for a in actions if a.observed is not None]
    if not pane_ids:
        return None
    try:
        await manager.kill_panes(pane_ids, graceful=True, signal=stop.signal,
                                 timeout_s=stop.timeout_s)
    except TmuxSwarmError as exc:
        return str(exc)
    return None


def _done(applied: Applied, report: Report | None, action: Action, error: str | None) -> None:
    applied.outcomes.append((action, error))
    if report is not None:
        report(action, error)


def _stop_of(action: Action, recorded: Mapping[str, StopSettings]) -> StopSettings:
    """How to stop a running agent: as recorded when it was started (an agent pruned from
    the spec, or stopped by `down --name`, has no spec entry left), else as the spec says."""
    if action.agent_id in recorded:
        return recorded[action.agent_id]
    return action.desired.spec.stop if action.desired else StopSettings()


def _unconverged(desired: dict[str, DesiredAgent], panes: Iterable[PaneState],
                 cluster: str) -> list[str]:
    observed = owned_by(panes, cluster)
    return [agent_id for agent_id, agent in desired.items()
            if (pane := observed.get(agent_id)) is None
            or pane.config_hash != agent.config_hash]


RECRASH_WATCH_S = 0.5  # how long an agent replaced because it had died is watched


async def _watch_recrashes(manager: TmuxSwarmManager, current: Plan,
                           panes: Sequence[PaneState]) -> Sequence[PaneState]:
    """Look again, for up to RECRASH_WATCH_S, while an agent this run started in place of
    a dead one (no restart policy) still runs: a mistyped command dies again within
    milliseconds, and `up` must say so rather than report it replaced and exit 0. Agents
    started for the first time are looked at once: waiting for them would tax every `up`."""
    watched = {a.agent_id for a in current.of_kind(Kind.REPLACE)
               if a.observed is not None and a.observed.dead and a.desired is not None
               and a.desired.spec.restart.mode == "never"}
    deadline = time.monotonic() + RECRASH_WATCH_S
    while watched and time.monotonic() < deadline:
        running = owned_by(panes, manager.cluster_id)
        if not any(agent in running and not running[agent].dead for agent in watched):
            break
        await asyncio.sleep(0.05)
        panes = await manager.observe()
    return panes


def _exited(desired: dict[str, DesiredAgent], panes: Iterable[PaneState],
            cluster: str) -> dict[str, int | None]:
    """Agents already dead once `up` is done (a mistyped command exits at once), with no
    restart to bring them back: no policy, or one that gave up (or, `on-failure`, has
    nothing to restart after an exit 0). The next `up` would replace them, so the swarm
    does not match the spec. Agents whose policy will restart them are left to it."""
    observed, now = owned_by(panes, cluster), time.time()
    return {agent_id: pane.exit_code for agent_id, agent in desired.items()
            if (pane := observed.get(agent_id)) is not None and pane.dead
            and _no_restart_to_come(agent.spec.restart, pane, now)}


def _no_restart_to_come(policy: RestartPolicy, pane: PaneState, now: float) -> bool:
    if policy.mode == "never" or pane.gave_up:
        return True
    if pane.next_restart_at is not None:
        return False
    if policy.mode == "on-failure" and pane.exit_code == 0:
        return True
    # Its supervisor, started as tmux reaped the pane, may not have decided yet: decide as
    # it will (`supervise.restarts_so_far`), rather than wait for it.
    stable = now - (pane.started_at or now) >= policy.reset_after_s
    return (0 if stable else pane.restarts) >= policy.max_restarts


def _records_current(spec: SwarmSpec, current: Plan) -> bool:
    """state.json names this spec (its hash and file) and exactly the panes tmux shows (a
    run killed after applying leaves an older state.json of the same spec behind). (The
    prompts their restarts send, which a prompt_file's text changes unseen by the spec's
    hash, are the planner's: a stale one is an update.)"""
    state = records.load_state(spec.name)
    if not state or state.get("spec_hash") != spec.spec_hash \
            or state.get("spec_path") != spec.path:
        return False
    recorded = {agent: entry.get("pane_id") if isinstance(entry, dict) else None
                for agent, entry in state["agents"].items()}
    return recorded == {a.agent_id: a.observed.pane_id for a in current.actions
                        if a.observed is not None}


def _prompts_owed(current: Plan) -> bool:
    """Some kept agent's initial prompt was never sent (`Startup.owe_prompts`)."""
    return any(prompt_owed(a) for a in current.left_running)


INTERRUPTED_OBSERVE_S = 2.0  # how long an interrupted `up` may look at tmux to record it


async def _record_state_interrupted(manager: TmuxSwarmManager, target: SwarmTarget,
                                    spec: SwarmSpec, desired: dict[str, DesiredAgent],
                                    applied: Applied) -> None:
    """An interrupted `up` records what runs, as tmux says now: the agents it replaced
    read `drifted` to `status --name` otherwise, and a new swarm had no state.json at all.
    Briefly: Ctrl-C must end the run, not wait on a tmux that does not answer."""
    try:  # wait_for, on 3.10 too: a cancellation it could lose has already come
        panes = await asyncio.wait_for(manager.observe(), INTERRUPTED_OBSERVE_S)
    except (asyncio.TimeoutError, TmuxSwarmError):
        return
    ours = owned_by(panes, spec.name)
    if ours or records.is_recorded(spec.name):
        _write_state(target, spec, desired, applied, ours)


def _record(target: SwarmTarget, spec: SwarmSpec, command: str, started: float, *,
            applied: Applied, desired: dict[str, DesiredAgent],
            panes: Iterable[PaneState] | None) -> None:
    with _recording(applied):
        if panes is not None:
            _write_state(target, spec, desired, applied, owned_by(panes, spec.name))
        records.append_run(target, command=command, spec_hash=spec.spec_hash,
                           started=started, outcomes=applied.outcomes, ok=applied.ok)


@contextlib.contextmanager
def _recording(applied: Applied) -> Iterator[None]:
    """Records that cannot be written fail the run, after what it did to the swarm is
    told (tmux holds the truth: the next `up` writes them again)."""
    try:
        yield
    except StoreError as exc:
        applied.record_error = str(exc)


def _write_state(target: SwarmTarget, spec: SwarmSpec, desired: dict[str, DesiredAgent],
                 applied: Applied, ours: Mapping[str, PaneState]) -> None:
    """state.json as the panes are: the spec's data only for the agents whose panes took
    it, and the spec's hash only once every change of the plan was made."""
    done = {(a.kind, a.agent_id) for a, error in applied.outcomes if error is None}
    complete = all((a.kind, a.agent_id) in done for a in applied.plan.changes)
    records.write_state(target, spec_hash=spec.spec_hash if complete else None,
                        desired=desired, panes=ours.values(),
                        applied=_settled(applied, ours))


def _settled(applied: Applied, ours: Mapping[str, PaneState]) -> set[str]:
    """The agents whose pane runs what the spec says: kept (nothing was due), updated in
    place, or a pane of the spec's config this run made (one it planned on is older)."""
    updated = {a.agent_id for a, error in applied.outcomes
               if a.kind is Kind.UPDATE and error is None}
    settled = set()
    for action in applied.plan.actions:
        pane, want = ours.get(action.agent_id), action.desired
        made = (action.kind in (Kind.CREATE, Kind.REPLACE) and pane is not None
                and want is not None and pane.config_hash == want.config_hash
                and (action.observed is None or action.observed.pane_id != pane.pane_id))
        if action.kind is Kind.KEEP or action.agent_id in updated or made:
            settled.add(action.agent_id)
    return settled
