"""A swarm's records in AI_SWARM_DIR/<name>/: state.json (last applied) and runs.jsonl.

Records say what we did; tmux says what is. Both files hold env keys and
hashes, never an env value.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from swarm_launch import store
from swarm_launch.desired import DesiredAgent
from swarm_launch.model import ID_PATTERN, StopSettings, stream_name
from swarm_launch.observed import PaneState
from swarm_launch.plan import Action
from swarm_launch.sockets import same_socket, socket_of
from swarm_launch.tmux_script import API_ID_PATTERN

log = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass(frozen=True)
class SwarmTarget:
    """Where a swarm lives: its name, its tmux server, its spec (when known)."""

    name: str
    socket_name: str | None = None
    socket_path: str | None = None
    spec_path: str | None = None
    base_dir: str | None = None

    @property
    def session(self) -> str:
        return f"swarm-{self.name}"

    def socket(self) -> str:
        """The socket path of its server, resolved as a tmux client here would."""
        return socket_of(self.socket_name, self.socket_path)

    def socket_document(self) -> dict[str, str | None]:
        # Both: the -L/-S as given (shown to people), and the socket they meant here and
        # now (with neither, inside tmux, the server in $TMUX): one server, one identity.
        return {"socket_name": self.socket_name, "socket_path": self.socket_path,
                "socket": self.socket()}


@dataclass(frozen=True)
class RecordedServer:
    """The tmux server a swarm was last applied on, as its records say."""

    socket_name: str | None
    socket_path: str | None
    socket: str  # resolved when recorded: exact even if $TMUX or TMUX_TMPDIR differ now

    def options(self) -> tuple[str | None, str | None]:
        """-L/-S reaching it from here: as recorded if they still lead there, else -S."""
        if same_socket(socket_of(self.socket_name, self.socket_path), self.socket):
            return self.socket_name, self.socket_path
        return None, self.socket

    def words(self) -> str:
        name, path = self.options()
        if path:
            return f"the tmux server at {path}"
        return f"tmux server -L {name}" if name else "the default tmux server"

    def flag(self) -> str:
        """The global option choosing it on a command line ("" for the default)."""
        import shlex

        name, path = self.options()
        return f"-S {shlex.quote(path)} " if path else (f"-L {shlex.quote(name)} " if name else "")


def recorded_server(name: str, state: Mapping[str, Any] | None = None) -> RecordedServer | None:
    """Where the swarm was last applied (None: no records), from `state` when the caller
    has loaded it. Records written before the resolved socket was kept are resolved now."""
    tmux = (load_state(name) if state is None else state).get("tmux")
    if not isinstance(tmux, dict):
        return None
    socket_name, socket_path = tmux.get("socket_name"), tmux.get("socket_path")
    socket = tmux.get("socket")
    if not socket:  # recorded before the socket was: read as outside tmux (no $TMUX)
        environ = {k: v for k, v in os.environ.items() if k != "TMUX"}
        socket = socket_of(socket_name, socket_path, environ=environ)
    return RecordedServer(socket_name, socket_path, str(socket))


def swarm_dir(name: str) -> str:
    return store.swarm_dir(name)


def is_recorded(name: str) -> bool:
    """Whether a swarm of this name ever ran here (without creating its directory)."""
    return os.path.exists(os.path.join(store.data_dir(), name, store.STATE_FILE))


def load_state(name: str) -> dict[str, Any]:
    """The last applied state, or an empty one when missing, unreadable or not of the
    shape `write_state` gives it (a hand edit, a damaged disk): tmux is the truth.
    Reading creates nothing: a swarm never applied gets no directory."""
    path = os.path.join(store.data_dir(), name, store.STATE_FILE)
    state = store.read_json(path)
    if state is None:
        return {}
    if not _well_formed(state):
        store.ignoring(path, "not a state file of this version")
        return {}
    return state  # type: ignore[no-any-return]


def _well_formed(state: Any) -> bool:
    def strings(value: Any, *, optional: bool = False) -> bool:
        return (optional and value is None) or isinstance(value, str)

    if not isinstance(state, dict) or not isinstance(state.get("agents"), dict):
        return False
    tmux = state.get("tmux", {})
    sockets = ("socket_name", "socket_path", "socket")
    if not isinstance(tmux, dict) or not all(strings(tmux.get(k), optional=True) for k in sockets):
        return False
    if not all(strings(state.get(key), optional=True) for key in ("spec_path", "spec_hash")):
        return False
    for entry in state["agents"].values():
        if not isinstance(entry, dict) or not strings(entry.get("pane_id"), optional=True):
            return False
        hashes, keys = entry.get("field_hashes", {}), entry.get("env_keys", [])
        if not isinstance(hashes, dict) or not all(map(strings, hashes.values())):
            return False
        if not isinstance(keys, list) or not all(map(strings, keys)):
            return False
    return True


def recorded_field_hashes(state: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    agents = state.get("agents", {})
    return {agent_id: dict(entry.get("field_hashes", {}))
            for agent_id, entry in agents.items() if isinstance(entry, dict)}


def recorded_agents(state: Mapping[str, Any]) -> tuple[dict[str, str], set[str]]:
    """The recorded agents the spec last applied has (id -> config hash), and those it
    does not (kept by --no-prune). Records older than the `in_spec` mark hold no orphan."""
    in_spec, orphans = {}, set()
    for agent_id, entry in state.get("agents", {}).items():
        if isinstance(entry, dict) and entry.get("in_spec") is False:
            orphans.add(agent_id)
        elif isinstance(entry, dict):
            in_spec[agent_id] = str(entry.get("config_hash", ""))
    return in_spec, orphans


def recorded_stops(state: Mapping[str, Any]) -> dict[str, StopSettings]:
    """Each recorded agent's stop settings, as it was started."""
    stops = {}
    for agent_id, entry in state.get("agents", {}).items():
        stop = entry.get("stop") if isinstance(entry, dict) else None
        if isinstance(stop, dict) and isinstance(stop.get("signal"), str) \
                and isinstance(stop.get("timeout_s"), int | float):
            stops[agent_id] = StopSettings(stop["signal"], float(stop["timeout_s"]))
    return stops


