"""`up --watch`: an edit is applied within 2 s; an invalid edit is reported and survived."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from libtmux import Server

from tests.helpers import wait_until

pytestmark = pytest.mark.tmux


def agents(server: Server) -> set[str]:
    result = server.cmd("list-panes", "-s", "-t", "=swarm-w", "-F", "#{@swarm_agent}")
    return {line for line in result.stdout if line}


def test_watch_applies_edits_and_survives_an_invalid_one(
    server: Server, tmp_path: pathlib.Path
) -> None:
    spec = tmp_path / "w.yaml"
    head = "version: 1\nname: w\nagents:\n"
    spec.write_text(head + "  a: {command: sleep 600}\n")
    out = (tmp_path / "out.txt").open("w")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "swarm_launch", "-L", str(server.socket_name), "up", str(spec),
         "--watch"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "watching" in (tmp_path / "out.txt").read_text(), timeout=20)
        assert agents(server) == {"a"}

        spec.write_text(head + "  a: {command: sleep 600}\n  b: {command: sleep 600}\n")
        edited = time.monotonic()
        wait_until(lambda: agents(server) == {"a", "b"}, timeout=5, message="b created")
        assert time.monotonic() - edited < 2.0

        spec.write_text(head + "  a: {command: sleep 600}\n  b: {comand: oops}\n")
        wait_until(lambda: "waiting for a fix" in (tmp_path / "out.txt").read_text(),
                   timeout=5, message="invalid edit reported")
        assert agents(server) == {"a", "b"}
        assert watcher.poll() is None

        spec.write_text(head + "  a: {command: sleep 600}\n")
        wait_until(lambda: agents(server) == {"a"}, timeout=5, message="b removed")
    finally:
        watcher.send_signal(signal.SIGINT)
        code = watcher.wait(timeout=20)
        out.close()
    assert code == 0
    assert agents(server) == {"a"}
    assert "the swarm keeps running" in (tmp_path / "out.txt").read_text()
    assert os.path.exists(spec)
