"""What several commands share: finding the swarm a command is about."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import click

from swarm_launch import records, store
from swarm_launch.cli import Globals
from swarm_launch.exceptions import StoreError, UserError
from swarm_launch.model import ID_PATTERN, SwarmSpec
from swarm_launch.observed import PaneState
from swarm_launch.records import SwarmTarget

T = TypeVar("T")

# Under AI_SWARM_DIR: the spec files that passed the schema (see `spec.load_spec`).
# Not a swarm: `records.known_swarms` lists only directories named as swarms, holding a
# state.json.
VALID_SPECS_DIR = ".valid-specs"


def _spec_cache() -> str | None:
    """Where specs seen valid are remembered; None when that cannot be had (a file in
    its place, a directory that is not ours alone): a cache that fails costs time, never
    the command. AI_SWARM_DIR itself must be sound (`data_dir`)."""
    cache = os.path.join(store.data_dir(), VALID_SPECS_DIR)
    try:
        return store.ensure_private_dir(cache)
    except StoreError:
        return None


def load(globals_: Globals, spec_path: str, *,
         need_env: bool = True) -> tuple[SwarmSpec, SwarmTarget]:
    """Load and validate a spec; its tmux server is the spec's unless -L/-S say otherwise.

    Without `need_env` (commands about the running swarm), an unset `${VAR}` is no error:
    its value reads as `interpolate.UNSET`."""
    from swarm_launch.interpolate import Unchecked
    from swarm_launch.spec import load_spec

    spec = load_spec(spec_path, None if need_env else Unchecked(os.environ),
                     valid_cache=_spec_cache())
    socket_name, socket_path = spec.tmux.socket_name, spec.tmux.socket_path
    if globals_.socket_name or globals_.socket_path:
        socket_name, socket_path = globals_.socket_name, globals_.socket_path
    target = SwarmTarget(name=spec.name, socket_name=socket_name, socket_path=socket_path,
                         spec_path=spec.path, base_dir=spec.workdir)
    return spec, target


def by_name(globals_: Globals, name: str) -> SwarmTarget:
    """A swarm known only by name: its server is the one its records name, or -L/-S."""
    if not re.match(ID_PATTERN, name):
        raise UserError(f"{name!r} is not a swarm name (expected {ID_PATTERN})")
    if not records.is_recorded(name):  # its server: -L/-S, else where the Python API ran it
        tracked = None if globals_.socket_name or globals_.socket_path \
            else records.tracked_socket(name)
        return SwarmTarget(name=name, socket_name=globals_.socket_name,
                           socket_path=globals_.socket_path or tracked)
    recorded = records.recorded_server(name)
    socket_name, socket_path = recorded.options() if recorded else (None, None)
    if globals_.socket_name or globals_.socket_path:
        socket_name, socket_path = globals_.socket_name, globals_.socket_path
    return SwarmTarget(name=name, socket_name=socket_name, socket_path=socket_path)


def spec_or_name(globals_: Globals, spec_path: str | None,
                 name: str | None) -> tuple[SwarmSpec | None, SwarmTarget]:
    if bool(spec_path) == bool(name):  # a usage error (exit 2), as click's own
        raise click.UsageError("give a spec file or --name NAME (one of them)",
                               ctx=click.get_current_context(silent=True))
    if spec_path:
        return load(globals_, spec_path, need_env=False)
    assert name is not None
    return None, by_name(globals_, name)


def running_swarm(globals_: Globals, spec_path: str | None,
                  name: str | None) -> tuple[SwarmSpec | None, SwarmTarget]:
    """The swarm as it runs, for `status`, `down` and the I/O commands: without -L/-S, on
    the server where `up` last applied it if it runs there, even if the spec now names
    another (one query more, only when the two differ)."""
    import dataclasses

    from swarm_launch.reconcile import manager_for, running_elsewhere

    swarm, target = spec_or_name(globals_, spec_path, name)
    if swarm is None or globals_.socket_name or globals_.socket_path:
        return swarm, target
    elsewhere = run_async(lambda: running_elsewhere(manager_for(target), target.name))
    if elsewhere is None:
        return swarm, target
    recorded = elsewhere[0]
    socket_name, socket_path = recorded.options()
    click.echo(f"note: swarm {target.name} runs on {recorded.words()}, where it was last "
               "applied: acting there (-L/-S to choose)", err=True)
    return swarm, dataclasses.replace(target, socket_name=socket_name, socket_path=socket_path)


def require_known(target: SwarmTarget, panes: Sequence[PaneState], socket_label: str) -> None:
    """A swarm named on the command line must have records or a session: a typo is an
    error, not an empty swarm."""
    if not panes and not records.is_recorded(target.name) \
            and records.tracked_socket(target.name) is None:
        raise UserError(f"no swarm {target.name!r}: nothing recorded in {store.data_dir()} "
                        f"and no session {target.session} on {socket_label} "
                        "(`swarm-launch ls` lists the swarms)")


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`asyncio.run(make())`, through a main task whose repr is short.

    Python 3.11's asyncio.run formats its main task twice (signal.getsignal on its
    SIGINT handler, a partial holding the task), and a task's repr shows its coroutine's
    arguments (a whole swarm spec) and, once done, its result (every agent's outcome):
    ~20 ms each at 500 agents. So the task takes no arguments and returns nothing."""
    import asyncio

    results: list[T] = []

    async def main() -> None:
        results.append(await make())

    asyncio.run(main())
    return results[0]
