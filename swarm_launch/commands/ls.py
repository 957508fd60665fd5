"""`swarm-launch ls`: the swarms AI_SWARM_DIR knows and the ones tmux runs, with counts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import click

from swarm_launch import records, render
from swarm_launch.cli import Globals
from swarm_launch.commands._common import by_name
from swarm_launch.observed import AgentStatus, PaneState
from swarm_launch.records import SwarmTarget

Server = tuple[str | None, str | None]


def run(globals_: Globals, *, as_json: bool) -> int:
    # Each recorded swarm on the server it was recorded on; -L/-S names one more to look at.
    recorded_servers = Globals(socket_name=None, socket_path=None)
    targets = [by_name(recorded_servers, name) for name in records.known_swarms()]
    # And each swarm the Python API tracks, on its server (it writes no state.json).
    targets += [SwarmTarget(name, socket_path=socket)
                for name, socket in records.tracked_sessions()]
    named = [(t.socket_name, t.socket_path) for t in targets]
    named.append((globals_.socket_name, globals_.socket_path))
    panes = asyncio.run(_observe_all(_distinct(named)))
    swarms = _summaries(targets, panes)
    if as_json:
        render.echo_json({"swarms": swarms})
    elif not swarms:
        click.echo("no swarms")
    else:
        _table(swarms)
    return 0


def _distinct(servers: Iterable[Server]) -> list[Server]:
    """One entry per server, however named (`-L default` and none are one): a swarm is
    counted once."""
    seen: dict[str, Server] = {}
    for server in servers:
        seen.setdefault(_socket(server), server)
    return list(seen.values())


def _socket(server: Server) -> str:
    """The server's identity: its socket path, resolved as a tmux client here would."""
    import os

    return os.path.realpath(SwarmTarget("-", *server).socket())


async def _observe_all(servers: Iterable[Server]) -> dict[Server, tuple[PaneState, ...]]:
    from swarm_launch.tmux_manager import observe_server

    keys = list(servers)
    results = await asyncio.gather(*(observe_server(socket_name=n, socket_path=p)
                                     for n, p in keys))
    return dict(zip(keys, results, strict=True))


def _summaries(targets: Iterable[SwarmTarget],
               panes: dict[Server, tuple[PaneState, ...]]) -> list[dict[str, Any]]:
    # By server and name: two swarms of one name on two servers are two rows, not a sum.
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for server, server_panes in panes.items():
        for pane in server_panes:
            if not pane.cluster or not pane.agent_id:
                continue
            entry = found.setdefault((pane.cluster, _socket(server)),
                                     _entry(pane.cluster, *server))
            entry["agents"] += 1
            entry["running"] += pane.status is AgentStatus.RUNNING
    for target in targets:
        server = (target.socket_name, target.socket_path)
        found.setdefault((target.name, _socket(server)),
                         _entry(target.name, *server))["recorded"] = True
    return [found[key] for key in sorted(found)]


def _entry(name: str, socket_name: str | None, socket_path: str | None) -> dict[str, Any]:
    return {"name": name, "session": f"swarm-{name}", "socket_name": socket_name,
            "socket_path": socket_path, "agents": 0, "running": 0, "recorded": False}


def _table(swarms: list[dict[str, Any]]) -> None:
    header = ("NAME", "SESSION", "AGENTS", "RUNNING", "SERVER", "RECORDED")
    rows = [header] + [
        (s["name"], s["session"], str(s["agents"]), str(s["running"]),
         s["socket_path"] or s["socket_name"] or "default", "yes" if s["recorded"] else "no")
        for s in swarms
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
