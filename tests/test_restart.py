"""Restart policies, run by tmux itself (pane-died hook + supervise.py), on real tmux.

Each agent is `tests/agents/starts.py`: it appends one JSON line per start (time,
pid, chosen env vars) and exits with a given code. Backoffs are a few tenths of a
second; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import pytest
from libtmux import Server

from swarm_launch.model import Backoff, RestartPolicy
from swarm_launch.observed import AgentStatus, PaneState
from swarm_launch.tmux_manager import AgentLaunch, TmuxSwarmManager
from tests.agents import agent
from tests.helpers import invoke, wait_until

pytestmark = pytest.mark.tmux
T = TypeVar("T")
PY = sys.executable
NASTY = "it's \"q\" #{pane_id} $HOME ; ~ `x`"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def manager(server: Server) -> TmuxSwarmManager:
    return TmuxSwarmManager("r", socket_name=server.socket_name)


def policy(mode: str, max_restarts: int = 3, initial: float = 0.2,
           factor: float = 2.0) -> RestartPolicy:
    return RestartPolicy(mode, max_restarts, Backoff(initial, 5.0, factor),  # type: ignore[arg-type]
                         reset_after_s=60.0)


def starter(agent_id: str, out: pathlib.Path, code: int, restart: RestartPolicy,
            env: dict[str, str] | None = None) -> AgentLaunch:
    command = (PY, "-u", agent("starts"), str(out), str(code), *sorted(env or {}))
    return AgentLaunch(agent_id, command, env=env or {}, restart=restart)


def starts(out: pathlib.Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def pane_of(mgr: TmuxSwarmManager, agent_id: str) -> PaneState:
    return next(p for p in run(mgr.observe()) if p.agent_id == agent_id)


def pane_if(mgr: TmuxSwarmManager, agent_id: str,
            condition: Callable[[PaneState], bool]) -> PaneState | None:
    pane = pane_of(mgr, agent_id)
    return pane if condition(pane) else None


def test_on_failure_backs_off_growing_then_gives_up_as_failed(
    server: Server, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A log path with spaces and a '#': it ends the one policy option the hook reads.
    monkeypatch.setenv("AI_SWARM_DIR", str(tmp_path / "swarm  dir #1"))
    manager = TmuxSwarmManager("r", socket_name=server.socket_name)
    out = tmp_path / "starts"
    # Backoffs 0.5, 1 and 2 s: each step (0.5, then 1 s) is wider than the jitter a loaded
    # machine adds to a restart (the hook's Python start-up, the respawn): it failed once
    # under the full suite with 0.2, 0.4 and 0.8 s.
    run(manager.spawn_agents([starter("c", out, 1, policy("on-failure", 3, initial=0.5))]))
    pane = wait_until(lambda: pane_if(manager, "c", lambda p: p.gave_up), timeout=30,
                      message="give up")
    times = [s["t"] for s in starts(out)]
    assert len(times) == 4  # the first start and 3 restarts
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0 and gaps[2] >= 2.0, gaps
    assert gaps[0] < gaps[1] < gaps[2], gaps
    assert (pane.status, pane.exit_code, pane.restarts, pane.dead) == (
        AgentStatus.FAILED, 1, 3, True)
    assert pane.next_restart_at is None
    log = pathlib.Path(manager.log_path("c")).read_text()
    assert log.count("started") >= 4
    assert "exited with code 1; gave up after 3 restarts" in log.splitlines()[-1]


def test_exit_0_under_on_failure_is_not_restarted_but_always_restarts_both(
    manager: TmuxSwarmManager, tmp_path: pathlib.Path
) -> None:
    ok, always0, always1 = tmp_path / "ok", tmp_path / "a0", tmp_path / "a1"
    run(manager.spawn_agents([
        starter("ok", ok, 0, policy("on-failure")),
        starter("a0", always0, 0, policy("always", 2, initial=0.1)),
        starter("a1", always1, 1, policy("always", 2, initial=0.1)),
    ]))
    # Same backoff: by the time `always` has restarted twice, on-failure would have once.
    wait_until(lambda: pane_of(manager, "a0").gave_up and pane_of(manager, "a1").gave_up,
               timeout=20, message="always agents to use their restarts")
    assert len(starts(always0)) == 3 and len(starts(always1)) == 3
    # Given up, it reads FAILED whatever its last exit code (README), 0 included.
    assert (pane_of(manager, "a0").status, pane_of(manager, "a0").exit_code) == (
        AgentStatus.FAILED, 0)
    pane = pane_of(manager, "ok")
    assert len(starts(ok)) == 1
    assert (pane.status, pane.restarts, pane.next_restart_at, pane.gave_up) == (
        AgentStatus.STOPPED, 0, None, False)


def test_env_with_quotes_and_formats_is_intact_after_restarts(
    manager: TmuxSwarmManager, tmp_path: pathlib.Path
) -> None:
    out = tmp_path / "starts"
    env = {"NASTY": NASTY, "PLAIN": "x"}
    run(manager.spawn_agents([starter("e", out, 1, policy("on-failure", 2, 0.1), env)]))
    wait_until(lambda: len(starts(out)) == 3, timeout=20, message="two restarts")
    assert [s["env"] for s in starts(out)] == [env] * 3


def test_secrets_in_the_environment_of_a_server_started_earlier_do_not_reach_agents(
    server: Server, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user started their server from a shell that exported a key: tmux hands it
    to every new pane, unless our session removes it."""
    subprocess.run(["tmux", "-L", str(server.socket_name), "new-session", "-d", "-s", "work",
                    "sleep 600"], check=True, env={**os.environ, "FOO_API_KEY": "sk-server"})
    monkeypatch.setenv("FOO_API_KEY", "sk-shell")
    mgr = TmuxSwarmManager("s", socket_name=server.socket_name)
    bare, given = tmp_path / "bare", tmp_path / "given"
    run(mgr.spawn_agents([
        AgentLaunch("bare", (PY, agent("starts"), str(bare), "0", "FOO_API_KEY")),
        AgentLaunch("given", (PY, agent("starts"), str(given), "0", "FOO_API_KEY"),
                    env={"FOO_API_KEY": "from-spec"}),
    ]))
    wait_until(lambda: starts(bare) and starts(given), message="both agents ran")
    assert starts(bare)[0]["env"] == {"FOO_API_KEY": None}
    assert starts(given)[0]["env"] == {"FOO_API_KEY": "from-spec"}


