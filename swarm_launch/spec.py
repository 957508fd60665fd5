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
import re
import stat
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from swarm_launch import spec_checks
from swarm_launch.exceptions import SpecError, SpecIssue
from swarm_launch.interpolate import interpolate
from swarm_launch.model import (
    MAX_SPEC_BYTES,
    AgentSpec,
    Backoff,
    LogSettings,
    Readiness,
    RestartPolicy,
    SendSettings,
    StopSettings,
    SwarmSpec,
    TmuxSettings,
    stream_name,
)

if TYPE_CHECKING:
    from swarm_launch.spec_yaml import Document

SCHEMA_FILE = "swarm.schema.json"
NESTED_DEFAULTS = ("backoff", "send", "logs", "stop")
VALID_CACHE_SIZE = 256  # versions of spec files remembered as valid
# Part of each remembered file's name: a new format of the parsed data, a change to
# what reading YAML produces, or to what the schema check accepts beyond the schema's
# text (v2: integers are ints, 2.0 is not one; v3: numbers are finite; v4: a pattern's
# `$` is the end of the text), must bump it so no older entry is read.
CACHE_FORMAT = b"parsed-v4"


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
              valid_cache: str | None = None, check_workdirs: bool = False) -> SwarmSpec:
    """Load, check and interpolate the spec at `path`; raise SpecError with every issue.

    `valid_cache`: a private directory remembering the files that passed the schema (so
    jsonschema, ~45 ms to import, is not needed again), most with their parsed data (so
    PyYAML, ~10 ms, is not either): `up` of an unchanged spec is the common case.
    Semantic checks always run: they depend on the environment and on prompt files.
    `check_workdirs`: a missing workdir is an error too (`validate`; `up` fails only the
    agents that would run there).
    """
    env = os.environ if environ is None else environ
    raw = _read_once(path)  # once: a pipe (`<(...)`, /dev/stdin) cannot be read again
    known = _remembered(raw, valid_cache) if raw is not None and valid_cache else None
    if known is not None and known.data is not None:
        try:
            context = _context(path, env, None, known.raw, check_workdirs)
            return _checked(context, known.data, known.raw, [])
        except Exception:  # not what we wrote (or an error to locate): the long way, which
            known = None   # remembers the file again if it passes
    from swarm_launch.spec_yaml import LoadFailure, read_document

    try:
        document = read_document(path, path, raw)
    except LoadFailure as failure:
        raise SpecError(path, failure.issues) from None
    context = _context(path, env, document.root, document.raw, check_workdirs)
    issues = list(document.issues)
    if known is None:
        issues += _schema_issues(context, document, valid_cache)
    return _checked(context, document.data, document.raw, issues)


def _read_once(path: str) -> bytes | None:
    """The file's bytes (up to one more than a spec may have); None if it cannot be read,
    which the YAML reader then reports, located."""
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_SPEC_BYTES + 1)
    except OSError:  # missing, a directory, unreadable
        return None


def _context(path: str, env: Mapping[str, str], root: Any, raw: bytes,
             check_workdirs: bool) -> spec_checks.Context:
    return spec_checks.Context(file=path, root=root, raw=raw, environ=env,
                               spec_dir=_spec_dir(path), check_workdirs=check_workdirs)


def _spec_dir(path: str) -> str:
    """What relative paths in the spec are relative to: the file's directory, or for a
    spec read from a stream (`up <(cat spec)`, `up /dev/stdin < spec`, a pipe) the
    current directory: /dev/fd or /proc/self/fd is nobody's project. A redirected file is
    named /dev/stdin, and stats as the file: its name says it is a stream. A regular file
    anywhere else (/dev/shm too) is a project's."""
    absolute = os.path.abspath(path)
    if stream_name(absolute):
        return os.getcwd()
    try:
        regular = stat.S_ISREG(os.stat(absolute).st_mode)
    except OSError:
        regular = True  # missing: reported as such, wherever it was to be
    return os.path.dirname(absolute) if regular else os.getcwd()


def _checked(context: spec_checks.Context, data: Any, raw: bytes,
             issues: list[SpecIssue]) -> SwarmSpec:
    issues += spec_checks.semantic_issues(context, data)
    if issues:
        raise SpecError(context.file, issues)
    return _build(context, data, raw)


class _Remembered(NamedTuple):
    raw: bytes  # the file's bytes, which passed the schema
    data: dict[str, Any] | None  # their parsed data, unless not kept (`_storable`)


def _cache_entry(valid_cache: str, raw: bytes) -> str:
    key = CACHE_FORMAT + b"\0" + schema_text().encode() + b"\0" + raw
    return os.path.join(valid_cache, hashlib.sha256(key).hexdigest())


def _remembered(raw: bytes, valid_cache: str) -> _Remembered | None:
    """What the cache knows of these bytes, if they passed the schema before."""
    if len(raw) > MAX_SPEC_BYTES:
        return None
    try:
        with open(_cache_entry(valid_cache, raw), encoding="utf-8") as handle:
            text = handle.read()
        data = json.loads(text) if text else None
    except (OSError, ValueError):  # not seen, unreadable, torn: read it the long way
        return None
    return _Remembered(raw, data) if data is None or isinstance(data, dict) else None


def _schema_issues(context: spec_checks.Context, document: Document,
                   valid_cache: str | None) -> list[SpecIssue]:
    """The schema's verdict; a file that passed is remembered, named by the hash of
    (format, schema, file bytes), with its parsed data when that holds no env value."""
    issues = spec_checks.schema_issues(context, document.data, _schema())
    if valid_cache is not None and not issues and not document.issues:
        with contextlib.suppress(OSError):  # a cache: failing to remember costs nothing
            _remember(_cache_entry(valid_cache, document.raw), document.data)
    return issues


def _remember(entry: str, data: Any) -> None:
    """Write the entry whole or not at all (a reader may come at any moment): the data
    as JSON, or nothing (only "valid") where that would put an env value in a file, or
    where JSON cannot hold it (a YAML date in a free-form field)."""
    try:
        text = json.dumps(data) if _storable(data) else ""
    except (TypeError, ValueError):
        text = ""
    _forget_oldest(os.path.dirname(entry))
    partial = f"{entry}.{os.getpid()}.tmp"
    fd = os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, entry)


_ONLY_REFERENCES = re.compile(r"(?:\$\{[A-Za-z_][A-Za-z0-9_]*(?::\?[^}]*)?\})+")


def _storable(data: dict[str, Any]) -> bool:
    """Env values live only in the agents' environments and in tmux: parsed data may be
    kept on disk only if every env value in it is references alone (`${API_KEY}`), whose
    text names a variable but holds no value. A literal (`ROLE: reviewer`, a key pasted
    in, a `${X:-default}`) leaves the file to be parsed again at each run."""
    agents = data.get("agents")
    bodies = [data, data.get("defaults"), *(agents.values() if isinstance(agents, dict) else ())]
    for body in bodies:
        env = body.get("env") if isinstance(body, dict) else None
        for value in (env.values() if isinstance(env, dict) else ()):
            if not (isinstance(value, str) and _ONLY_REFERENCES.fullmatch(value)):
                return False
    return True


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