def write_state(target: SwarmTarget, *, spec_hash: str | None,
                desired: Mapping[str, DesiredAgent], panes: Iterable[PaneState],
                applied: Container[str] | None = None) -> None:
    """Record what runs now: for each of our panes its agent, hashes, pane id and how
    to stop it (an agent kept by --no-prune keeps what was recorded for it).

    `applied`: the agents whose panes run what `desired` says (None: all). Another agent
    (a run interrupted or failed before it replaced or updated it) keeps its previous
    entry while its pane is the one recorded, and gets none if not: its pane's prompt and
    stop are unknown here, and an entry of the spec's would hide the change still due."""
    previous = load_state(target.name).get("agents", {})
    agents: dict[str, Any] = {}
    for pane in panes:
        want = desired.get(pane.agent_id)
        before = previous.get(pane.agent_id)
        before = before if isinstance(before, dict) else {}
        if applied is not None and pane.agent_id not in applied:
            if before.get("pane_id") == pane.pane_id:
                agents[pane.agent_id] = before
            continue
        agents[pane.agent_id] = {
            "pane_id": pane.pane_id,
            "config_hash": pane.config_hash,
            "field_hashes": dict(want.field_hashes) if want else before.get("field_hashes", {}),
            "env_keys": sorted(want.env) if want else before.get("env_keys", []),
            "stop": _stop_document(want.spec.stop) if want else before.get("stop"),
            # False: kept by --no-prune, no longer in the spec (`status --name` says orphan).
            "in_spec": want is not None,
            "prompt_digest": (want.restart_prompt_digest if want
                              else before.get("prompt_digest", "")),
        }
    document = {
        "version": STATE_VERSION,
        "name": target.name,
        "session": target.session,
        "spec_path": target.spec_path,
        "spec_hash": spec_hash,
        "tmux": target.socket_document(),
        "updated_at": time.time(),
        "agents": agents,
    }
    store.atomic_write_json(os.path.join(swarm_dir(target.name), store.STATE_FILE), document)


