"""`swarm-launch up`: make tmux match the spec; say what was done and why."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import click

from swarm_launch import output, reconcile, records, render
from swarm_launch.cli import Globals
from swarm_launch.commands import _signals
from swarm_launch.commands import plan as plan_command
from swarm_launch.commands._common import load, run_async
from swarm_launch.model import SwarmSpec
from swarm_launch.plan import Action, Kind

T = TypeVar("T")


def run(globals_: Globals, *, spec: str, no_prune: bool, dry_run: bool, as_json: bool,
        wait: bool, timeout: float | None, watch: bool, replace: tuple[str, ...] = ()) -> int:
    if dry_run:
        return plan_command.run(globals_, spec=spec, as_json=as_json, detailed_exitcode=False,
                                no_prune=no_prune, replace=replace)
    if watch:
        return _watch(globals_, spec, prune=not no_prune, replace=replace)
    swarm, target = load(globals_, spec)
    plan_command.note_another_file(swarm)
    report = None if as_json else _printer(swarm)
    try:
        applied = _signals.run_terminable(lambda: reconcile.up(
            swarm, target, prune=not no_prune, wait=wait, wait_timeout_s=timeout,
            report=report, replace=replace))
    except _signals.Terminated as exc:
        return _signals.report(exc)
    plan_command.note_foreign_session(applied.plan, target.session)
    if as_json:
        render.echo_json(_document(swarm.name, target.session, applied,
                                   reconcile.manager_for(target).log_path))
        return 0 if applied.ok else 1
    click.echo(applied.summary())
    if not applied.plan.in_sync:
        _note_renamed(swarm)
    return _verdict(applied, reconcile.manager_for(target).log_path)


def _note_renamed(swarm: SwarmSpec) -> None:
    """A swarm renamed in its spec is a new swarm: say that the old one still runs."""
    for other in records.other_swarms_of(swarm.path, swarm.name):
        click.echo(f"note: swarm {other!r} was last applied from this spec file and still "
                   f"has agents; `swarm-launch down --name {other}` stops it", err=True)


def _printer(swarm: SwarmSpec) -> reconcile.Report:
    """Print each action as it is done, ids aligned (room for a replica suffix)."""
    width = max((len(i) for i in swarm.agents), default=0) + 8

    def report(action: Action, error: str | None) -> None:
        click.echo(render.action_line(action, error, width=width))

    return report


def _verdict(applied: reconcile.Applied, log_path: Callable[[str], str]) -> int:
    failed = [f"{a.agent_id} ({error})" for a, error in applied.outcomes if error]
    if failed:
        click.echo(f"error: failed: {'; '.join(failed)}", err=True)
    if applied.unconverged:
        click.echo(f"error: not running as the spec says: {', '.join(applied.unconverged)}",
                   err=True)
    for agent_id, error in applied.prompt_errors.items():
        click.echo(f"error: {agent_id}: {error}", err=True)
    for agent_id, code in applied.exited.items():
        status = "exit status unknown" if code is None else f"exit {code}"
        _with_output(log_path, agent_id, f"error: {agent_id} is dead ({status}) and will not "
                     "be restarted (no restart policy, or it gave up)")
    for agent_id in (a for a in applied.not_ready if a not in applied.exited):
        why = applied.why_not_ready.get(agent_id)
        _with_output(log_path, agent_id, f"error: {agent_id} did not become ready"
                     + (f" ({why})" if why else ""))
    if applied.record_error:
        click.echo(f"error: {applied.record_error}", err=True)
    return 0 if applied.ok and not applied.record_error else 1


def _with_output(log_path: Callable[[str], str], agent_id: str, message: str) -> None:
    """`message`, then the end of the agent's output, or that it printed nothing."""
    lines = _last_lines(log_path, agent_id)
    click.echo(message + ("; the end of its output:" if lines else "; it printed nothing"),
               err=True)
    for line in lines:
        click.echo(f"  {agent_id} | {line}", err=True)


def _last_lines(log_path: Callable[[str], str], agent_id: str, count: int = 10) -> list[str]:
    """The end of the agent's output since its latest start (the log keeps earlier runs)."""
    from swarm_launch.logfiles import strip_terminal_noise, tail_lines
    from swarm_launch.logpipe import MARKER_PREFIX

    raw = b"\n".join(tail_lines(log_path(agent_id), count)).decode("utf-8", errors="replace")
    lines = strip_terminal_noise(raw).splitlines()[-count:]
    starts = [i for i, text in enumerate(lines)
              if text.startswith(f"{MARKER_PREFIX}agent {agent_id} started ")]
    return lines[starts[-1] + 1:] if starts else lines


def _document(name: str, session: str, applied: reconcile.Applied,
              log_path: Callable[[str], str]) -> dict[str, object]:
    document = render.plan_document(name, session, applied.plan)
    errors = {a.agent_id: e for a, e in applied.outcomes}
    document["actions"] = [render.action_document(a, errors.get(a.agent_id), with_result=a.changes)
                           for a in applied.plan.actions]
    counts = applied.counts()
    document["summary"] = {"create": counts[Kind.CREATE], "replace": counts[Kind.REPLACE],
                           "remove": counts[Kind.REMOVE], "keep": counts[Kind.KEEP],
                           "update": counts[Kind.UPDATE], "failed": applied.failed}
    document["ok"] = applied.ok
    document["unconverged"] = applied.unconverged
    document["exited"] = applied.exited
    document["not_ready"] = applied.not_ready
    document["prompt_errors"] = applied.prompt_errors
    document["record_error"] = applied.record_error
    # What the text output prints on stderr for them: the end of their output.
    document["last_output"] = {agent_id: _last_lines(log_path, agent_id)
                               for agent_id in [*applied.exited, *applied.not_ready]}
    return document


