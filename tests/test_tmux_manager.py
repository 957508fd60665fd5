"""TmuxSwarmManager against a real tmux server, an isolated one per test."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from libtmux import Server

from swarm_launch.exceptions import (
    AgentNotFoundError,
    PaneDeadError,
    SessionCreationError,
    SessionNotFoundError,
    TmuxTimeoutError,
)
from swarm_launch.observed import AgentStatus
from swarm_launch.tmux_manager import (
    AgentLaunch,
    AgentSpawnError,
    TmuxSwarmManager,
    observe_server,
)
from swarm_launch.tmux_script import window_line
from tests.agents import agent
from tests.helpers import invoke, wait_until

pytestmark = pytest.mark.tmux
T = TypeVar("T")
PY = (sys.executable, "-u")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def manager(server: Server) -> TmuxSwarmManager:
    mgr = TmuxSwarmManager("t", socket_name=server.socket_name)
    run(mgr.start())
    return mgr


def statuses(mgr: TmuxSwarmManager) -> dict[str, str]:
    return {a: i["status"] for a, i in mgr.get_session_info()["agents"].items()}


def read_json(path: pathlib.Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def test_start_creates_detached_session_with_only_the_placeholder(
        manager: TmuxSwarmManager, server: Server) -> None:
    assert server.has_session(manager.session_name)
    panes = run(manager.observe())
    assert [(p.window_index, p.cluster, p.agent_id) for p in panes] == [(0, "t", "")]
    assert manager.list_agents() == []


def test_the_placeholder_says_what_it_is_is_no_shell_and_ignores_ctrl_c(
        manager: TmuxSwarmManager, server: Server) -> None:
    target = "=swarm-t:0"

    def screen() -> str:
        return "\n".join(server.cmd("capture-pane", "-p", "-t", target).stdout)

    wait_until(lambda: "swarm-launch: swarm t; its agents run in the other windows." in screen(),
               message="the placeholder's line")
    pid = server.cmd("display-message", "-p", "-t", target, "#{pane_pid}").stdout[0]
    wait_until(lambda: pathlib.Path(f"/proc/{pid}/comm").read_text().strip() == "sleep",
               message="the placeholder to become a bare sleep")
    ignored = next(line for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("SigIgn:"))
    assert int(ignored.split()[1], 16) & (1 << (signal.SIGINT - 1))  # inherited across exec
    server.cmd("send-keys", "-t", target, "C-c")
    server.cmd("send-keys", "-t", target, "-l", "echo typed")
    server.cmd("send-keys", "-t", target, "Enter")
    assert server.cmd("display-message", "-p", "-t", target, "#{pane_dead}").stdout == ["0"]
    assert pathlib.Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"


def test_spawn_then_list_and_info(manager: TmuxSwarmManager) -> None:
    pane = run(manager.spawn_agent("a", "sleep 60"))
    assert (pane.agent_id, pane.status) == ("a", AgentStatus.RUNNING)
    assert pane.pane_id.startswith("%") and pane.pane.pane_id == pane.pane_id
    assert manager.list_agents() == ["a"]
    info = manager.get_session_info()["agents"]["a"]
    assert info["pane_id"] == pane.pane_id and info["status"] == "running" and info["pid"]


def test_an_agent_s_libtmux_pane_is_filled_in(manager: TmuxSwarmManager) -> None:
    pane = run(manager.spawn_agent("a", "sleep 60"))
    pid = manager.get_session_info()["agents"]["a"]["pid"]
    assert pane.pane.pane_pid == str(pid)
    assert pane.pane.window.window_id == pane.window_id


def test_window_is_named_and_tagged(manager: TmuxSwarmManager, server: Server) -> None:
    run(manager.spawn_agents([AgentLaunch("a", "sleep 60", config_hash="h1")]))
    out = server.cmd("list-panes", "-s", "-t", "=swarm-t", "-F",
                     "#{window_name} #{@swarm_cluster} #{@swarm_agent} #{@swarm_hash} "
                     "#{remain-on-exit}").stdout
    assert "agent-a t a h1 on" in out


def test_spawn_creates_the_session_when_missing(server: Server) -> None:
    mgr = TmuxSwarmManager("fresh", socket_name=server.socket_name)
    run(mgr.spawn_agents([AgentLaunch("a", "sleep 60"), AgentLaunch("b", "sleep 60")]))
    assert mgr.list_agents() == ["a", "b"]
    assert [p.window_index for p in run(mgr.observe())] == [0, 1, 2]


def test_id_in_use_is_refused(manager: TmuxSwarmManager) -> None:
    run(manager.spawn_agent("a", "sleep 60"))
    with pytest.raises(SessionCreationError, match="already in use"):
        run(manager.spawn_agent("a", "sleep 60"))


def test_the_id_of_an_exited_agent_is_refused_saying_what_frees_it(
        manager: TmuxSwarmManager) -> None:
    run(manager.spawn_agent("a", "exit 3"))
    wait_until(lambda: statuses(manager) == {"a": "failed"}, message="a to exit")
    with pytest.raises(AgentSpawnError) as caught:
        run(manager.spawn_agent("a", "sleep 60"))
    assert caught.value.failures == {
        "a": "agent a has exited (exit code 3) but its pane remains; kill_agent removes it first"}
    run(manager.kill_agent("a"))
    assert run(manager.spawn_agent("a", "sleep 60")).agent_id == "a"


def test_a_spawn_cancelled_once_tmux_ran_its_script_records_what_tmux_created(
        manager: TmuxSwarmManager, monkeypatch: pytest.MonkeyPatch) -> None:
    """tmux runs a script it has received, whatever the caller does meanwhile: here the
    cancellation comes after tmux answered, before the spawn read the answer."""
    real_tmux = manager._tmux

    async def cancel_between_answer_and_record() -> None:
        answered, resume = asyncio.Event(), asyncio.Event()

        async def slow_to_read(*args: str, **options: Any) -> Any:
            result = await real_tmux(*args, **options)
            if "source-file" in args:
                answered.set()
                await resume.wait()
            return result

        monkeypatch.setattr(manager, "_tmux", slow_to_read)
        spawn = asyncio.ensure_future(manager.spawn_agents([AgentLaunch("a", "sleep 60")]))
        await answered.wait()
        spawn.cancel()
        resume.set()
        with pytest.raises(asyncio.CancelledError):
            await spawn

    run(cancel_between_answer_and_record())
    assert manager.list_agents() == ["a"]
    pane = manager.get_session_info()["agents"]["a"]["pane_id"]
    tracking = read_json(pathlib.Path(manager.data_dir, "swarm_sessions.json"))
    assert [entry["agents"] for entry in tracking["sessions"].values()] == [{"a": pane}]


def test_partial_failure_reports_created_and_failures(
        manager: TmuxSwarmManager, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    before = run(manager.observe())
    # Someone else's window at index 2, created between the spawn's look and its script.
    server.cmd("new-window", "-d", "-t", "=swarm-t:2", "sleep", "60")

    async def looked_too_early() -> tuple[Any, ...]:
        return before

    monkeypatch.setattr(manager, "observe", looked_too_early)
    with pytest.raises(SessionCreationError) as caught:
        run(manager.spawn_agents([AgentLaunch("good", "sleep 60"),
                                  AgentLaunch("bad", "sleep 60")]))
    error: Any = caught.value
    assert [p.agent_id for p in error.created] == ["good"]
    assert error.failures == {"bad": "create window failed: index 2 in use"}


def test_concurrent_spawns_into_one_swarm_all_succeed(server: Server) -> None:
    """From tasks of one manager, and from two managers (as two processes would be): each
    spawn picks window indexes on a fresh look, one at a time."""
    first = TmuxSwarmManager("c", socket_name=server.socket_name)
    second = TmuxSwarmManager("c", socket_name=server.socket_name)

    async def spawn_all() -> None:
        await asyncio.gather(*(mgr.spawn_agent(f"a{i}", "sleep 60")
                               for i, mgr in enumerate([first, second] * 5)))

    run(spawn_all())
    panes = run(first.observe())
    assert sorted(p.agent_id for p in panes if p.agent_id) == sorted(f"a{i}" for i in range(10))
    assert len({p.window_index for p in panes}) == len(panes)


def test_an_id_another_manager_started_is_refused(server: Server) -> None:
    first = TmuxSwarmManager("c", socket_name=server.socket_name)
    second = TmuxSwarmManager("c", socket_name=server.socket_name)
    run(first.start())
    run(first.observe())  # this look predates second's spawn
    run(second.spawn_agent("x", "sleep 60"))
    with pytest.raises(SessionCreationError, match="already in use"):
        run(first.spawn_agent("x", "sleep 60"))
    assert [p.agent_id for p in run(first.observe())].count("x") == 1


def test_missing_workdir_fails_only_its_agent(manager: TmuxSwarmManager,
                                              tmp_path: pathlib.Path) -> None:
    """Like an agent tmux refuses: the others of the batch start; the error names it."""
    bad = AgentLaunch("bad", "sleep 60", workdir=str(tmp_path / "missing"))
    with pytest.raises(AgentSpawnError, match="1 of 2 agents not created: bad: workdir") as exc:
        run(manager.spawn_agents([AgentLaunch("good", "sleep 60"), bad]))
    assert [pane.agent_id for pane in exc.value.created] == ["good"]
    assert list(exc.value.failures) == ["bad"]
    assert manager.list_agents() == ["good"]


def test_crashed_agent_reads_failed_with_exit_code(manager: TmuxSwarmManager) -> None:
    run(manager.spawn_agents([AgentLaunch("crash", "exit 3"), AgentLaunch("ok", "true")]))
    wait_until(lambda: statuses(manager) == {"crash": "failed", "ok": "stopped"})
    assert manager.get_session_info()["agents"]["crash"]["exit_code"] == 3


def test_adopts_an_existing_session(manager: TmuxSwarmManager, server: Server) -> None:
    run(manager.spawn_agent("a", "sleep 60"))
    again = TmuxSwarmManager("t", socket_name=server.socket_name)
    run(again.start())
    assert again.list_agents() == ["a"]
    run(again.kill_agent("a"))
    assert manager.list_agents() == []


def test_capture_joins_wrapped_lines(manager: TmuxSwarmManager) -> None:
    long_line = "x" * 500
    # The agent stays up: this test is about joining wrapped lines, not about the race of
    # a process that exits before tmux has drawn its output (see the log for that).
    run(manager.spawn_agent("p", f"printf 'first\\n{long_line}\\n'; exec sleep 600"))
    wait_until(lambda: long_line in run(manager.capture_agent_output("p")))
    assert run(manager.capture_agent_output("p", lines=1)) == long_line + "\n"


def test_capture_of_a_curses_program_shows_its_screen(manager: TmuxSwarmManager) -> None:
    run(manager.spawn_agent("c", (*PY, agent("curses_app"))))
    wait_until(lambda: "CURSES-SCREEN-OK" in run(manager.capture_agent_output("c")))


def test_unknown_agent_is_an_error(manager: TmuxSwarmManager) -> None:
    with pytest.raises(AgentNotFoundError):
        run(manager.capture_agent_output("nobody"))
    with pytest.raises(AgentNotFoundError):
        run(manager.send_to_agent("nobody", "hi"))


def test_server_gone_is_session_not_found(manager: TmuxSwarmManager, server: Server) -> None:
    run(manager.spawn_agent("a", "sleep 60"))
    server.kill()
    assert run(manager.observe()) == ()
    with pytest.raises(SessionNotFoundError):
        run(manager.send_to_agent("a", "hi"))


def test_a_stopped_server_is_a_timeout_not_a_hang(manager: TmuxSwarmManager,
                                                  server: Server) -> None:
    """A killed client's pipes stay open in the server it handed them to: the wait for
    the client must not wait for them."""
    stuck = TmuxSwarmManager("t", socket_name=manager.socket_name, call_timeout_s=0.3)
    server_pid = int(server.cmd("display-message", "-p", "#{pid}").stdout[0])
    os.kill(server_pid, signal.SIGSTOP)
    try:
        with pytest.raises(TmuxTimeoutError, match=r"did not answer within 0\.3s"):
            run(asyncio.wait_for(stuck.observe(), 5))
    finally:
        os.kill(server_pid, signal.SIGCONT)


def alive(pid: int) -> bool:
    """A process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