def _stop_document(stop: StopSettings) -> dict[str, Any]:
    return {"signal": stop.signal, "timeout_s": stop.timeout_s}


def append_run(target: SwarmTarget, *, command: str, spec_hash: str | None, started: float,
               outcomes: Iterable[tuple[Action, str | None]], ok: bool,
               interrupted: bool = False) -> None:
    """One line of history per `up`/`down`: what was done, why, and how it went
    (`interrupted`: by Ctrl-C, with what was done until then)."""
    record: dict[str, Any] = {
        "time": started,
        "command": command,
        "spec_hash": spec_hash,
        "duration_s": round(time.time() - started, 4),
        "ok": ok,
        "actions": [
            {"action": action.kind.value, "agent": action.agent_id, "reason": action.reason,
             "result": "ok" if error is None else "failed", "error": error}
            for action, error in outcomes
        ],
    }
    if interrupted:
        record["interrupted"] = True
    store.append_jsonl(os.path.join(swarm_dir(target.name), store.RUNS_FILE), record)


def other_swarms_of(spec_path: str, name: str) -> list[str]:
    """Swarms of another name last applied from this same spec file and recorded with
    agents: what renaming a swarm in its spec leaves running."""
    if stream_name(spec_path):  # `up /dev/stdin` twice: two specs, one name
        return []
    found = []
    for other in known_swarms():
        state = load_state(other) if other != name else {}
        if state.get("spec_path") == spec_path and state.get("agents"):
            found.append(other)
    return found


def applied_from_another_file(name: str, spec_path: str) -> str | None:
    """The spec file swarm `name` was last applied from, when it is not `spec_path` and
    agents were recorded: two files giving one `name:` are one swarm, which each replaces.
    A stream (`/dev/stdin`, `/dev/fd/63`) names no file: its spec may be the same."""
    state = load_state(name)
    other = state.get("spec_path")
    if not isinstance(other, str) or stream_name(other) or stream_name(spec_path):
        return None
    return other if other != spec_path and state.get("agents") else None


def known_swarms() -> list[str]:
    """Names of swarms with a record directory in AI_SWARM_DIR. A directory whose name no
    swarm can have (a copy such as `Old.bak`) is skipped, with a warning."""
    base, names = store.data_dir(), []
    for entry in sorted(os.listdir(base)):
        if not os.path.isfile(os.path.join(base, entry, store.STATE_FILE)):
            continue
        if re.match(ID_PATTERN, entry):
            names.append(entry)
        else:
            log.warning("ignoring %s: not a swarm name", os.path.join(base, entry))
    return names


def tracked_sessions() -> list[tuple[str, str]]:
    """(swarm name, socket path) of each session in swarm_sessions.json, which the Python
    API keeps (most recently updated first): swarms that may have no state.json."""
    document = store.read_json(os.path.join(store.data_dir(), store.SESSIONS_FILE))
    sessions = document.get("sessions") if isinstance(document, dict) else None
    entries = [e for e in sessions.values() if isinstance(e, dict)] \
        if isinstance(sessions, dict) else []
    valid = [e for e in entries if isinstance(e.get("cluster_id"), str)
             and API_ID_PATTERN.fullmatch(e["cluster_id"]) and isinstance(e.get("socket"), str)
             and isinstance(e.get("updated", 0), int | float)]
    valid.sort(key=lambda e: -e.get("updated", 0))
    return [(e["cluster_id"], e["socket"]) for e in valid]


def tracked_socket(name: str) -> str | None:
    """The socket of the server where the Python API last tracked swarm `name`."""
    return next((socket for tracked, socket in tracked_sessions() if tracked == name), None)


def recorded_prompt_digests(state: Mapping[str, Any]) -> dict[str, str]:
    """Per agent, the restart prompt digest its pane was last given (see `write_state`);
    agents recorded without one (older records, none) are left out: `up` gives their panes
    the spec's prompt again, once."""
    agents = state.get("agents")
    if not isinstance(agents, dict):
        return {}
    return {agent: entry["prompt_digest"] for agent, entry in agents.items()
            if isinstance(entry, dict) and isinstance(entry.get("prompt_digest"), str)}
