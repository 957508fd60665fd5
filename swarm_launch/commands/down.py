"""`swarm-launch down`: stop every agent of a swarm (gracefully), then its session."""

from __future__ import annotations

import click

from swarm_launch import reconcile, render
from swarm_launch.cli import Globals
from swarm_launch.commands import _signals
from swarm_launch.commands._common import require_known, run_async, running_swarm
from swarm_launch.plan import Action


def run(globals_: Globals, *, spec: str | None, name: str | None) -> int:
    swarm, target = running_swarm(globals_, spec, name)
    if swarm is None:
        manager = reconcile.manager_for(target)
        require_known(target, run_async(manager.observe), manager.socket_label())

    def report(action: Action, error: str | None) -> None:
        click.echo(render.action_line(action, error, width=14))

    try:
        applied = _signals.run_terminable(lambda: reconcile.down(target, swarm, report=report))
    except _signals.Terminated as exc:
        return _signals.report(exc)
    removed = len(applied.outcomes)
    if applied.elsewhere:
        server, count = applied.elsewhere
        click.echo(f"0 removed here; swarm {target.name} still runs on "
                   f"{reconcile.elsewhere_words(server, count)}, where it was "
                   f"last applied: `swarm-launch {server.flag()}down --name {target.name}` "
                   "stops it")
        return 1
    click.echo(f"{removed} removed; swarm {target.name} is down")
    if applied.kept_session:
        click.echo(f"note: session {target.session} kept: it holds windows that are not "
                   "the swarm's", err=True)
    failed = [f"{a.agent_id} ({error})" for a, error in applied.outcomes if error]
    if failed:
        click.echo(f"error: failed to stop: {'; '.join(failed)}", err=True)
    if applied.record_error:
        click.echo(f"error: {applied.record_error}", err=True)
    return 1 if failed or applied.record_error else 0