@pytest.mark.parametrize("graceful", [True, False])
def test_kill_leaves_no_process_of_a_forker(
        manager: TmuxSwarmManager, tmp_path: pathlib.Path, graceful: bool) -> None:
    out = tmp_path / "pids.json"
    run(manager.spawn_agent("f", (*PY, agent("forker"), str(out))))
    pids = wait_until(lambda: read_json(out), message="forker pids")["pids"]
    run(manager.kill_panes([run(manager.observe())[-1].pane_id], graceful=graceful,
                           timeout_s=0.5))
    assert [pid for pid in pids if alive(pid)] == []
    assert manager.list_agents() == []


def test_graceful_kill_lets_the_agent_exit_on_term(manager: TmuxSwarmManager) -> None:
    pane = run(manager.spawn_agent("a", "sleep 60"))
    pid = manager.get_session_info()["agents"]["a"]["pid"]
    run(manager.kill_agent("a"))
    assert not alive(pid) and pane.pane_id not in {p.pane_id for p in run(manager.observe())}


# Records the signal that stopped it (INT or TERM) in its file, then exits.
SIGNAL_RECORDER = (
    "import pathlib, signal, sys, time\n"
    "out = pathlib.Path(sys.argv[1])\n"
    "def record(number, frame):\n"
    "    out.write_text(signal.Signals(number).name)\n"
    "    sys.exit(0)\n"
    "for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
    "    signal.signal(sig, record)\n"
    "out.write_text('ready')\n"
    "time.sleep(600)\n")


