"""The CLI's way into asyncio: the main task's repr stays short whatever it is given."""

from __future__ import annotations

import asyncio

from swarm_launch.commands._common import run_async


class Costly:
    """Stands for a swarm spec or an outcome, costly to format: counts its reprs."""

    reprs = 0

    def __repr__(self) -> str:
        Costly.reprs += 1
        return "Costly()"


async def echo(value: Costly) -> tuple[Costly, str]:
    task = asyncio.current_task()
    assert task is not None
    return value, repr(task)


def test_run_async_returns_the_result_through_a_short_task_repr() -> None:
    value = Costly()
    result, task_repr = run_async(lambda: echo(value))
    assert result is value
    assert "Costly" not in task_repr and "main" in task_repr


def test_run_async_never_formats_its_argument_or_its_result() -> None:
    async def identity(value: Costly) -> Costly:
        return value

    Costly.reprs = 0
    value = Costly()
    assert run_async(lambda: identity(value)) is value
    assert Costly.reprs == 0
