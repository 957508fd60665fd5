"""`swarm-launch up`: make tmux match the spec; say what was done and why."""

from __future__ import annotations

import asyncio

import click

from swarm_launch import reconcile, render
from swarm_launch.cli import Globals
from swarm_launch.commands import plan as plan_command
from swarm_launch.commands._common import load
from swarm_launch.plan import Action


def run(globals_: Globals, *, spec: str, no_prune: bool, dry_run: bool, as_json: bool,
        wait: bool, timeout: float | None, watch: bool) -> int:
    if dry_run:
        return plan_command.run(globals_, spec=spec, as_json=as_json, detailed_exitcode=False,
                                no_prune=no_prune)
    swarm, target = load(globals_, spec)
    printed: list[tuple[Action, str | None]] = []

    def report(action: Action, error: str | None) -> None:
        printed.append((action, error))
        if not as_json:
            click.echo(render.action_line(action, error, width=width))

    width = max((len(i) for i in swarm.agents), default=0) + 8
    applied = asyncio.run(reconcile.up(swarm, target, prune=not no_prune, report=report))
    if as_json:
        render.echo_json(_document(swarm.name, target.session, applied))
        return 0 if applied.ok else 1
    click.echo(applied.plan.summary())
    return _verdict(applied)


def _verdict(applied: reconcile.Applied) -> int:
    failed = [f"{a.agent_id} ({error})" for a, error in applied.outcomes if error]
    if failed:
        click.echo(f"error: failed: {'; '.join(failed)}", err=True)
    if applied.unconverged:
        click.echo(f"error: not running as the spec says: {', '.join(applied.unconverged)}",
                   err=True)
    return 0 if applied.ok else 1


def _document(name: str, session: str, applied: reconcile.Applied) -> dict[str, object]:
    document = render.plan_document(name, session, applied.plan)
    errors = {a.agent_id: e for a, e in applied.outcomes}
    document["actions"] = [render.action_document(a, errors.get(a.agent_id), with_result=a.changes)
                           for a in applied.plan.actions]
    document["ok"] = applied.ok
    document["unconverged"] = applied.unconverged
    return document