def _watch(globals_: Globals, spec: str, *, prune: bool, replace: tuple[str, ...]) -> int:
    """Apply now, then after every change of the spec; Ctrl-C leaves the swarm running
    (exit 0: it is how a watch ends), as SIGTERM and SIGHUP do (exit 128 + the signal).

    `--replace` counts for the first apply only: a spec edit must not replace them again."""
    from swarm_launch import watch
    from swarm_launch.desired import expand
    from swarm_launch.exceptions import SpecError, UserError

    if replace:  # a wrong name is an error now, not a surprise at the first apply
        with contextlib.suppress(SpecError):  # reported, then waited on, as without it
            swarm = load(globals_, spec)[0]
            reconcile.replacement_ids(swarm, expand(swarm), replace)
    forced = list(replace)  # until the first apply that succeeds

    stop = _StopOnInterrupt()

    def apply() -> None:
        try:
            swarm, target = load(globals_, spec)
        except SpecError as exc:
            click.echo(exc.report(), err=True)
            click.echo("the spec is invalid; nothing was changed; waiting for a fix", err=True)
            return
        try:
            reconcile.replacement_ids(swarm, expand(swarm), forced)
        except UserError as exc:  # the spec was invalid at the start: checked only now
            click.echo(f"error: {exc}; applying without --replace", err=True)
            forced.clear()
        try:
            applied = run_async(lambda: stop.cancellable(reconcile.up(
                swarm, target, prune=prune, report=_printer(swarm), replace=forced)))
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            return
        except asyncio.CancelledError:
            return  # Ctrl-C, SIGTERM, SIGHUP: the watch ends at once
        finally:
            stop.done()
        forced.clear()
        click.echo(f"{time.strftime('%H:%M:%S')} {applied.summary()}", color=None)
        _verdict(applied, reconcile.manager_for(target).log_path)

    try:
        with stop.handling():
            before = watch.signature(spec)  # a save during the first apply is applied next
            apply()
            if not stop.requested:
                click.echo(f"watching {spec} for changes "
                           "(Ctrl-C to stop watching; the swarm keeps running)")
                # A reader gone (`up --watch | tee f`, tee ended) ends the watch, between
                # applies
                watch.watch(spec, apply, seen=before,
                            should_stop=lambda: stop.requested or output.reader_gone(),
                            on_gone=lambda: click.echo(
                                f"{spec} is gone; the swarm keeps running as it is; "
                                "watching for the file to come back", err=True))
    except KeyboardInterrupt:
        pass
    except _signals.Terminated as exc:
        stop.signum = exc.signum
    click.echo("stopped watching; the swarm keeps running")
    return _signals.report(_signals.Terminated(stop.signum)) if stop.signum else 0


_WATCH_SIGNALS = (signal.SIGINT, *_signals.CANCELLING_SIGNALS)


class _StopOnInterrupt:
    """Ctrl-C, SIGTERM or SIGHUP under `up --watch`: between applies, it ends the watch at
    once; during an apply, it cancels the apply (as asyncio.run would: a stop under way
    gives back the policies it held aside, the run is recorded) and ends the watch when
    the apply returns, cancelled or not. A second Ctrl-C raises at once; a second SIGTERM
    or SIGHUP is ignored while the cancelled apply cleans up, as under `up`.

    Not an exception raised inside the event loop: one landing in the loop's own callbacks
    (a subprocess's exit) can leave a process never awaited, and asyncio.run's clean-up
    waiting forever. Nor asyncio.run's own handling alone: Python 3.11's wait_for can
    swallow the cancellation (CPython gh-86296), and the interrupt was lost."""

    def __init__(self) -> None:
        self.requested = False
        self.signum = 0  # the SIGTERM or SIGHUP that ended the watch, if one did
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None

    async def cancellable(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` as the apply a Ctrl-C cancels, until `done` (after asyncio.run has
        also cleaned up: an interrupt then must not raise inside it either)."""
        task = asyncio.current_task()
        assert task is not None
        self._running = (asyncio.get_running_loop(), task)
        return await work

    def done(self) -> None:
        self._running = None

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Ctrl-C, and SIGTERM and SIGHUP unless ignored (`nohup`), go to `interrupt`
        while the watch runs."""
        previous = {signum: signal.getsignal(signum) for signum in _WATCH_SIGNALS}
        for signum, handler in previous.items():
            if signum == signal.SIGINT or handler == signal.SIG_DFL:
                signal.signal(signum, self.interrupt)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def interrupt(self, signum: int, frame: object) -> None:
        terminated = signum != signal.SIGINT
        if self.requested and terminated:
            return
        if self.requested or self._running is None:
            raise _signals.Terminated(signum) if terminated else KeyboardInterrupt
        self.requested = True
        self.signum = signum if terminated else 0
        loop, task = self._running
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to cancel
            loop.call_soon_threadsafe(task.cancel)  # only queues it, and wakes the loop


