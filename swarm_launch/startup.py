"""Starting agents in dependency order, waiting for readiness, sending initial prompts.

An agent is created only once everything it depends on is ready, whether this run
started it or it was already running. Readiness is watched once per agent with a
`ready` pattern (one task each); dependents, initial prompts and `up --wait` all
await the same tasks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence

from swarm_launch.desired import DesiredAgent, dependencies, layers
from swarm_launch.exceptions import SessionCreationError, TmuxSwarmError
from swarm_launch.logfiles import LogFollower
from swarm_launch.observed import PaneState, owned_by
from swarm_launch.plan import Action
from swarm_launch.readiness import (
    PROMPT_QUIET_S,
    follow_from_now,
    latest_start,
    log_size,
    wait_for_output,
)
from swarm_launch.tmux_manager import AgentLaunch, TmuxSwarmManager

LOOK_EVERY_S = 1.0  # how often waiting for readiness asks tmux how the agents are


class Startup:
    """One `up`'s worth of agent starts, in order, with their readiness."""

    def __init__(self, manager: TmuxSwarmManager, desired: Mapping[str, DesiredAgent], *,
                 timeout_s: float | None = None) -> None:
        """`timeout_s` (`up --wait --timeout`) bounds every wait of this run, for
        dependencies and prompts too, not only the final one."""
        self.manager = manager
        self.desired = desired
        self.timeout_s = timeout_s
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.ready: dict[str, asyncio.Task[bool]] = {}  # agents with a `ready` pattern
        self.why: dict[str, str] = {}  # why an agent's readiness task said False
        self.prompt_ready: dict[str, asyncio.Task[bool]] = {}  # started ones with a prompt
        self.starts: dict[str, int] = {}  # agents spawned (or tried), and their log's size
        self.errors: dict[str, str] = {}  # why agents tried were not started
        # Logs opened before their agents start: a banner that a burst rotates away before
        # the first look is still read (from the file held open), however small the log.
        self.followers: dict[str, LogFollower] = {}
        self._seen: tuple[float, Mapping[str, PaneState]] | None = None  # see `_pane`
        self._looking = asyncio.Lock()

    async def start(self, actions: Sequence[Action]) -> dict[str, str]:
        """Create `actions`' agents layer by layer; the errors by agent id."""
        pending = {a.agent_id: a for a in actions if a.desired is not None}
        deps = dependencies(self.desired)
        errors = self.errors
        # Dependencies already running count once ready too, not merely for running.
        self.watch_running({d for i in pending for d in deps[i]} - pending.keys())
        for layer in layers(self.desired):
            batch = [pending[i] for i in layer if i in pending]
            for action in batch:
                if blocked := await self._unready(deps[action.agent_id], errors):
                    errors[action.agent_id] = f"not started: {blocked}"
            ok = [a for a in batch if a.agent_id not in errors]
            errors.update(await self._spawn(ok))
            self._watch([a for a in ok if a.agent_id not in errors])
        return errors

    def watch_running(self, agent_ids: Iterable[str]) -> None:
        """Watch the readiness of agents this run did not start, since their latest start
        (for dependents, and for `up --wait`, which waits for every agent)."""
        for agent_id in agent_ids:
            ready = self.desired[agent_id].spec.ready if agent_id in self.desired else None
            if ready is None or agent_id in self.ready:
                continue
            path = self.manager.log_path(agent_id)
            self.ready[agent_id] = self._readiness(agent_id, ready.pattern,
                                                   latest_start(path, agent_id),
                                                   ready.timeout_s)

    async def close(self) -> None:
        """End the watches nobody awaited (an agent's readiness with no dependent, prompt
        or --wait to need it), here, while the loop runs, and until they have ended.
        Left to asyncio.run's clean-up, a cancellation that Python 3.11's wait_for
        swallowed (CPython gh-86296) left `up` waiting forever after its work was done."""
        tasks = [t for t in (*self.ready.values(), *self.prompt_ready.values()) if not t.done()]
        while tasks:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=0.1)
            tasks = [t for t in tasks if not t.done()]
        for follower in self.followers.values():
            follower.close()
        self.followers.clear()

    async def send_prompts(self) -> dict[str, str]:
        """Send each started agent its initial prompt once it is ready."""
        agents = list(self.prompt_ready)
        results = await asyncio.gather(*(self._prompt(i) for i in agents))
        return {i: error for i, error in zip(agents, results, strict=True) if error}

    async def not_ready(self) -> list[str]:
        """The agents watched that were not ready in time (their own timeout, or the
        run's): each waits no longer than both."""
        if not self.ready:
            return []
        await asyncio.wait(self.ready.values())
        return [i for i, task in self.ready.items() if not task.result()]

    async def _unready(self, deps: frozenset[str], errors: Mapping[str, str]) -> str:
        """`db not ready (exited with code 2), cache not ready (failed)`; '' if all are."""
        bad = [f"{d} not ready (failed)" for d in sorted(deps) if d in errors]
        bad += [f"{d} not ready ({self.why.get(d, 'no match')})" for d in sorted(deps)
                if d not in errors and d in self.ready and not await self.ready[d]]
        bad += [f"{d} not ready ({why})" for d in sorted(deps)
                if d not in errors and d not in self.ready and (why := await self._stopped(d))]
        return ", ".join(bad)

    async def _stopped(self, agent_id: str) -> str:
        """Why a dependency without a ready pattern, which counts as ready while it runs,
        does not run; '' if it does (or tmux did not answer: not a verdict)."""
        try:
            pane = await self._pane(agent_id)
        except TmuxSwarmError:
            return ""
        if pane is None:
            return "not running"
        return f"exited with code {pane.exit_code}" if pane.dead else ""

    def _readiness(self, agent_id: str, pattern: str | None, start: int,
                   timeout_s: float, follower: LogFollower | None = None) -> asyncio.Task[bool]:
        """Watch `agent_id`'s log for `pattern`, until its own timeout or the run's,
        or until it exited for good; `why` says which, when it was not ready."""
        why_not = f"no match within {timeout_s:g}s"
        if self.deadline is not None and self.deadline - time.monotonic() < timeout_s:
            timeout_s = max(0.0, self.deadline - time.monotonic())
            why_not = f"--timeout {self.timeout_s:g}s reached"
        path = self.manager.log_path(agent_id)

        async def gone() -> bool:
            return await self._exited_for_good(agent_id)

        async def watch() -> bool:
            if follower is None and await self._marked_ready(agent_id):
                return True  # seen before, maybe in output rotated out of its log since
            ready = await wait_for_output(path, pattern, start=start, timeout_s=timeout_s,
                                          gone=gone, follower=follower)
            if ready:
                await self.manager.mark_ready(agent_id)
            else:
                self.why.setdefault(agent_id, why_not)
            return ready

        return asyncio.ensure_future(watch())

    async def _pane(self, agent_id: str, *, fresh: bool = False) -> PaneState | None:
        """The agent's pane as tmux shows it, None if it has none. One look serves every
        watcher for a second (not a list-panes per agent per second), and none taken
        before this run's latest spawn: its agents would look gone. `fresh`: a look
        taken now."""
        async with self._looking:
            if (fresh or self._seen is None
                    or time.monotonic() - self._seen[0] >= LOOK_EVERY_S):
                panes = owned_by(await self.manager.observe(), self.manager.cluster_id)
                self._seen = (time.monotonic(), panes)
            return self._seen[1].get(agent_id)

    async def _marked_ready(self, agent_id: str) -> bool:
        """A running agent whose pane says its pattern showed since its latest start."""
        try:
            pane = await self._pane(agent_id)
        except TmuxSwarmError:
            return False
        return pane is not None and pane.ready_since_start and not pane.dead

    async def _exited_for_good(self, agent_id: str) -> bool:
        """Dead with no restart to come: its policy is `never`, `on-failure` and it exited
        0, or it gave up. (A slow tmux is not a verdict: asked again a second later.)"""
        try:
            pane = await self._pane(agent_id)
        except TmuxSwarmError:
            return False
        if pane is None:
            self.why[agent_id] = "gone"
            return True
        policy = self.desired[agent_id].spec.restart.mode if agent_id in self.desired else ""
        no_restart = policy == "never" or (policy == "on-failure" and pane.exit_code == 0)
        if pane.dead and (no_restart or pane.gave_up):
            self.why[agent_id] = f"exited with code {pane.exit_code}"
            return True
        return False

    async def _restarted(self, agent_id: str) -> bool:
        """The instance this run started died since, and its restart policy restarts it
        (or has): the watch read on into the next instance's output, which is not ours to
        prompt. A pane made by this run counts no restart until its supervisor's respawn."""
        try:
            pane = await self._pane(agent_id, fresh=True)
        except TmuxSwarmError:
            return False
        if pane is None:
            return False
        if pane.restarts > 0 or pane.next_restart_at is not None:
            return True
        return pane.dead and pane.supervised and not await self._exited_for_good(agent_id)

    async def _spawn(self, actions: Sequence[Action]) -> dict[str, str]:
        launches = [launch_for(a.desired) for a in actions if a.desired is not None]
        if not launches:
            return {}
        for launch in launches:
            path = self.manager.log_path(launch.agent_id)
            self.starts[launch.agent_id] = log_size(path)
            spec = self.desired[launch.agent_id].spec
            if (spec.ready is not None or spec.prompt) and (early := follow_from_now(path)):
                self.followers[launch.agent_id] = early
        try:
            await self.manager.spawn_agents(launches)
        except SessionCreationError as exc:
            self._seen = None
            failures: dict[str, str] | None = getattr(exc, "failures", None)
            failed = failures or {launch.agent_id: str(exc) for launch in launches}
            for agent_id in failed:
                if agent_id in self.followers:
                    self.followers.pop(agent_id).close()
            return failed
        except BaseException:  # a timeout, Ctrl-C: no log left open in a long `--watch`
            for follower in self.followers.values():
                follower.close()
            self.followers.clear()
            raise
        self._seen = None
        return {}

    def _watch(self, actions: Sequence[Action]) -> None:
        for action in actions:
            agent_id = action.agent_id
            spec, path = self.desired[agent_id].spec, self.manager.log_path(agent_id)
            follower = self.followers.pop(agent_id, None)
            if spec.ready is not None:
                self.ready[agent_id] = self._readiness(agent_id, spec.ready.pattern,
                                                       self.starts[agent_id],
                                                       spec.ready.timeout_s, follower)
                if spec.prompt:
                    self.prompt_ready[agent_id] = self.ready[agent_id]
            elif spec.prompt:
                self.prompt_ready[agent_id] = asyncio.ensure_future(wait_for_output(
                    path, None, start=self.starts[agent_id], timeout_s=PROMPT_QUIET_S,
                    follower=follower))

    async def _prompt(self, agent_id: str) -> str | None:
        ready = await self.prompt_ready[agent_id]
        if await self._restarted(agent_id):
            return None  # its supervisor prompts the instance it restarts, and only it
        if not ready and self.desired[agent_id].spec.ready is not None:
            why = f" ({self.why[agent_id]})" if agent_id in self.why else ""
            return f"initial prompt not sent: the agent did not become ready{why}"
        prompt = self.desired[agent_id].spec.prompt
        assert prompt is not None
        try:  # a quiet agent that exited meanwhile is refused here, by name
            await self.manager.send_to_agent(agent_id, prompt)
        except TmuxSwarmError as exc:
            return f"initial prompt not sent: {exc}"
        await self.manager.prompt_delivered(agent_id)
        return None

    def owe_prompts(self, kept: Iterable[Action]) -> None:
        """Agents this run keeps whose initial prompt no `up` sent (one interrupted before
        they were ready, or they were not ready in time): theirs is sent as to a new start,
        once ready since their latest start. Not to a restarted one: its supervisor
        prompts each instance it starts."""
        for action in kept:
            agent_id = action.agent_id
            if not prompt_owed(action) or agent_id in self.prompt_ready:
                continue
            spec, path = self.desired[agent_id].spec, self.manager.log_path(agent_id)
            if spec.ready is not None:
                self.watch_running([agent_id])
                self.prompt_ready[agent_id] = self.ready[agent_id]
            else:
                self.prompt_ready[agent_id] = asyncio.ensure_future(wait_for_output(
                    path, None, start=latest_start(path, agent_id), timeout_s=PROMPT_QUIET_S))


def prompt_owed(action: Action) -> bool:
    """The kept agent's initial prompt is owed (`Startup.owe_prompts` sends it): no `up`
    sent it, it runs its first instance (a restarted one is its supervisor's to prompt),
    and the spec still gives it one. `up` skips its lock-free no-op path only for these."""
    pane, desired = action.observed, action.desired
    return (pane is not None and pane.prompt_due and not pane.dead and not pane.restarts
            and desired is not None and bool(desired.spec.prompt))


def launch_for(agent: DesiredAgent) -> AgentLaunch:
    spec = agent.spec
    return AgentLaunch(agent_id=agent.agent_id, command=spec.command, env=agent.env,
                       workdir=spec.workdir, config_hash=agent.config_hash,
                       logs=spec.logs, send=spec.send, restart=spec.restart,
                       prompt=spec.prompt, ready=spec.ready)
