"""Ordering, readiness and initial prompts, end to end on real tmux."""

from __future__ import annotations

import json
import pathlib
import sys
import textwrap

import pytest
from libtmux import Server

from tests.helpers import invoke, wait_until

pytestmark = pytest.mark.tmux
PY = sys.executable


def write_spec(path: pathlib.Path, body: str) -> str:
    path.write_text("version: 1\nname: life\nagents:\n" + textwrap.indent(body, "  "))
    return str(path)


def stamp_and_wait(stamp: pathlib.Path, before: str = "") -> str:
    """A command that optionally prints `before`, records when it started, then idles."""
    code = (f"import time,sys; {before}"
            f"open({str(stamp)!r},'w').write(repr(time.time())); time.sleep(600)")
    return json.dumps([PY, "-u", "-c", code])


def test_dependent_starts_only_after_dependency_is_ready(
    server: Server, tmp_path: pathlib.Path
) -> None:
    ready_at, app_at = tmp_path / "db", tmp_path / "app"
    db_cmd = stamp_and_wait(ready_at, "time.sleep(0.4); print('db ready', flush=True); ")
    spec = write_spec(tmp_path / "s.yaml", f"""\
app:
  command: {stamp_and_wait(app_at)}
  depends_on: [db]
db:
  command: {db_cmd}
  ready: {{pattern: 'db ready', timeout_s: 20}}
""")
    result = invoke("-L", str(server.socket_name), "up", spec)
    assert result.code == 0, result.err
    wait_until(lambda: app_at.exists() and app_at.read_text(), message="app started")
    assert float(app_at.read_text()) >= float(ready_at.read_text())


def test_readiness_timeout_is_reported_with_the_end_of_output(
    server: Server, tmp_path: pathlib.Path
) -> None:
    spec = write_spec(tmp_path / "s.yaml", f"""\
slow:
  command: {PY} -u -c "print('still warming up'); import time; time.sleep(600)"
  ready: {{pattern: 'never printed', timeout_s: 1}}
after:
  command: sleep 600
  depends_on: [slow]
""")
    result = invoke("-L", str(server.socket_name), "up", spec, "--wait")
    assert result.code == 1
    assert "slow did not become ready" in result.err
    assert "still warming up" in result.err
    assert "after" in result.err and "not started: slow not ready" in result.out


def test_initial_prompt_arrives_once(server: Server, tmp_path: pathlib.Path) -> None:
    received = tmp_path / "received"
    echo = (f"import sys; print('echo>', flush=True)\n"
            f"for line in sys.stdin: open({str(received)!r},'a').write(line)")
    script = tmp_path / "echo.py"
    script.write_text(echo)
    spec = write_spec(tmp_path / "s.yaml", f"""\
repl:
  command: [{PY}, -u, {str(script)!r}]
  ready: {{pattern: 'echo>', timeout_s: 20}}
  prompt: hello agent
""")
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", spec).code == 0
    wait_until(lambda: received.exists() and "hello agent" in received.read_text(),
               message="prompt received")
    assert invoke("-L", sock, "up", spec).code == 0
    assert received.read_text().splitlines() == ["hello agent"]
