"""Desired state: a loaded spec expanded into the agents that should run (pure).

Each agent carries a config hash over a canonical, versioned projection of what
needs a respawn when it changes: what the pane is started with (command, workdir,
env, restart policy, and the send and log settings it keeps as options and writer
arguments). What can change without disturbing a running agent (replica count,
order in the file, readiness, ordering, prompt, stop settings) is left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from swarm_launch.model import AgentSpec, LogSettings, SendSettings, SwarmSpec

# Bump when the projection below changes meaning: every agent is then replaced once.
HASH_VERSION = 1


@dataclass(frozen=True)
class DesiredAgent:
    """One agent that should run: a spec entry, or one replica of it."""

    agent_id: str
    spec: AgentSpec
    replica: int | None
    env: Mapping[str, str] = field(repr=False)  # interpolated secrets
    config_hash: str
    field_hashes: Mapping[str, str]

    @property
    def command(self) -> str | tuple[str, ...]:
        return self.spec.command

    @property
    def workdir(self) -> str:
        return self.spec.workdir

    @property
    def restart_prompt_digest(self) -> str:
        """What the prompt after a restart depends on (its text, the readiness it waits
        for), hashed; "" when no restart will prompt. Not in the config hash (a change
        needs no respawn), but the pane keeps a copy for its supervisor, which `up`
        rewrites when this changes."""
        spec = self.spec
        if spec.restart.mode == "never" or not spec.prompt:
            return ""
        ready = [spec.ready.pattern, spec.ready.timeout_s] if spec.ready else None
        return _digest([spec.prompt, ready])


def expand(spec: SwarmSpec) -> dict[str, DesiredAgent]:
    """Every agent of `spec`, replicas expanded, in file order."""
    agents: dict[str, DesiredAgent] = {}
    for agent in spec.agents.values():
        for agent_id, replica in replica_ids(agent):
            agents[agent_id] = _desired(spec.name, agent, agent_id, replica)
    return agents


def replica_ids(agent: AgentSpec) -> list[tuple[str, int | None]]:
    """`(id, None)` for a plain agent; `(id-i, i)` for each replica of a replicated one."""
    if not agent.replicated and agent.replicas == 1:
        return [(agent.id, None)]
    return [(f"{agent.id}-{i}", i) for i in range(agent.replicas)]


def _desired(swarm: str, agent: AgentSpec, agent_id: str, replica: int | None) -> DesiredAgent:
    env = {**agent.env, "SWARM_AGENT_ID": agent_id, "SWARM_NAME": swarm}
    if replica is not None:
        env["SWARM_REPLICA"] = str(replica)
    fields = field_hashes(agent, env)
    return DesiredAgent(
        agent_id=agent_id,
        spec=agent,
        replica=replica,
        env=env,
        config_hash=_digest({"v": HASH_VERSION, **fields})[:16],
        field_hashes=fields,
    )


def field_hashes(agent: AgentSpec, env: Mapping[str, str]) -> dict[str, str]:
    """A hash per respawn-relevant field, so a plan can say *what* changed.

    Hashes only: env values may be secrets and must never reach a record.
    """
    restart = agent.restart
    fields = {
        "command": _digest(list(agent.command) if isinstance(agent.command, tuple)
                           else agent.command),
        "workdir": _digest(agent.workdir),
        "env": _digest(sorted(env.items())),
        "restart": _digest([restart.mode, restart.max_restarts, restart.reset_after_s,
                            restart.backoff.initial_s, restart.backoff.max_s,
                            restart.backoff.factor]),
    }
    # Only when not the defaults, so agents started before these counted keep their hash.
    if agent.send != SendSettings():
        fields["send"] = _digest([agent.send.submit_key, agent.send.submit_delay_ms])
    if agent.logs != LogSettings():
        fields["logs"] = _digest([agent.logs.max_bytes, agent.logs.keep])
    return fields


def _digest(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogateescape: an exported value may hold bytes that are not UTF-8 (os.environ
    # keeps them as lone surrogates); they are hashed as the bytes the agent gets.
    return hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()


def layers(desired: Mapping[str, DesiredAgent]) -> list[list[str]]:
    """Agent ids in start order: each layer depends only on earlier layers.

    `depends_on` names spec ids; a replicated dependency means all its replicas.
    Cycles were refused when the spec was loaded; any left are put last, not lost.
    """
    remaining = dict(dependencies(desired))
    result: list[list[str]] = []
    while remaining:
        layer = [a for a, deps in remaining.items() if not deps & remaining.keys()]
        if not layer:
            layer = list(remaining)
        result.append(layer)
        for agent_id in layer:
            del remaining[agent_id]
    return result


def dependencies(desired: Mapping[str, DesiredAgent]) -> dict[str, frozenset[str]]:
    """Each agent's dependencies, as expanded agent ids."""
    by_spec: dict[str, list[str]] = {}
    for agent_id, agent in desired.items():
        by_spec.setdefault(agent.spec.id, []).append(agent_id)
    return {agent_id: frozenset(i for dep in agent.spec.depends_on for i in by_spec.get(dep, ()))
            for agent_id, agent in desired.items()}
