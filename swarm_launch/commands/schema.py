"""`swarm-launch schema`: print the JSON Schema of spec files (for editors and CI)."""

from __future__ import annotations

from typing import Any

import click

from swarm_launch.spec import schema_text


def run(globals_: Any) -> int:
    """Print the schema exactly as shipped."""
    click.echo(schema_text(), nl=False)
    return 0
