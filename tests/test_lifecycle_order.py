"""Ordering, readiness and initial prompts, end to end on real tmux."""

from __future__ import annotations

import json
import os
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


def recorder(directory: pathlib.Path, received: pathlib.Path, first: str = "") -> str:
    """The argv (YAML flow list) of an agent that runs the Python `first`, prints its
    prompt sign, then appends each line it reads to `received`."""
    script = directory / "recorder.py"
    script.write_text(f"import sys, time, pathlib\n{first}\nprint('echo>', flush=True)\n"
                      f"for line in sys.stdin: open({str(received)!r},'a').write(line)")
    return f"[{PY}, -u, {str(script)!r}]"


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
    assert ("error: slow did not become ready (no match within 1s); the end of its output:"
            in result.err)
    assert "still warming up" in result.err
    assert "after" in result.err and "not started: slow not ready" in result.out
    as_json = json.loads(invoke("-L", str(server.socket_name), "up", spec, "--wait",
                                "--replace", "slow", "--json").out)
    assert as_json["ok"] is False and as_json["not_ready"] == ["slow"]
    assert "still warming up" in as_json["last_output"]["slow"]


def test_a_silent_agent_not_ready_by_the_timeout_says_why_and_that_it_printed_nothing(
    server: Server, tmp_path: pathlib.Path
) -> None:
    spec = write_spec(tmp_path / "s.yaml", """\
mute:
  command: sleep 600
  ready: {pattern: 'never printed', timeout_s: 30}
""")
    result = invoke("-L", str(server.socket_name), "up", spec, "--wait", "--timeout", "1")
    assert result.code == 1
    assert "error: mute did not become ready (--timeout 1s reached); it printed nothing\n" \
        in result.err


def test_initial_prompt_arrives_once(server: Server, tmp_path: pathlib.Path) -> None:
    received = tmp_path / "received"
    spec = write_spec(tmp_path / "s.yaml", f"""\
repl:
  command: {recorder(tmp_path, received)}
  ready: {{pattern: 'echo>', timeout_s: 20}}
  prompt: hello agent
""")
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", spec).code == 0
    wait_until(lambda: received.exists() and "hello agent" in received.read_text(),
               message="prompt received")
    assert invoke("-L", sock, "up", spec).code == 0
    assert received.read_text().splitlines() == ["hello agent"]


@pytest.mark.parametrize("edit", ["prompt", "prompt_file", "prompt_file, records lost"])
def test_an_edited_prompt_reaches_the_next_restart_without_a_restart_now(
    server: Server, tmp_path: pathlib.Path, edit: str
) -> None:
    """README: `prompt` and `ready` apply without a restart. The pane keeps the prompt its
    supervisor sends after a restart: `up` rewrites it, also when only the prompt file's
    text changed (not part of the spec's own bytes)."""
    received = tmp_path / "received"
    (tmp_path / "prompt.txt").write_text("old words")
    source = "prompt_file: prompt.txt" if "prompt_file" in edit else "prompt: old words"
    spec = write_spec(tmp_path / "s.yaml", f"""\
repl:
  command: {recorder(tmp_path, received)}
  ready: {{pattern: 'echo>', timeout_s: 20}}
  restart: always
  backoff: {{initial_s: 0.1}}
  {source}
""")
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", spec).code == 0
    wait_until(lambda: received.exists() and received.read_text() == "old words\n")
    if edit.startswith("prompt_file"):
        (tmp_path / "prompt.txt").write_text("new words")
    if edit.endswith("records lost"):  # or written by a version without prompt digests
        for state in pathlib.Path(os.environ["AI_SWARM_DIR"]).glob("*/state.json"):
            state.unlink()
    else:
        pathlib.Path(spec).write_text(pathlib.Path(spec).read_text().replace("old", "new"))
    status = json.loads(invoke("-L", sock, "status", spec, "--json").out)
    [agent] = status["agents"]
    assert agent["sync"] == "in-sync"  # no restart needed...
    assert "0 replaced" in invoke("-L", sock, "up", spec).out  # ...and none made
    os.kill(agent["pid"], 9)
    wait_until(lambda: received.read_text() == "old words\nnew words\n", timeout=20,
               message="the new prompt after the restart")
    assert invoke("-L", sock, "up", spec).code == 0  # in sync, prompts current: no change
    assert received.read_text() == "old words\nnew words\n"


