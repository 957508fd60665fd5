"""Shared test helpers: run the CLI in-process, wait on a condition with a deadline."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

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


def default_signals() -> None:
    """Run in the child before exec: a CLI run that a test interrupts must not inherit an
    ignored SIGINT (a shell's `cmd &` ignores it), SIGHUP (`nohup`) or SIGTERM, or the
    signal the test sends would do nothing. (Only async-signal-safe calls: see Popen.)"""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def interruptible(argv: list[str], **popen: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(argv)` whose signals act as on a person's terminal."""
    return subprocess.Popen(argv, preexec_fn=default_signals, **popen)  # noqa: PLW1509


def cli_process(*args: str) -> subprocess.Popen[str]:
    """`swarm-launch ARGS` as a process of its own (`interruptible`), output piped as text."""
    return interruptible([sys.executable, "-m", "swarm_launch", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