def wait_ready(path: pathlib.Path) -> None:
    wait_until(lambda: path.exists() and path.read_text() == "ready", message=f"{path} ready")


def up_signal_recorders(server: Server, tmp_path: pathlib.Path, *names: str) -> None:
    """`up` a swarm `rec` whose agents stop on `stop: {signal: INT}`, each ready."""
    def entry(name: str) -> str:
        command = json.dumps([*PY, "-c", SIGNAL_RECORDER, str(tmp_path / name)])
        return f"  {name}:\n    command: {command}\n    stop: {{signal: INT, timeout_s: 30}}\n"

    spec = tmp_path / "rec.yaml"
    spec.write_text("version: 1\nname: rec\nagents:\n" + "".join(map(entry, names)))
    result = invoke("-L", str(server.socket_name), "up", str(spec))
    assert result.code == 0, result.err
    for name in names:
        wait_ready(tmp_path / name)


def test_kill_agent_stops_an_agent_up_started_as_its_spec_says(
        server: Server, tmp_path: pathlib.Path) -> None:
    up_signal_recorders(server, tmp_path, "a", "b")
    swarm = TmuxSwarmManager("rec", socket_name=server.socket_name)
    run(swarm.kill_agent("a"))
    assert (tmp_path / "a").read_text() == "SIGINT"
    run(swarm.kill_agent("b", stop_signal="TERM"))  # the caller's choice wins
    assert (tmp_path / "b").read_text() == "SIGTERM"