def test_an_initial_prompt_never_sent_is_owed_by_the_next_up(
    server: Server, tmp_path: pathlib.Path
) -> None:
    """Not ready in time (or an `up` interrupted before): the agent is in sync, but its
    prompt was never sent; the next `up` sends it once it is ready, and only once."""
    received, ready = tmp_path / "received", tmp_path / "ready"
    late = (f"print('booting', flush=True); time.sleep(2); print('go', flush=True); "
            f"pathlib.Path({str(ready)!r}).touch()")
    spec = write_spec(tmp_path / "s.yaml", f"""\
late:
  command: {recorder(tmp_path, received, late)}
  ready: {{pattern: '^go$', timeout_s: 1}}
  prompt: owed words
""")
    sock = str(server.socket_name)
    first = invoke("-L", sock, "up", spec)
    assert first.code == 1 and "initial prompt not sent" in first.err
    wait_until(ready.exists, message="the agent ready, late")
    second = invoke("-L", sock, "up", spec)
    assert second.code == 0, second.err
    assert "0 created, 0 replaced, 0 removed, 1 unchanged" in second.out
    wait_until(lambda: received.exists() and received.read_text() == "owed words\n")
    assert invoke("-L", sock, "up", spec).code == 0  # paid: not sent again
    assert received.read_text() == "owed words\n"


def test_a_running_dependency_must_be_ready_too(server: Server, tmp_path: pathlib.Path) -> None:
    sock = str(server.socket_name)
    spec = write_spec(tmp_path / "s.yaml", """\
db:
  command: sh -c 'echo booting; sleep 600'
  ready: {pattern: 'never printed', timeout_s: 1}
app:
  command: sleep 600
  depends_on: [db]
""")
    first = invoke("-L", sock, "up", spec)
    assert first.code == 1 and "not started: db not ready" in first.out
    second = invoke("-L", sock, "up", spec)  # db kept, still not ready: app still waits
    assert second.code == 1 and "not started: db not ready" in second.out
    agents = json.loads(invoke("-L", sock, "status", spec, "--json").out)["agents"]
    assert {a["id"]: a["sync"] for a in agents} == {"db": "in-sync", "app": "missing"}
    wait = invoke("-L", sock, "up", spec, "--no-prune", "--wait", "--json")
    assert json.loads(wait.out)["not_ready"] == ["db"]


def test_a_kept_dependency_that_is_ready_lets_its_dependent_start(
    server: Server, tmp_path: pathlib.Path
) -> None:
    sock = str(server.socket_name)
    body = """\
db:
  command: sh -c 'echo db ready; sleep 600'
  ready: {pattern: 'db ready', timeout_s: 20}
"""
    spec = write_spec(tmp_path / "s.yaml", body)
    assert invoke("-L", sock, "up", spec, "--wait").code == 0
    write_spec(tmp_path / "s.yaml", body + "app:\n  command: sleep 600\n  depends_on: [db]\n")
    result = invoke("-L", sock, "up", spec, "--wait")
    assert result.code == 0, result.out + result.err
    assert "0 created" not in result.out and "1 unchanged" in result.out


def test_a_quiet_agent_without_a_pattern_still_gets_its_prompt(
    server: Server, tmp_path: pathlib.Path
) -> None:
    received = tmp_path / "received"
    spec = write_spec(tmp_path / "s.yaml", f"""\
quiet:
  command: sh -c 'cat > {received}'
  prompt: hello quiet one
""")
    result = invoke("-L", str(server.socket_name), "up", spec)
    assert result.code == 0, result.err
    wait_until(lambda: received.exists() and "hello quiet one" in received.read_text(),
               message="the prompt to arrive")


