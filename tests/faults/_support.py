"""Shared pieces of the fault suite: specs, tmux reads, exact-convergence checks, figures."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence

FIGURES_ENV = "SWARM_FAULTS_FIGURES_DIR"
PANE_FORMAT = "#{pane_id}\t#{@swarm_cluster}\t#{@swarm_agent}\t#{pane_pid}\t#{pane_dead}"


def socket_name() -> str:
    """A fresh tmux socket name; conftest reaps every server in the test's TMUX_TMPDIR."""
    return f"flt-{uuid.uuid4().hex[:10]}"


def spec_text(name: str, count: int, *, command: str = "sleep 600",
              env: Mapping[str, str] | None = None, prefix: str = "a") -> str:
    lines = [f"version: 1\nname: {name}\n"]
    if env:
        lines.append("env:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in env.items()))
    lines.append("agents:\n")
    lines += [f"  {prefix}{i}:\n    command: {command}\n" for i in range(count)]
    return "".join(lines)


def write_spec(path: pathlib.Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def agent_ids(count: int, prefix: str = "a") -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def cli_argv(sock: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "swarm_launch", "-L", sock, *args]


def run_cli(sock: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(sock, *args), capture_output=True, text=True,
                          timeout=timeout, check=False)


def tmux(sock: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True,
                          timeout=30, check=False)


def session_panes(sock: str, name: str) -> list[dict[str, str]]:
    """Every pane of the swarm's session (ours or not); [] when session or server is gone."""
    result = tmux(sock, "list-panes", "-s", "-t", f"=swarm-{name}:", "-F", PANE_FORMAT)
    if result.returncode != 0:
        return []
    keys = ("pane_id", "cluster", "agent", "pid", "dead")
    return [dict(zip(keys, line.split("\t"), strict=True))
            for line in result.stdout.splitlines() if line]


def tagged_agents(sock: str, name: str) -> list[str]:
    """`list-panes -s -F '#{@swarm_agent}'`: the agent tag of every pane, sorted."""
    result = tmux(sock, "list-panes", "-s", "-t", f"=swarm-{name}:", "-F", "#{@swarm_agent}")
    if result.returncode != 0:
        return []
    return sorted(line for line in result.stdout.splitlines() if line)


def server_running(sock: str) -> bool:
    return tmux(sock, "list-sessions").returncode == 0


def read_state(swarm_dir: pathlib.Path, name: str) -> dict[str, object]:
    document = json.loads((swarm_dir / name / "state.json").read_text())
    assert isinstance(document, dict)
    return document


def assert_runs_valid(swarm_dir: pathlib.Path, name: str) -> list[dict[str, object]]:
    """Every line of runs.jsonl is one whole JSON object."""
    path = swarm_dir / name / "runs.jsonl"
    records: list[dict[str, object]] = []
    if not path.exists():
        return records
    for number, line in enumerate(path.read_text().split("\n")[:-1], 1):
        value = json.loads(line)  # a torn or garbage line fails here, with its number
        assert isinstance(value, dict), f"runs.jsonl line {number} is not an object"
        records.append(value)
    assert path.read_text().endswith("\n") or not path.read_text()
    return records


def assert_converged(sock: str, name: str, ids: Sequence[str], swarm_dir: pathlib.Path, *,
                     foreign_ok: bool = False) -> None:
    """Exactly one live pane per agent, no orphan, no duplicate, records matching tmux."""
    panes = session_panes(sock, name)
    ours = [p for p in panes if p["cluster"] == name and p["agent"]]
    assert sorted(p["agent"] for p in ours) == sorted(ids), "agents in tmux"
    if not foreign_ok:
        assert tagged_agents(sock, name) == sorted(ids)
    assert all(p["dead"] == "0" for p in ours), [p for p in ours if p["dead"] != "0"]
    if not foreign_ok:
        # Besides the agents only the swarm's placeholder (our cluster tag, no agent).
        strays = [p for p in panes if p["cluster"] != name]
        assert not strays, f"untagged panes left in the session: {strays}"
        placeholders = [p for p in panes if p["cluster"] == name and not p["agent"]]
        assert len(placeholders) <= 1, placeholders
    state = read_state(swarm_dir, name)
    agents = state["agents"]
    assert isinstance(agents, dict)
    assert sorted(agents) == sorted(ids), "agents in state.json"
    assert {a: e["pane_id"] for a, e in agents.items()} == {p["agent"]: p["pane_id"]
                                                          for p in ours}
    assert_runs_valid(swarm_dir, name)


def assert_down(sock: str, name: str, swarm_dir: pathlib.Path) -> None:
    assert tagged_agents(sock, name) == []
    state = read_state(swarm_dir, name)
    assert state["agents"] == {}
    assert_runs_valid(swarm_dir, name)


def record_figures(test: str, figures: Mapping[str, float | int]) -> None:
    """Keep this test's figures for FIGURES.md when SWARM_FAULTS_FIGURES_DIR is set."""
    directory = os.environ.get(FIGURES_ENV)
    line = f"FIGURES {test}: {json.dumps(dict(figures), sort_keys=True)}"
    print(line)
    if directory:
        os.makedirs(directory, exist_ok=True)
        safe = "".join(c if c.isalnum() else "_" for c in test)
        with open(os.path.join(directory, f"{safe}.json"), "w", encoding="utf-8") as handle:
            json.dump({"test": test, **figures}, handle)
