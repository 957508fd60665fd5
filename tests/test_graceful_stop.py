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


@pytest.mark.parametrize("how", ["down", "replace"])
def test_a_restart_policy_does_not_bring_back_an_agent_being_stopped(
    server: Server, tmp_path: pathlib.Path, how: str
) -> None:
    """SIGTERM makes `bee` exit at once; its policy would restart it during `slow`'s
    graceful wait, in a process the stop never saw, deaf to kill-pane's SIGHUP: it would
    outlive `down`, or run twice after a replace. The stop removes the policy first."""
    sock, pids, spec = str(server.socket_name), tmp_path / "pids", tmp_path / "s.yaml"

    def write(version: int) -> str:
        spec.write_text(
            "version: 1\nname: rearm\ndefaults:\n  stop: {signal: TERM, timeout_s: 2}\n"
            "agents:\n"
            f"  slow: {{command: \"trap '' TERM; while :; do sleep 0.1; done # {version}\"}}\n"
            "  bee:\n"
            f"    command: \"echo $$ >> {pids}; trap '' HUP; exec sleep 100{version}\"\n"
            "    restart: always\n    backoff: {initial_s: 0.1, max_s: 0.1}\n")
        return str(spec)

    assert invoke("-L", sock, "up", write(0)).code == 0
    wait_until(lambda: pids.exists() and pids.read_text().strip(), message="bee started")
    if how == "down":
        assert invoke("-L", sock, "down", str(spec)).code == 0
        started = [int(p) for p in pids.read_text().split()]
        assert [p for p in started if alive(p)] == []
    else:
        result = invoke("-L", sock, "up", write(1))
        assert result.code == 0, result.err
        started = [int(p) for p in pids.read_text().split()]
        assert [p for p in started[:-1] if alive(p)] == []  # only the replacement runs
        assert alive(started[-1])
        assert invoke("-L", sock, "down", str(spec)).code == 0