def test_a_restart_finds_the_program_on_the_launchers_path(
    server: Server, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's server started before the program was on PATH (a venv, ~/bin): the
    first start gets the launcher's PATH from tmux, and so must every restart."""
    subprocess.run(["tmux", "-L", str(server.socket_name), "new-session", "-d", "-s", "work",
                    "sleep 600"], check=True, env={**os.environ, "PATH": "/usr/bin:/bin"})
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "mytool").write_text(f"#!/bin/sh\nexec {PY} {agent('starts')} \"$@\"\n")
    (tools / "mytool").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    out, mgr = tmp_path / "starts", TmuxSwarmManager("p", socket_name=server.socket_name)
    run(mgr.spawn_agents([AgentLaunch("t", ("mytool", str(out), "1"),
                                      restart=policy("on-failure", 2, 0.1))]))
    wait_until(lambda: pane_if(mgr, "t", lambda p: p.gave_up), timeout=20, message="gave up")
    assert len(starts(out)) == 3  # the first start and both restarts ran the program


def test_secret_named_vars_of_the_launcher_do_not_reach_agents(
    server: Server, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOO_API_KEY", "sk-leaked")
    monkeypatch.setenv("MY_Token", "t-leaked")
    monkeypatch.setenv("SWARM_HARMLESS", "kept")
    mgr = TmuxSwarmManager("h", socket_name=server.socket_name)  # our runner starts tmux
    bare, given = tmp_path / "bare", tmp_path / "given"
    run(mgr.spawn_agents([
        AgentLaunch("bare", (PY, agent("starts"), str(bare), "0",
                             "FOO_API_KEY", "MY_Token", "SWARM_HARMLESS")),
        AgentLaunch("given", (PY, agent("starts"), str(given), "0", "FOO_API_KEY"),
                    env={"FOO_API_KEY": "from-spec"}),
    ]))
    wait_until(lambda: starts(bare) and starts(given), message="both agents ran")
    assert starts(bare)[0]["env"] == {"FOO_API_KEY": None, "MY_Token": None,
                                      "SWARM_HARMLESS": "kept"}
    server_env = server.cmd("show-environment", "-g").stdout
    assert not any(line.startswith(("FOO_API_KEY=", "MY_Token=")) for line in server_env)
    assert "SWARM_HARMLESS=kept" in server_env
    assert starts(given)[0]["env"] == {"FOO_API_KEY": "from-spec"}


def test_replace_during_a_pending_restart_leaves_no_duplicate(
    manager: TmuxSwarmManager, tmp_path: pathlib.Path
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    run(manager.spawn_agents([starter("p", old, 1, policy("on-failure", 3, initial=1.0))]))
    pending = wait_until(lambda: pane_if(manager, "p", lambda p: p.next_restart_at is not None),
                         message="restart pending")
    run(manager.kill_agent("p"))
    run(manager.spawn_agents([AgentLaunch("p", (PY, agent("argv_env"), str(new)))]))
    wait_until(lambda: not supervisors(pending.pane_id), timeout=10,
               message="the old supervisor to exit")
    panes = [p for p in run(manager.observe()) if p.agent_id == "p"]
    assert len(panes) == 1 and panes[0].pane_id != pending.pane_id
    assert not panes[0].dead and len(starts(old)) == 1


def test_a_stream_follows_an_agent_across_its_restarts_until_it_is_dead_for_good(
    manager: TmuxSwarmManager,
) -> None:
    """Streams made before the agents start, so their first lines are in them too. The
    backoff outlasts the stream's look at a quiet agent (every second): it sees the
    restart pending. An exit its policy does not restart ends the stream at once."""
    program = "print('ran')\nraise SystemExit({})"
    crasher = AgentLaunch("c", (PY, "-u", "-c", program.format(3)),
                          restart=policy("on-failure", max_restarts=1, initial=1.5))
    finisher = AgentLaunch("f", (PY, "-u", "-c", program.format(0)),
                           restart=policy("on-failure"))

    async def to_the_end(stream: AsyncIterator[str]) -> list[str]:
        return [text async for text in stream]

    async def follow() -> list[list[str]]:
        streams = [manager.stream_agent_output(a, poll_interval=0.02) for a in ("c", "f")]
        await manager.spawn_agents([crasher, finisher])
        return await asyncio.gather(*map(to_the_end, streams))

    crashed, finished = run(asyncio.wait_for(follow(), 30))
    assert crashed.count("ran") == 2
    assert "gave up after 1 restarts" in crashed[-1]
    assert finished[-1] == "ran"


def supervisors(pane_id: str) -> list[int]:
    """pids of supervise.py processes watching `pane_id`."""
    return [pid for pid, argv in supervise_processes() if pane_id.encode() in argv]


def test_counters_survive_the_launcher_exiting(server: Server, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "starts"
    spec = tmp_path / "s.yaml"
    command = json.dumps([PY, "-u", agent("starts"), str(out), "7"])
    spec.write_text("version: 1\nname: crash\nagents:\n" + textwrap.indent(f"""\
crasher:
  command: {command}
  restart: on-failure
  max_restarts: 2
  backoff: {{initial_s: 0.3, max_s: 2, factor: 2}}
""", "  "))
    socket = str(server.socket_name)
    done = subprocess.run([PY, "-m", "swarm_launch", "-L", socket, "up", str(spec)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr
    pending = wait_until(lambda: status_row(socket, spec)["next_restart_at"] and
                         status_row(socket, spec), message="a pending restart in status")
    assert pending["status"] == "failed" and pending["exit_code"] == 7
    row = wait_until(lambda: (r := status_row(socket, spec))["restarts"] == 2
                     and r["next_restart_at"] is None and r["status"] == "failed" and r,
                     timeout=20, message="two restarts, then give up")
    assert row["exit_code"] == 7 and len(starts(out)) == 3
    text = invoke("-L", socket, "status", str(spec)).out
    assert "crasher" in text and "failed" in text


def status_row(socket: str, spec: pathlib.Path) -> dict[str, Any]:
    result = invoke("-L", socket, "status", str(spec), "--json")
    assert result.code == 0, result.err
    row: dict[str, Any] = json.loads(result.out)["agents"][0]
    return row


def test_one_watcher_process_per_batch_not_per_agent(manager: TmuxSwarmManager,
                                                    server: Server) -> None:
    """A batch with restart policies starts one `supervise watch` for all its agents; a
    batch without starts none.

    Counted as the server's children that are neither panes nor log pipes: a `run-shell -b`
    job is forked before the client gets its reply, so a watcher cannot hide from this
    count before its exec. (Matching argv alone was flaky: the watcher's own `tmux
    list-panes` child shows the watcher's argv until it execs.)"""
    run(manager.spawn_agents([AgentLaunch(f"w{i}", "sleep 60", restart=policy("on-failure"))
                              for i in range(4)]))
    server_pid = int(server.cmd("display-message", "-p", "#{pid}").stdout[0])

    def jobs() -> list[int]:
        panes = {int(pid) for pid in server.cmd("list-panes", "-a", "-F",
                                                 "#{pane_pid}").stdout}
        forked = [pid for pid in children(server_pid) if pid not in panes]
        # A child still showing the server's argv has not exec'd yet: look again.
        if any(cmdline(pid) == cmdline(server_pid) for pid in forked):
            return []
        return [pid for pid in forked if b"logpipe" not in cmdline(pid)]

    def watchers() -> list[int]:
        return [pid for pid, argv in supervise_processes() if pid in jobs() and b"watch" in argv]

    first = wait_until(lambda: len(watchers()) == 1 and watchers(),
                       message="the batch's watcher")
    assert wait_until(jobs, message="the server's children to exec") == first
    run(manager.spawn_agents([AgentLaunch("plain", "sleep 60")]))  # never: nothing to watch
    assert wait_until(jobs, message="the server's children to exec") == first


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def children(parent: int) -> list[int]:
    """pids whose parent is `parent`, from /proc."""
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        if int(stat[stat.rfind(b")") + 2:].split()[1]) == parent:
            found.append(int(name))
    return found


def supervise_processes() -> list[tuple[int, list[bytes]]]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        argv = cmdline(int(name)).split(b"\0")
        if any(word.endswith(b"supervise.py") for word in argv):
            found.append((int(name), argv))
    return found


def test_a_supervisor_waiting_out_a_long_backoff_ends_when_its_pane_is_killed(
    manager: TmuxSwarmManager, server: Server, tmp_path: pathlib.Path
) -> None:
    """Its window closed by hand: the supervisor slept the whole backoff (600 s here)
    before it noticed, ~12 MB each meanwhile."""
    run(manager.spawn_agents([starter("l", tmp_path / "starts", 1,
                                      policy("on-failure", 3, initial=600.0))]))
    pending = wait_until(lambda: pane_if(manager, "l", lambda p: p.next_restart_at is not None),
                         message="restart pending")
    assert supervisors(pending.pane_id)
    server.cmd("kill-pane", "-t", pending.pane_id)
    # It checks each second (supervise.PENDING_CHECK_S); 10 s of a 600 s backoff leave room
    # for a tmux and an interpreter slowed by a loaded machine (3 s did not, under load).
    wait_until(lambda: not supervisors(pending.pane_id), timeout=10,
               message="the supervisor to exit")


def sessions_of(leader: int) -> list[int]:
    """Running processes in the session led by `leader` (alive or not)."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader and fields[0] not in (b"Z", b"X"):
            found.append(int(name))
    return found


def test_a_restart_ends_what_the_dead_instance_left_running(
    manager: TmuxSwarmManager
) -> None:
    """A child deaf to SIGHUP outlived its killed parent: it ran beside the new instance,
    and `down`, looking from the new pid, never found it."""
    run(manager.spawn_agents([AgentLaunch(
        "k", "trap '' HUP; echo start; sleep 777; echo end", restart=policy("on-failure"))]))
    first = wait_until(lambda: pane_if(manager, "k", lambda p: len(
        sessions_of(p.pid or 0)) == 2), message="sh and its sleep")
    assert first.pid
    os.kill(first.pid, 9)
    wait_until(lambda: pane_if(manager, "k", lambda p: p.restarts == 1 and not p.dead),
               timeout=10, message="the restart")
    wait_until(lambda: not sessions_of(first.pid or 0), timeout=10,
               message="the old sleep to end")
    # The new instance is as deaf to SIGHUP: the server's teardown would leave it behind.
    run(manager.kill_agent("k", graceful=True))


def test_a_stop_called_off_gives_the_agent_its_restart_policy_back(
    manager: TmuxSwarmManager, tmp_path: pathlib.Path
) -> None:
    """A stop disarms the policy first; cancelled during its graceful wait (Ctrl-C, a
    wait_for), it must not leave the agent running unsupervised, never restarted again."""
    stubborn = ("sh", "-c", "trap '' TERM; while :; do sleep 0.1; done")
    run(manager.spawn_agents([AgentLaunch("s", stubborn, restart=policy("always", 5, 0.2))]))
    wait_until(lambda: pane_if(manager, "s", lambda p: p.supervised and bool(p.pid)))

    async def call_off_the_stop() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(manager.kill_agent("s", graceful=True), 1.0)

    run(call_off_the_stop())
    pane = pane_of(manager, "s")
    assert not pane.dead and pane.supervised and pane.pid  # running, supervised again
    os.kill(pane.pid, 9)  # dies by hand: its policy restarts it
    restarted = wait_until(lambda: pane_if(manager, "s", lambda p: p.restarts == 1
                                            and not p.dead), timeout=20, message="a restart")
    assert restarted.pane_id == pane.pane_id and restarted.pid != pane.pid


def test_a_stop_called_off_at_any_moment_never_leaves_an_agent_unsupervised(
    manager: TmuxSwarmManager,
) -> None:
    """Cancelled 0, 1, 2... ms into it (before, during and after the disarm's tmux call):
    the agent is either stopped, or running with its policy."""
    stubborn = ("sh", "-c", "trap '' TERM; while :; do sleep 0.1; done")

    async def stop_called_off_after(delay_s: float, pane_id: str) -> None:
        stop = asyncio.ensure_future(manager.kill_panes([pane_id], graceful=True,
                                                        timeout_s=1.0))
        await asyncio.sleep(delay_s)
        stop.cancel()
        with pytest.raises(asyncio.CancelledError):  # never lost (see tmux_manager._within)
            await stop

    for step in range(16):
        pane = _started_supervised(manager, f"s{step}", stubborn)
        run(stop_called_off_after(step / 1000, pane.pane_id))
        panes = {p.agent_id: p for p in run(manager.observe())}
        if pane.agent_id in panes:  # not stopped: then supervised, as before the stop
            assert panes[pane.agent_id].supervised, f"unsupervised, cancelled at {step} ms"


def _started_supervised(manager: TmuxSwarmManager, agent_id: str,
                        command: tuple[str, ...]) -> PaneState:
    run(manager.spawn_agents([AgentLaunch(agent_id, command,
                                          restart=policy("always", 5, 0.2))]))
    return wait_until(lambda: pane_if(manager, agent_id,
                                      lambda p: p.supervised and bool(p.pid)))