@pytest.mark.parametrize(("db_code", "restart", "args", "why"), [
    pytest.param("import time; time.sleep(30); print('db ready'); time.sleep(600)", "never",
                 ["--wait", "--timeout", "2"], "--timeout 2s reached", id="run-timeout"),
    pytest.param("import time, sys; print('booting'); time.sleep(0.5); sys.exit(2)", "never",
                 [], "exited with code 2", id="dependency-exited"),
    pytest.param("import time, sys; print('booting'); time.sleep(0.5); sys.exit(0)",
                 "on-failure", [], "exited with code 0", id="exited-0-under-on-failure"),
])
def test_a_dependency_is_not_waited_for_past_what_can_come(
    server: Server, tmp_path: pathlib.Path, db_code: str, restart: str, args: list[str],
    why: str
) -> None:
    """Not db's 60 s ready timeout: the run's own --timeout, or db's exit, ends the wait;
    the dependent's error says which."""
    import time

    spec = write_spec(tmp_path / "s.yaml", f"""\
db:
  command: {json.dumps([PY, "-u", "-c", db_code])}
  ready: {{pattern: 'db ready', timeout_s: 60}}
  restart: {restart}
api:
  command: sleep 600
  depends_on: [db]
""")
    began = time.monotonic()
    result = invoke("-L", str(server.socket_name), "up", spec, *args)
    assert time.monotonic() - began < 12
    assert result.code == 1
    assert f"not started: db not ready ({why})" in result.out


def up_waiting_for(server: Server, tmp_path: pathlib.Path, code: str, pattern: str, *,
                   extra: str = "") -> str:
    """`up --wait` of one agent `db` running Python `code`, ready on `pattern`: it must
    succeed. The spec's path."""
    spec = write_spec(tmp_path / "s.yaml", f"""\
db:
  command: {json.dumps([PY, "-u", "-c", code])}
  ready: {{pattern: '{pattern}', timeout_s: 20}}
""" + extra)
    result = invoke("-L", str(server.socket_name), "up", spec, "--wait")
    assert result.code == 0, result.out + result.err
    return spec


def test_readiness_matches_a_line_redrawn_across_two_writes(
    server: Server, tmp_path: pathlib.Path
) -> None:
    """`Loading...\\r` then, later, `Server listening\\r\\n`: one line, as a person sees it."""
    code = ("import sys, time; sys.stdout.write('Loading...\\r'); sys.stdout.flush(); "
            "time.sleep(0.5); print('Server listening on 8080', flush=True); time.sleep(600)")
    up_waiting_for(server, tmp_path, code, "^Server listening")


def test_a_banner_followed_by_a_burst_that_rotates_the_log_still_counts(
    server: Server, tmp_path: pathlib.Path
) -> None:
    """READY, then 300 lines through a 4 KB log: the banner is in LOG.1 by the first look."""
    code = ("import time; print('READY'); [print('x' * 60, i) for i in range(300)]; "
            "time.sleep(600)")
    spec = up_waiting_for(server, tmp_path, code, "^READY$",
                          extra="  logs: {max_bytes: 4096, keep: 1}\n")
    # Later, a dependent: db's banner is long gone from its log, but its pane remembers.
    with open(spec, "a", encoding="utf-8") as handle:
        handle.write("  api:\n    command: sleep 600\n    depends_on: [db]\n")
    later = invoke("-L", str(server.socket_name), "up", spec)
    assert later.code == 0, later.out + later.err
    assert "+ create  api" in later.out


@pytest.mark.parametrize("ready", ["  ready: {pattern: 'ready>', timeout_s: 20}\n", ""],
                         ids=["with-pattern", "without"])
def test_a_restart_sends_the_initial_prompt_again(
    server: Server, tmp_path: pathlib.Path, ready: str
) -> None:
    """tmux respawns the agent without swarm-launch: its supervisor sends the prompt."""
    received = tmp_path / "received"
    code = (f"import sys; print('ready>', flush=True); line = sys.stdin.readline(); "
            f"open({str(received)!r}, 'a').write(line); sys.exit(1)")
    spec = write_spec(tmp_path / "s.yaml", f"""\
once:
  command: {json.dumps([PY, "-u", "-c", code])}
  restart: on-failure
  max_restarts: 1
  backoff: {{initial_s: 0.2}}
{ready}  prompt: do the work
""")
    invoke("-L", str(server.socket_name), "up", spec)
    wait_until(lambda: received.exists() and received.read_text().count("\n") == 2,
               timeout=20, message="the prompt, at the start and after the restart")
    assert received.read_text().splitlines() == ["do the work", "do the work"]


