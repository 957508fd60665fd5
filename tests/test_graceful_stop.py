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
