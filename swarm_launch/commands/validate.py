"""`swarm-launch validate SPEC...`: every error of every file, located; exit 1 if any."""

from __future__ import annotations

from typing import Any

import click

from swarm_launch.exceptions import SpecError
from swarm_launch.spec import load_spec


def run(globals_: Any, *, specs: tuple[str, ...]) -> int:
    """Check each spec; print `FILE: ok` or its issues and a summary. 0 when all are valid."""
    failed = 0
    for path in specs:
        try:
            load_spec(path, check_workdirs=True)
        except SpecError as exc:
            click.echo(exc.report(), err=True)
            failed += 1
        else:
            click.echo(f"{path}: ok")
    return 1 if failed else 0
