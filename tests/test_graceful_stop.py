"""After `down` or a replace, no process of the agent survives (checked in /proc)."""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest
from libtmux import Server

from tests.agents import agent
from tests.helpers import invoke, wait_until

pytestmark = pytest.mark.tmux


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def forker_spec(path: pathlib.Path, out: pathlib.Path, role: str) -> str:
    path.write_text(
        "version: 1\nname: tree\nagents:\n  tree:\n"
        f"    command: [{sys.executable}, {agent('forker')}, {out}]\n"
        f"    env: {{ROLE: {role}}}\n    stop: {{signal: TERM, timeout_s: 0.5}}\n")
    return str(path)


def pids_of(out: pathlib.Path) -> list[int]:
    wait_until(out.exists, message="forker wrote its pids")
    pids: list[int] = json.loads(out.read_text())["pids"]
    assert all(alive(p) for p in pids)
    return pids


@pytest.mark.parametrize("how", ["down", "replace"])
def test_no_process_of_the_agent_survives(
    server: Server, tmp_path: pathlib.Path, how: str
) -> None:
    sock, out = str(server.socket_name), tmp_path / "pids.json"
    spec = forker_spec(tmp_path / "s.yaml", out, "one")
    assert invoke("-L", sock, "up", spec).code == 0
    pids = pids_of(out)
    os.unlink(out)
    if how == "down":
        assert invoke("-L", sock, "down", spec).code == 0
    else:
        result = invoke("-L", sock, "up", forker_spec(tmp_path / "s.yaml", out, "two"))
        assert result.code == 0, result.err
        assert "spec changed: env" in result.out
    assert [p for p in pids if alive(p)] == []
    if how == "replace":  # its replacement resists the server's SIGHUP just as well
        assert invoke("-L", sock, "down", spec).code == 0


def test_a_pid_reused_by_another_process_is_not_killed() -> None:
    """An agent's pid, freed while `down` waits for the agent to stop, may be given to any
    new process (another swarm's pane or log writer): the rescan before SIGKILL must
    recognise it is not the agent any more."""
    import subprocess

    from swarm_launch import tmux_manager

    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)  # leads a session
    try:
        pid = stranger.pid
        wait_until(lambda: alive(pid))
        seen = tmux_manager._start_times({pid})
        assert tmux_manager._members({pid}, set(), seen) == {pid}
        reused = {pid: str(int(seen[pid]) - 1).encode()}  # an earlier process had this pid
        assert tmux_manager._members({pid}, set(), reused) == set()
        assert tmux_manager._members(set(), {pid}, {}) == set()  # a dead pane's pid, reused
    finally:
        stranger.kill()
        stranger.wait()