def test_shutdown_stops_each_agent_as_its_spec_says_unless_told_otherwise(
        server: Server, tmp_path: pathlib.Path) -> None:
    up_signal_recorders(server, tmp_path, "a")
    swarm = TmuxSwarmManager("rec", socket_name=server.socket_name)
    run(swarm.spawn_agent("api", (*PY, "-c", SIGNAL_RECORDER, str(tmp_path / "api"))))
    wait_ready(tmp_path / "api")
    run(swarm.shutdown())
    assert (tmp_path / "a").read_text() == "SIGINT"
    assert (tmp_path / "api").read_text() == "SIGTERM"  # no spec: the default
    up_signal_recorders(server, tmp_path, "c")
    run(swarm.shutdown(stop_signal="HUP", timeout_s=5))
    assert (tmp_path / "c").read_text() == "SIGHUP"


def test_a_stop_signal_unknown_is_refused_before_anything_stops(
        manager: TmuxSwarmManager) -> None:
    run(manager.spawn_agent("a", "sleep 60"))
    with pytest.raises(ValueError, match="unknown signal"):
        run(manager.kill_agent("a", stop_signal="NOPE"))
    assert statuses(manager) == {"a": "running"}


def test_kill_never_touches_foreign_panes(manager: TmuxSwarmManager, server: Server) -> None:
    server.cmd("new-window", "-d", "-t", "=swarm-t:", "sleep", "60")
    foreign = run(manager.observe())[-1]
    run(manager.kill_panes([foreign.pane_id]))
    assert foreign.pid is not None and alive(foreign.pid)