def test_a_banner_drawn_by_cursor_moves_counts_as_ready(
    server: Server, tmp_path: pathlib.Path
) -> None:
    """curses ends a row with a carriage return, then moves the cursor down: the banner
    is a line of its own, not overwritten by what is drawn on the next row."""
    spec = write_spec(tmp_path / "s.yaml", """\
        tui:
          command: "printf 'Agent ready\\\\r\\\\033[2B> '; exec cat >/dev/null"
          ready: {pattern: '^Agent ready$', timeout_s: 5}
        """)
    result = invoke("-L", str(server.socket_name), "up", spec, "--wait")
    assert result.code == 0, result.err


def test_up_ends_when_nothing_awaits_a_readiness_watch(
    server: Server, tmp_path: pathlib.Path
) -> None:
    """Readiness is watched for every started agent with a pattern; with no dependent,
    prompt or --wait, `up` ends its watches itself (asyncio.run's clean-up could lose
    their cancellation and wait forever: it did in over half of these runs)."""
    import subprocess

    spec = write_spec(tmp_path / "s.yaml", """\
        b: {command: "echo up; exec sleep 600", replicas: 2, ready: {pattern: up}}
        """)
    for attempt in range(5):
        sock = f"{server.socket_name}-{attempt}"
        try:
            done = subprocess.run([sys.executable, "-m", "swarm_launch", "-L", sock, "up", spec],
                                  capture_output=True, text=True, timeout=30, check=False)
            assert done.returncode == 0, done.stderr
        finally:
            subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, check=False)


@pytest.mark.parametrize("ready", ["  ready: {pattern: '^READY', timeout_s: 30}\n", ""],
                         ids=["with-pattern", "without"])
def test_an_agent_that_crashes_before_it_is_ready_gets_its_prompt_once(
    server: Server, tmp_path: pathlib.Path, ready: str
) -> None:
    """`up`'s watch reads on past the crash into the restart's output: that instance is
    its supervisor's to prompt, not `up`'s too (it got 'PROMPTPROMPT'); and a crash
    the policy restarts is no error of `up` (it said 'agent a has exited', exit 1)."""
    from tests.test_restart import supervise_processes

    received, ran = tmp_path / "received", tmp_path / "ran"
    script = tmp_path / "q.sh"
    script.write_text(f"""\
if [ ! -e {ran} ]; then : > {ran}; echo "transient error"; exit 1; fi
echo READY
while IFS= read -r line; do printf '%s\\n' "[$line]" >> {received}; done
""")
    spec = write_spec(tmp_path / "s.yaml", f"""\
a:
  command: [sh, {str(script)!r}]
  restart: on-failure
  backoff: {{initial_s: 0.5, max_s: 1, factor: 2}}
{ready}  prompt: PROMPT
""")
    result = invoke("-L", str(server.socket_name), "up", spec)
    assert result.code == 0, result.err
    wait_until(lambda: received.exists() and received.read_text(), timeout=20,
               message="the prompt")
    mine = str(server.socket_name).encode()
    wait_until(lambda: not [pid for pid, argv in supervise_processes()
                            if any(mine in word for word in argv)],
               timeout=30, message="the supervisor to finish")
    assert received.read_text() == "[PROMPT]\n"


def test_a_dependency_without_a_pattern_must_be_running(
    server: Server, tmp_path: pathlib.Path
) -> None:
    """Without a pattern, a dependency is ready while it runs: one that exited holds its
    dependent back (api2 was created beside a dead db2). db2 waits for a restart far
    off, so `up` keeps it dead rather than replace it."""
    sock = str(server.socket_name)
    body = """\
db2:
  command: echo starting; exit 4
  restart: on-failure
  backoff: {initial_s: 600}
"""
    spec = write_spec(tmp_path / "s.yaml", body)
    invoke("-L", sock, "up", spec)

    def db2() -> dict[str, object]:
        rows = json.loads(invoke("-L", sock, "status", spec, "--json").out)["agents"]
        return {a["id"]: a for a in rows}["db2"]  # type: ignore[no-any-return]

    wait_until(lambda: db2()["next_restart_at"], message="db2's pending restart")
    write_spec(tmp_path / "s.yaml", body + "api2:\n  command: sleep 1000\n  depends_on: [db2]\n")
    result = invoke("-L", sock, "up", spec)
    assert result.code == 1
    assert "not started: db2 not ready (exited with code 4)" in result.out
    agents = json.loads(invoke("-L", sock, "status", spec, "--json").out)["agents"]
    assert {a["id"]: a["sync"] for a in agents} == {"db2": "in-sync", "api2": "missing"}
