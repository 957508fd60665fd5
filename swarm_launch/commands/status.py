"""`swarm-launch status`: per agent, its pane, pid, status, exit code, uptime and sync."""

from __future__ import annotations

import asyncio
import time

import click

from swarm_launch import reconcile, records, render, status_view
from swarm_launch.cli import Globals
from swarm_launch.commands._common import require_known, running_swarm
from swarm_launch.desired import DesiredAgent, expand
from swarm_launch.interpolate import UNSET
from swarm_launch.plan import RESTART_OVERDUE_S
from swarm_launch.records import SwarmTarget
from swarm_launch.tmux_manager import TmuxSwarmManager

_COLOURS = {"running": "green", "failed": "red", "stopped": "yellow", "pending": "cyan"}


def run(globals_: Globals, *, spec: str | None, name: str | None, as_json: bool) -> int:
    swarm, target = running_swarm(globals_, spec, name)
    resets: dict[str, float] = {}
    orphans: set[str] | None = None  # with a spec: every agent it does not name
    if swarm is not None:
        desired = expand(swarm)
        wanted = {i: status_view.UNKNOWN_HASH if _env_unknown(d) else d.config_hash
                  for i, d in desired.items()}
        resets = {i: d.spec.restart.reset_after_s for i, d in desired.items()
                  if d.spec.restart.mode != "never"}
    else:  # the spec last applied, as recorded: an agent the records lack is unknown
        wanted, orphans = records.recorded_agents(records.load_state(target.name))
    manager = reconcile.manager_for(target)
    panes = asyncio.run(manager.observe())
    if swarm is None:
        require_known(target, panes, manager.socket_label())
    now = time.time()
    stopping = reconcile.swarm_busy(target.name)
    rows = status_view.rows(wanted, panes, cluster=target.name, now=now, reset_after=resets,
                            orphans=orphans, stopping=stopping)
    if as_json:
        render.echo_json({"name": target.name, "session": target.session,
                          "agents": [r.document() for r in rows]})
    else:
        _table(rows, now)
        if not stopping:
            _note_disarmed(status_view.disarmed(panes, target.name))
        if not panes:
            click.echo(_not_running(manager, target, from_spec=swarm is not None))
    return 0


def _table(rows: list[status_view.AgentRow], now: float) -> None:
    header = ("AGENT", "PANE", "PID", "STATUS", "EXIT", "UPTIME", "RESTARTS", "SYNC")
    table = [header] + [
        (r.id, r.pane_id or "-", str(r.pid or "-"), r.status,
         "-" if r.exit_code is None else str(r.exit_code), status_view.duration(r.uptime_s),
         _restarts(r, now), r.sync)
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        colour = _COLOURS.get(row[3]) if index else None
        click.echo(click.style(line, fg=colour) if colour else line)
    if not rows:
        click.echo("no agents")


def _note_disarmed(agents: list[str]) -> None:
    """Why a running agent of its spec's config reads `drifted`: `plan` shows the same."""
    for agent in agents:
        click.echo(f"note: {agent}: its restart policy was left disarmed by an interrupted "
                   "stop; `up` gives it back in place (no restart)")


def _restarts(row: status_view.AgentRow, now: float) -> str:
    if row.gave_up:
        return f"{row.restarts} (gave up)"
    if row.next_restart_at is None:
        return str(row.restarts)
    late = now - row.next_restart_at
    if late > RESTART_OVERDUE_S:  # its supervisor is gone: `up` replaces the agent
        return (f"{row.restarts} (restart overdue by {status_view.duration(late)}; "
                "`up` replaces it)")
    if late > 0:
        return f"{row.restarts} (restarting)"
    return f"{row.restarts} (next in {status_view.duration(-late)})"


def _env_unknown(agent: DesiredAgent) -> bool:
    """Whether the agent's config depends on a `${VAR}` not set where status runs."""
    return UNSET in agent.workdir or any(UNSET in value for value in agent.env.values())


def _not_running(manager: TmuxSwarmManager, target: SwarmTarget, *, from_spec: bool) -> str:
    from swarm_launch.sockets import server_listening

    socket = manager.socket_label()
    missing = (f"no tmux session {target.session} on {socket}" if server_listening(socket)
               else f"no tmux server running on {socket}")
    return (f"swarm {target.name} is not running: {missing}; "
            f"{_where_instead(manager, target, from_spec=from_spec)}")


def _where_instead(manager: TmuxSwarmManager, target: SwarmTarget, *, from_spec: bool) -> str:
    """How `up` starts it, unless the swarm runs on another server (where `up` is refused).
    Known by name only, `up` needs its spec: the one last applied, if recorded."""
    name = target.name
    elsewhere = asyncio.run(reconcile.running_elsewhere(manager, name))
    if elsewhere is None:
        if from_spec and target.spec_path:
            return _up_command(target, target.spec_path)
        return _up_by_name(target)
    server, count = elsewhere
    return (f"it runs on {reconcile.elsewhere_words(server, count)}, where it was last "
            f"applied (`swarm-launch {server.flag()}status --name {name}`)")


def _up_by_name(target: SwarmTarget) -> str:
    """`up` of the spec last applied, on this server (-L/-S: the spec may name another)."""
    spec_path = records.load_state(target.name).get("spec_path")
    if not isinstance(spec_path, str) or not spec_path:
        return "`swarm-launch up SPEC` starts it from its spec"
    return _up_command(target, spec_path) + " (its spec last applied)"


def _up_command(target: SwarmTarget, spec_path: str) -> str:
    """The `up` to copy: this server's -L/-S (given, or the spec's), then the spec."""
    import shlex

    server = (f"-S {shlex.quote(target.socket_path)} " if target.socket_path
              else f"-L {shlex.quote(target.socket_name)} " if target.socket_name else "")
    return f"`swarm-launch {server}up {shlex.quote(spec_path)}` starts it"