def test_shutdown_removes_session_and_tracking(manager: TmuxSwarmManager,
                                               server: Server) -> None:
    run(manager.spawn_agents([AgentLaunch("a", "sleep 60"), AgentLaunch("b", "sleep 60")]))
    tracking = pathlib.Path(manager.data_dir, "swarm_sessions.json")
    assert len(read_json(tracking)["sessions"]) == 1
    run(manager.shutdown())
    assert not server.has_session(manager.session_name)
    assert read_json(tracking)["sessions"] == {}


def test_a_full_disk_does_not_stop_a_shutdown_midway(
    manager: TmuxSwarmManager, server: Server, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """swarm_sessions.json records what we did; tmux is the truth: failing to record must
    not leave agents running (the session is killed after the panes are)."""
    from swarm_launch import store
    from swarm_launch.exceptions import StoreError

    run(manager.spawn_agent("a", "sleep 60"))

    def full(path: str, change: object, **_: object) -> None:
        raise StoreError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(store, "update_json", full)
    run(manager.shutdown())
    assert not server.has_session(manager.session_name)
    assert "No space left on device" in caplog.text


def test_foreign_window_survives_shutdown(manager: TmuxSwarmManager, server: Server) -> None:
    run(manager.spawn_agent("a", "sleep 60"))
    server.cmd("new-window", "-d", "-t", "=swarm-t:", "-n", "mine", "sleep", "60")
    run(manager.shutdown(graceful=False))
    names = server.cmd("list-windows", "-t", "=swarm-t", "-F", "#{window_name}").stdout
    assert "mine" in names and "agent-a" not in names
    assert os.environ["AI_SWARM_DIR"] == manager.data_dir


def test_another_clusters_agents_survive_shutdown(manager: TmuxSwarmManager,
                                                  server: Server) -> None:
    other = TmuxSwarmManager("other", socket_name=server.socket_name)
    run(other.spawn_agent("x", "sleep 60"))
    run(manager.spawn_agent("x", "sleep 60"))
    run(manager.shutdown())
    assert other.list_agents() == ["x"]


def test_send_to_a_dead_agent_is_an_error(manager: TmuxSwarmManager) -> None:
    run(manager.spawn_agent("d", "true"))
    wait_until(lambda: statuses(manager) == {"d": "stopped"})
    with pytest.raises(PaneDeadError):
        run(manager.send_to_agent("d", "hello"))


def test_observe_server_sees_every_session(manager: TmuxSwarmManager, server: Server) -> None:
    run(manager.spawn_agent("a", "sleep 60"))
    server.cmd("new-session", "-d", "-s", "other", "sleep", "60")
    panes = run(observe_server(socket_name=server.socket_name))
    assert len(panes) == 3 and [p.agent_id for p in panes if p.agent_id] == ["a"]
    assert run(observe_server(socket_name=f"{server.socket_name}-none")) == ()


def test_kill_of_a_dead_agent_reaps_its_leftover_children(
        manager: TmuxSwarmManager, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "child"
    # The child ignores the SIGHUP the kernel sends when the pane's process exits.
    run(manager.spawn_agent("d", f"trap '' HUP; sleep 300 & echo $! > {out}; exit 0"))
    wait_until(lambda: statuses(manager) == {"d": "stopped"} and out.exists()
               and out.read_text().strip())
    child = int(out.read_text())
    assert alive(child)
    run(manager.kill_agent("d"))
    assert not alive(child) and manager.list_agents() == []


def test_a_missing_base_dir_is_refused_before_tmux_starts_elsewhere(
        server: Server, tmp_path: pathlib.Path) -> None:
    mgr = TmuxSwarmManager("nodir", base_dir=str(tmp_path / "missing"),
                           socket_name=server.socket_name)
    with pytest.raises(SessionCreationError, match="missing is not a directory"):
        run(mgr.start())
    assert run(mgr.observe()) == ()


def test_an_argv_command_that_cannot_run_is_refused_with_why(
        manager: TmuxSwarmManager, tmp_path: pathlib.Path) -> None:
    """tmux's child would exit 1 and leave no word of why in the pane or the log."""
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\nsleep 60\n")  # not executable
    with pytest.raises(AgentSpawnError) as caught:
        run(manager.spawn_agents([
            AgentLaunch("typo", ("no-such-program-xyz", "--flag")),
            AgentLaunch("noexec", (str(script),)),
            AgentLaunch("relative", ("./agent.sh",), workdir=str(tmp_path)),
            AgentLaunch("fine", ("sleep", "60")),
            AgentLaunch("shell", "no-such-program-xyz")]))  # sh says so in its log
    assert caught.value.failures == {
        "typo": "command not found: no-such-program-xyz (not on PATH)",
        "noexec": f"command not executable: {script}",
        "relative": "command not executable: ./agent.sh"}
    assert [p.agent_id for p in caught.value.created] == ["fine", "shell"]


def test_a_window_whose_script_line_did_not_finish_is_a_failure_and_removed(
        manager: TmuxSwarmManager, monkeypatch: pytest.MonkeyPatch) -> None:
    """tmux stopping midway through an agent's line (its last command, the DONE marker,
    never ran) leaves a window the spawn must not call created, nor leave behind."""
    monkeypatch.setattr("swarm_launch.tmux_manager.window_line",
                        lambda *args: window_line(*args).rsplit(" ; ", 1)[0])
    with pytest.raises(AgentSpawnError) as caught:
        run(manager.spawn_agent("a", "sleep 60"))
    assert caught.value.created == [] and "window is removed" in caught.value.failures["a"]
    assert [p.window_index for p in run(manager.observe())] == [0]
    assert manager.list_agents() == []


@pytest.mark.parametrize(("field", "launch"), [
    ("command", AgentLaunch("a", ("echo", "caf\udcff"))),
    ("command", AgentLaunch("a", "echo caf\udcff")),
    ("env", AgentLaunch("a", "sleep 60", env={"X": "caf\udcff"})),
    ("env", AgentLaunch("a", "sleep 60", env={"X\udcff": "1"})),
])
def test_a_byte_tmux_reads_as_its_input_s_end_is_refused_before_tmux_is_asked(
        manager: TmuxSwarmManager, field: str, launch: AgentLaunch) -> None:
    with pytest.raises(ValueError, match=f"agent a: its {field} holds a byte 0xff"):
        run(manager.spawn_agents([launch]))
    assert [p.window_index for p in run(manager.observe())] == [0]


def test_up_refuses_an_env_variable_that_is_not_utf8_and_creates_nothing(
        server: Server, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAW", "caf\udcff")  # as Python reads a non-UTF-8 environment
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\nname: raw\nagents:\n  a:\n    command: sleep 60\n"
                    "    env: {X: '${RAW}'}\n")
    result = invoke("-L", str(server.socket_name), "up", str(spec))
    assert result.code == 1, result.err
    assert "${RAW} holds the byte 0xff, which tmux cannot pass" in result.err
    assert not server.has_session("swarm-raw")


def test_stop_settings_recorded_on_another_server_are_not_this_ones(
        server: Server, tmp_path: pathlib.Path) -> None:
    """Pane ids start at %0 on every server: an API agent of the same id in the same pane
    id on another server was stopped with the spec's INT (and its timeout) recorded there."""
    up_signal_recorders(server, tmp_path, "a")
    recorded = run(TmuxSwarmManager("rec", socket_name=server.socket_name).observe())
    other = TmuxSwarmManager("rec", socket_name=f"{server.socket_name}-other")
    try:
        run(other.spawn_agent("a", (*PY, "-c", SIGNAL_RECORDER, str(tmp_path / "api"))))
        wait_ready(tmp_path / "api")
        mine = {p.agent_id: p.pane_id for p in run(other.observe()) if p.agent_id}
        assert mine == {p.agent_id: p.pane_id for p in recorded if p.agent_id}
        run(other.kill_agent("a"))
        assert (tmp_path / "api").read_text() == "SIGTERM"  # the default, not rec's INT
    finally:
        Server(socket_name=f"{server.socket_name}-other").kill()


@pytest.mark.parametrize("timeout_s", [float("nan"), float("inf"), -1.0])
def test_a_stop_timeout_not_a_finite_number_is_refused_before_anything_stops(
        manager: TmuxSwarmManager, timeout_s: float) -> None:
    """NaN passed the `< 0` check (every comparison with it is false) and waited as 0."""
    run(manager.spawn_agent("a", "sleep 60"))
    with pytest.raises(ValueError, match="timeout_s must be a finite number"):
        run(manager.kill_agent("a", timeout_s=timeout_s))
    with pytest.raises(ValueError, match="timeout_s must be a finite number"):
        run(manager.shutdown(timeout_s=timeout_s))
    assert statuses(manager) == {"a": "running"}
