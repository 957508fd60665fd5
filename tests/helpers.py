"""Shared test helpers: run the CLI in-process, wait on a condition with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from click.testing import CliRunner

from swarm_launch import cli

T = TypeVar("T")


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def invoke(*args: str, input: str | bytes | None = None) -> CliResult:
    """Run `swarm-launch ARGS` in this process, exit codes mapped as the real entry point does."""
    runner = CliRunner()
    with runner.isolation(input=input) as (out, err, _):
        code = cli.run(list(args))
    return CliResult(code, out.getvalue().decode(), err.getvalue().decode())


def wait_until(condition: Callable[[], T | None], *, timeout: float = 10.0,
               interval: float = 0.02, message: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
