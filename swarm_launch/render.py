"""How plans, runs and statuses look on a terminal and as JSON (no I/O but `echo`)."""

from __future__ import annotations

import json
from typing import Any

import click

from swarm_launch.plan import Action, Kind, Plan

_MARKS = {Kind.CREATE: ("+", "green"), Kind.REPLACE: ("~", "yellow"),
          Kind.REMOVE: ("-", "red"), Kind.KEEP: (" ", None), Kind.UPDATE: ("~", "cyan")}


def action_line(action: Action, error: str | None = None, *, width: int = 12) -> str:
    mark, colour = _MARKS[action.kind]
    text = f"{mark} {action.kind.value:<8}{action.agent_id:<{width}} {action.reason}"
    if error is not None:
        text += f"  FAILED: {error}"
        colour = "red"
    return click.style(text, fg=colour) if colour else text


def id_width(plan: Plan) -> int:
    return max((len(a.agent_id) for a in plan.actions), default=0) + 2


def plan_document(name: str, session: str, plan: Plan) -> dict[str, Any]:
    return {
        "name": name,
        "session": session,
        "in_sync": plan.in_sync,
        "actions": [action_document(a) for a in plan.actions],
        "summary": {word: len(plan.of_kind(kind)) for kind, word in
                    ((Kind.CREATE, "create"), (Kind.REPLACE, "replace"),
                     (Kind.REMOVE, "remove"), (Kind.KEEP, "keep"),
                     (Kind.UPDATE, "update"))},
    }


def action_document(action: Action, error: str | None = None,
                    with_result: bool = False) -> dict[str, Any]:
    document: dict[str, Any] = {"action": action.kind.value, "agent": action.agent_id,
                                "reason": action.reason}
    if with_result:
        document["result"] = "ok" if error is None else "failed"
        document["error"] = error
    return document


def echo_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, sort_keys=False))
