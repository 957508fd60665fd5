"""Spec loading: YAML -> located schema and semantic errors -> interpolation -> `SwarmSpec`.

Every problem of a file is collected and raised at once as a `SpecError`, each
located as `FILE:LINE:COL: $.json.path: message`. Past `load_spec` everything
is a frozen record of `swarm_launch.model`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from swarm_launch import spec_checks
from swarm_launch.exceptions import SpecError, SpecIssue
from swarm_launch.interpolate import interpolate
from swarm_launch.model import (
    AgentSpec,
    Backoff,
    LogSettings,
    Readiness,
    RestartPolicy,
    SendSettings,
    StopSettings,
    SwarmSpec,
    TmuxSettings,
)
from swarm_launch.spec_yaml import Document, LoadFailure, read_document

SCHEMA_FILE = "swarm.schema.json"
NESTED_DEFAULTS = ("backoff", "send", "logs", "stop")
VALID_CACHE_SIZE = 256  # versions of spec files remembered as valid


@functools.lru_cache(maxsize=1)
def schema_text() -> str:
    """The JSON Schema of spec files, as shipped in the package (or the repo's schemas/)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(here, "_data", SCHEMA_FILE),  # installed from a wheel
                 os.path.join(os.path.dirname(here), "schemas", SCHEMA_FILE)):  # the repo
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return handle.read()
    # Imported from a zip: importlib.resources (~5 ms to import, so only here) reads it.
    from importlib import resources

    return (resources.files("swarm_launch") / "_data" / SCHEMA_FILE).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(schema_text())
    return document


def schema() -> dict[str, Any]:
    """The JSON Schema as a dict (a copy: callers may change it)."""
    return copy.deepcopy(_schema())


def load_spec(path: str, environ: Mapping[str, str] | None = None, *,
              valid_cache: str | None = None) -> SwarmSpec:
    """Load, check and interpolate the spec at `path`; raise SpecError with every issue.

    `valid_cache`: a private directory remembering the files that passed the schema.
    """
    env = os.environ if environ is None else environ
    try:
        document = read_document(path, path)
    except LoadFailure as failure:
        raise SpecError(path, failure.issues) from None
    context = spec_checks.Context(file=path, root=document.root,
                                  spec_dir=os.path.dirname(os.path.abspath(path)), environ=env)
    issues = [*document.issues, *_schema_issues(context, document, valid_cache)]
    issues += spec_checks.semantic_issues(context, document.data)
    if issues:
        raise SpecError(path, issues)
    return _build(context, document.data, document.raw)


def _schema_issues(context: spec_checks.Context, document: Document,
                   valid_cache: str | None) -> list[SpecIssue]:
    """The schema's verdict; remembered for a file that passed, as one empty file named
    by the hash of (schema, file bytes): jsonschema costs ~45 ms of start-up to import,
    and `up` of an unchanged spec is the common case. Semantic checks always run."""
    if valid_cache is None:
        return spec_checks.schema_issues(context, document.data, _schema())
    digest = hashlib.sha256(schema_text().encode() + b"\0" + document.raw).hexdigest()
    remembered = os.path.join(valid_cache, digest)
    if os.path.exists(remembered):
        return []
    issues = spec_checks.schema_issues(context, document.data, _schema())
    if not issues and not document.issues:
        with contextlib.suppress(OSError):  # a cache: failing to remember costs nothing
            _forget_oldest(valid_cache)
            os.close(os.open(remembered, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    return issues


def _forget_oldest(directory: str, keep: int = VALID_CACHE_SIZE) -> None:
    entries = [entry for entry in os.scandir(directory) if entry.is_file()]
    if len(entries) >= keep:
        entries.sort(key=lambda entry: entry.stat().st_mtime)
        for entry in entries[:len(entries) - keep + 1]:
            os.unlink(entry.path)


def _build(context: spec_checks.Context, data: dict[str, Any], raw: bytes) -> SwarmSpec:
    env_of = context.environ
    workdir = _directory(context.spec_dir, interpolate(data.get("workdir", "."), env_of))
    env = {key: interpolate(value, env_of) for key, value in data.get("env", {}).items()}
    defaults: dict[str, Any] = data.get("defaults", {})
    agents = {
        agent_id: _agent(context, agent_id, _with_defaults(body, defaults), workdir, env)
        for agent_id, body in data["agents"].items()
    }
    return SwarmSpec(
        name=data["name"],
        path=os.path.abspath(context.file),
        spec_hash=hashlib.sha256(raw).hexdigest(),
        workdir=workdir,
        env=env,
        tmux=_tmux(context, data.get("tmux", {})),
        agents=agents,
    )


def _absolute(base: str, path: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _directory(base: str, path: str) -> str:
    """A workdir with symlinks resolved: it is part of the config hash, so a spec read
    through a symlinked checkout must not restart every agent (nor `..` after a symlink
    lead elsewhere than the shell's `cd` would)."""
    return os.path.realpath(os.path.join(base, os.path.expanduser(path)))


def _with_defaults(body: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The agent's fields over the swarm's defaults, nested settings merged key by key."""
    merged = {**defaults, **body}
    for key in NESTED_DEFAULTS:
        if key in defaults and key in body:
            merged[key] = {**defaults[key], **body[key]}
    return merged


def _tmux(context: spec_checks.Context, tmux: dict[str, Any]) -> TmuxSettings:
    socket_path = tmux.get("socket_path")
    if socket_path is not None:
        socket_path = _absolute(context.spec_dir, socket_path)
    return TmuxSettings(socket_name=tmux.get("socket_name"), socket_path=socket_path)


def _agent(context: spec_checks.Context, agent_id: str, body: dict[str, Any],
           swarm_workdir: str, swarm_env: Mapping[str, str]) -> AgentSpec:
    env_of = context.environ
    own_env = {key: interpolate(value, env_of) for key, value in body.get("env", {}).items()}
    command = body["command"]
    prompt = context.prompts.get(agent_id, body.get("prompt"))
    return AgentSpec(
        id=agent_id,
        command=command if isinstance(command, str) else tuple(command),
        workdir=_directory(swarm_workdir, interpolate(body.get("workdir", "."), env_of)),
        env={**swarm_env, **own_env},
        replicas=body.get("replicas", 1),
        replicated="replicas" in body,
        restart=_restart(body),
        ready=_ready(body.get("ready")),
        depends_on=tuple(body.get("depends_on", ())),
        prompt=prompt,
        send=SendSettings(**body.get("send", {})),
        logs=LogSettings(**body.get("logs", {})),
        stop=_stop(body.get("stop", {})),
    )


def _restart(body: dict[str, Any]) -> RestartPolicy:
    default = RestartPolicy()
    backoff = {key: float(value) for key, value in body.get("backoff", {}).items()}
    return RestartPolicy(
        mode=body.get("restart", default.mode),
        max_restarts=body.get("max_restarts", default.max_restarts),
        backoff=Backoff(**backoff),
        reset_after_s=float(body.get("reset_after_s", default.reset_after_s)),
    )


def _ready(ready: dict[str, Any] | None) -> Readiness | None:
    if ready is None:
        return None
    return Readiness(pattern=ready["pattern"],
                     timeout_s=float(ready.get("timeout_s", Readiness("").timeout_s)))


def _stop(stop: dict[str, Any]) -> StopSettings:
    default = StopSettings()
    return StopSettings(signal=stop.get("signal", default.signal),
                        timeout_s=float(stop.get("timeout_s", default.timeout_s)))
