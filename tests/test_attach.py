"""`attach` from a real terminal: a pane of another tmux server runs it."""

from __future__ import annotations

import pathlib
import shlex
import subprocess
import sys

import pytest
from libtmux import Server

from tests.helpers import invoke, wait_until

pytestmark = pytest.mark.tmux


def test_attach_opens_the_agents_window(server: Server, tmp_path: pathlib.Path) -> None:
    from libtmux import Server as TmuxServer

    spec = tmp_path / "a.yaml"
    spec.write_text("version: 1\nname: att\nagents:\n  one: {command: sleep 600}\n"
                    "  two: {command: sleep 600}\n")
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", str(spec)).code == 0
    terminal = TmuxServer(socket_name=f"{sock}-outer")
    try:
        command = shlex.join([sys.executable, "-m", "swarm_launch", "-L", sock, "attach",
                              str(spec), "two"])
        terminal.cmd("new-session", "-d", "-x", "120", "-y", "40", command)

        def attached_window() -> str | None:
            clients = server.cmd("list-clients", "-F", "#{window_name}").stdout
            return clients[0] if clients else None

        assert wait_until(attached_window, timeout=20) == "agent-two"
    finally:
        terminal.kill()


def test_attach_to_an_unknown_agent_is_a_clear_error(
    server: Server, tmp_path: pathlib.Path
) -> None:
    spec = tmp_path / "a.yaml"
    spec.write_text("version: 1\nname: att\nagents:\n  one: {command: sleep 600}\n")
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", str(spec)).code == 0
    result = invoke("-L", sock, "attach", str(spec), "nope")
    assert result.code == 1
    assert "nope" in result.err


def test_attach_without_a_terminal_is_a_clear_error(server: Server,
                                                    tmp_path: pathlib.Path) -> None:
    spec = tmp_path / "a.yaml"
    spec.write_text("version: 1\nname: att\nagents:\n  one: {command: sleep 600}\n")
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", str(spec)).code == 0
    done = subprocess.run([sys.executable, "-m", "swarm_launch", "-L", sock, "attach",
                           str(spec), "one"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "attach needs a terminal" in done.stderr and "capture" in done.stderr
    assert "Traceback" not in done.stderr
    assert server.cmd("list-clients").stdout == []
