"""SIGTERM and SIGHUP end `up` and `down` as Ctrl-C does: the work is cancelled, so a stop
under way gives back the restart policies it held aside and the run is recorded as
interrupted. Left to their default action, they killed the process mid-stop: the agent
ran on without its restart policy, and everything said it was in sync."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from swarm_launch.commands._common import run_async

T = TypeVar("T")

# Not SIGINT: asyncio.run already cancels its main task on the first Ctrl-C.
CANCELLING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(Exception):
    """The run was cancelled by `signum`; it exits 128 + signum, as the shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def run_terminable(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`run_async(make)`, cancelled by SIGTERM or SIGHUP as by Ctrl-C; raises Terminated
    once the cancellation has run its course. A signal someone chose to ignore (`nohup`)
    stays ignored."""
    received: list[int] = []

    async def cancellable() -> T:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None
        handled = [s for s in CANCELLING_SIGNALS if signal.getsignal(s) == signal.SIG_DFL]
        for signum in handled:
            loop.add_signal_handler(signum, _cancel, task, signum, received)
        try:
            return await make()
        finally:
            # The clean-up is over: back to the default, so a signal now ends us at once.
            for signum in handled:
                loop.remove_signal_handler(signum)

    try:
        return run_async(cancellable)
    except asyncio.CancelledError:
        if received:
            raise Terminated(received[0]) from None
        raise


def _cancel(task: asyncio.Task[Any], signum: int, received: list[int]) -> None:
    """The first signal cancels the run; later ones are ignored while its clean-up runs
    (a stop called off gives back the restart policies it held aside, in tmux calls that
    time out): cancelled again, the clean-up was cut short, the policies left held aside,
    and a tmux call cut short as asyncio started it made the run wait forever."""
    received.append(signum)
    if len(received) == 1:
        task.cancel()


def report(exc: Terminated) -> int:
    """Say why the run ended, as an interrupt is said; its exit code."""
    click.echo(f"interrupted ({signal.Signals(exc.signum).name})", err=True)
    return exc.exit_code
