"""`swarm-launch plan`: what `up` would do, with reasons; changes nothing."""

from __future__ import annotations

import click

from swarm_launch import reconcile, records, render
from swarm_launch.cli import Globals
from swarm_launch.commands._common import load, run_async
from swarm_launch.model import SwarmSpec
from swarm_launch.plan import Plan

EXIT_CHANGES_PENDING = 2


def run(globals_: Globals, *, spec: str, as_json: bool, detailed_exitcode: bool,
        no_prune: bool, replace: tuple[str, ...] = ()) -> int:
    swarm, target = load(globals_, spec)
    manager = reconcile.manager_for(target)
    note_another_file(swarm)

    async def planned() -> Plan:
        await reconcile.refuse_if_running_elsewhere(manager, swarm.name)  # as `up` would
        return await reconcile.compute_plan(manager, swarm, prune=not no_prune,
                                            replace=replace,
                                            stopping=reconcile.swarm_busy(swarm.name))

    result = run_async(planned)
    note_foreign_session(result, target.session)
    if as_json:
        render.echo_json(render.plan_document(swarm.name, target.session, result))
    else:
        show(result, f"swarm {swarm.name} (session {target.session})")
    if detailed_exitcode and not result.in_sync:
        return EXIT_CHANGES_PENDING
    return 0


def show(result: Plan, title: str) -> None:
    width = render.id_width(result)
    click.echo(f"Plan for {title}:")
    for action in result.actions:
        click.echo(render.action_line(action, width=width))
    click.echo(result.summary(pending=True))


def note_another_file(swarm: SwarmSpec) -> None:
    """Another spec file with the same `name:` applied last: this one replaces its swarm
    (its agents not here are removed), which the plan's lines alone do not say."""
    other = records.applied_from_another_file(swarm.name, swarm.path)
    if other:
        click.echo(f"note: swarm {swarm.name!r} was last applied from {other}; applying "
                   f"{swarm.path} replaces it", err=True)


def note_foreign_session(result: Plan, session: str) -> None:
    """A session of our name that swarm-launch did not make: its settings are the user's
    (we set ours before each batch) and `down` will leave it for its other windows."""
    if result.foreign_session:
        click.echo(f"note: session {session} exists and was not made by swarm-launch: the "
                   "agents are added to it, and `down` leaves it for its other windows",
                   err=True)
