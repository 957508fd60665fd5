"""TmuxSwarmManager without a tmux server: libtmux.Server patched, as the original plan asked."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import shutil
import signal
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

import swarm_launch
from swarm_launch import tmux_manager
from swarm_launch.exceptions import (
    AgentNotFoundError,
    TmuxNotFoundError,
    TmuxSwarmError,
    TmuxTimeoutError,
)
from swarm_launch.observed import AgentStatus
from swarm_launch.tmux_manager import AgentLaunch, AgentPane, TmuxSwarmManager


@pytest.fixture(autouse=True)
def patched_server() -> Iterator[mock.MagicMock]:
    with mock.patch("libtmux.Server") as server:
        yield server


def test_public_api_is_exported() -> None:
    for name in ("TmuxSwarmManager", "AgentPane", "AgentStatus", "TmuxSwarmError",
                 "SessionNotFoundError", "AgentNotFoundError", "PaneDeadError",
                 "SessionCreationError"):
        assert getattr(swarm_launch, name) is not None
    assert issubclass(swarm_launch.SessionNotFoundError, TmuxSwarmError)


def test_agent_status_values() -> None:
    assert [s.name for s in AgentStatus] == ["PENDING", "RUNNING", "STOPPED", "FAILED",
                                            "UNKNOWN"]


def test_agent_pane_fields() -> None:
    names = [f.name for f in dataclasses.fields(AgentPane)]
    assert names == ["agent_id", "pane_id", "window_id", "session_id", "server", "status"]


def test_agent_pane_builds_its_libtmux_pane_on_first_use() -> None:
    server = mock.MagicMock()
    asked = mock.MagicMock(return_value=server)
    agent = AgentPane("a", "%3", "@1", "$0", asked)
    asked.assert_not_called()
    with mock.patch("libtmux.Pane.from_pane_id") as from_pane_id:
        assert agent.pane is from_pane_id.return_value
    from_pane_id.assert_called_once_with(server=server, pane_id="%3")
    assert "server" not in repr(agent) and agent == AgentPane("a", "%3", "@1", "$0", asked)


def test_defaults_and_data_dir_from_ai_swarm_dir(
        isolated_environment: pathlib.Path, patched_server: mock.MagicMock) -> None:
    mgr = TmuxSwarmManager("c1")
    assert mgr.data_dir == str(isolated_environment)
    assert mgr.session_name == "swarm-c1"
    assert (mgr.base_dir, mgr.socket_path, mgr.socket_name) == (None, None, None)
    assert mgr.log_path("a") == os.path.join(str(isolated_environment), "c1", "logs", "a.log")
    patched_server.assert_not_called()  # built on first use: CLI start-up skips libtmux
    assert mgr.server is patched_server.return_value
    patched_server.assert_called_once_with(socket_name=None, socket_path=None)


def test_agent_pane_handle_is_built_without_tmux(patched_server: mock.MagicMock) -> None:
    mgr = TmuxSwarmManager("c1", socket_name="s")
    pane = mgr._agent_pane("a", "%3", "@2", "$1")
    assert (pane.pane_id, pane.status) == ("%3", AgentStatus.RUNNING)
    patched_server.assert_not_called()


def test_tmux_not_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TmuxNotFoundError, match="apt-get install tmux"):
        asyncio.run(TmuxSwarmManager("c1").start())


def test_tmux_too_old(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    fake = tmp_path / "tmux"
    fake.write_text("#!/bin/sh\necho 'tmux 2.9a'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TmuxNotFoundError, match=r"tmux 2\.9.*brew install tmux"):
        tmux_manager.find_tmux()


def test_tmux_version_is_asked_once_per_binary_as_it_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path,
    isolated_environment: pathlib.Path,
) -> None:
    """`tmux -V` is remembered across processes (~3 ms each), until the binary changes;
    never for a script, which may run another tmux each time."""
    real = shutil.which("tmux")
    assert real is not None
    compiled, shim = tmp_path / "bin" / "tmux", tmp_path / "shim" / "tmux"
    compiled.parent.mkdir()
    shim.parent.mkdir()
    shutil.copy(real, compiled)
    shim.write_text(f"#!/bin/sh\nexec {real} \"$@\"\n")
    shim.chmod(0o755)
    asked: list[str] = []
    version_of = tmux_manager._version_of

    def counting_version_of(path: str) -> tuple[int, int]:
        asked.append(path)
        return version_of(path)

    monkeypatch.setattr(tmux_manager, "_version_of", counting_version_of)

    def find_as_a_new_process(directory: pathlib.Path) -> str:
        monkeypatch.setenv("PATH", str(directory))
        monkeypatch.setattr(tmux_manager, "_versions", {})
        return tmux_manager.find_tmux()

    for _ in range(3):
        assert find_as_a_new_process(compiled.parent) == str(compiled)
    assert asked == [str(compiled)]
    os.utime(compiled, (1, 1))  # upgraded in place
    find_as_a_new_process(compiled.parent)
    assert asked == [str(compiled)] * 2
    for _ in range(2):
        find_as_a_new_process(shim.parent)
    assert asked == [str(compiled)] * 2 + [str(shim)] * 2


def test_info_keys_and_no_agents_at_first() -> None:
    mgr = TmuxSwarmManager("c1", socket_name="never-started")
    assert mgr.list_agents() == []
    info = mgr.get_session_info()
    assert set(info) == {"cluster_id", "session_name", "session_id", "socket", "data_dir",
                         "agents"}
    assert info["socket"].endswith("/never-started") and info["agents"] == {}


def test_timeout_is_a_clear_error() -> None:
    with pytest.raises(TmuxTimeoutError, match=r"did not answer within 0\.2s"):
        asyncio.run(tmux_manager.run_tmux(["sleep", "5"], timeout_s=0.2))


def test_a_timeout_names_the_tmux_command_not_its_option_values() -> None:
    argv = ["/usr/bin/tmux", "-L", "hung", "list-panes", "-s", "-t", "=swarm-x:",
            "-F", "#{pane_id}\x1f#{pane_pid}"]
    assert tmux_manager._describe(argv) == "tmux list-panes"
    chained = ["tmux", "-S", "/tmp/s", "start-server", ";", "source-file", "-"]
    assert tmux_manager._describe(chained) == "tmux start-server ; source-file"


def listing_line(dead_status: str) -> str:
    """One line of the manager's listing: agent `a` of `c1`, dead, with `dead_status`."""
    from swarm_launch.observed import LIST_PANES_FORMAT, SEPARATOR

    fields = LIST_PANES_FORMAT.count(SEPARATOR) + 1
    values = ["%1", "@1", "1", "$1", "", "1", dead_status, ""] + [""] * (fields - 8)
    values[8:10] = ["c1", "a"]
    return SEPARATOR.join([*values, "Enter", "150"]) + "\n"


def test_a_dead_pane_without_status_nudges_the_server_to_reap(
    monkeypatch: pytest.MonkeyPatch, patched_server: mock.MagicMock
) -> None:
    """tmux 3.3 can miss a fast child's SIGCHLD; observing sends one and asks again."""
    line = listing_line
    answers = [line(""), "4242\n", line("3")]
    calls: list[list[str]] = []

    async def fake_run(argv: list[str], **_: object) -> tmux_manager.TmuxResult:
        calls.append(argv)
        return tmux_manager.TmuxResult(0, answers.pop(0), "")

    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(tmux_manager, "run_tmux", fake_run)
    monkeypatch.setattr(tmux_manager, "find_tmux", lambda: "tmux")
    monkeypatch.setattr(tmux_manager, "no_socket_file", lambda path: False)  # faked server
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append((pid, sig)))
    panes = asyncio.run(TmuxSwarmManager("c1").observe())
    assert kills == [(4242, signal.SIGCHLD)]
    assert [(p.agent_id, p.exit_status, p.status) for p in panes] == [
        ("a", 3, AgentStatus.FAILED)]
    assert len(calls) == 3


def test_session_info_nudges_an_unreaped_pane_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The synchronous `get_session_info` reported such a pane "unknown" for ever."""
    answers = [listing_line(""), "4242\n", listing_line("0")]

    def fake_run(argv: list[str], **_: object) -> tmux_manager.TmuxResult:
        return tmux_manager.TmuxResult(0, answers.pop(0), "")

    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(tmux_manager, "_run_tmux_sync", fake_run)
    monkeypatch.setattr(tmux_manager, "find_tmux", lambda: "tmux")
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append((pid, sig)))
    info = TmuxSwarmManager("c1").get_session_info()
    assert kills == [(4242, signal.SIGCHLD)] and not answers
    assert info["agents"]["a"]["status"] == "stopped"


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a.b", "a b", "-x", "x" * 129])
def test_ids_that_would_escape_the_data_dir_or_confuse_tmux_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid swarm id"):
        TmuxSwarmManager(bad)
    with pytest.raises(ValueError, match="invalid agent id"):
        TmuxSwarmManager("ok").log_path(bad)


@pytest.mark.parametrize("bad", ["", "a b", "../x", "-x"])
def test_an_invalid_agent_id_is_a_value_error_for_every_call(bad: str) -> None:
    """As the README says, and as spawn and stream say it: not "no such agent"."""
    manager = TmuxSwarmManager("ok", socket_name="never-started")
    for call in (manager.kill_agent(bad), manager.send_to_agent(bad, "hi"),
                 manager.capture_agent_output(bad), manager.broadcast("hi", only=[bad])):
        with pytest.raises(ValueError, match="invalid agent id") as caught:
            asyncio.run(call)
        assert isinstance(caught.value, AgentNotFoundError)  # what it was: the CLI's error
    with pytest.raises(AgentNotFoundError, match="invalid agent id"):
        manager.stream_agent_output(bad)


@pytest.mark.parametrize(("command", "env", "named"), [
    ("sleep 5", {"N": 5}, "its env N is int, not str"),
    ("sleep 5", {"N": None}, "its env N is NoneType, not str"),
    ("sleep 5", {5: "x"}, "its env name 5 is int, not str"),
    (b"sleep 5", {}, "its command is bytes: give a str"),
    (["sleep", 50], {}, "its command word 50 is int, not str"),
])
def test_a_spawn_argument_of_the_wrong_type_is_a_type_error_naming_it(
        command: Any, env: Any, named: str) -> None:
    with pytest.raises(TypeError, match=f"^agent a: {named}"):
        asyncio.run(TmuxSwarmManager("ok", socket_name="never-started").spawn_agent(
            "a", command, env=env))


@pytest.mark.parametrize("interval", [0, -1, float("nan")])
def test_a_stream_polling_without_pause_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="poll_interval must be more than 0"):
        TmuxSwarmManager("ok").stream_agent_output("a", poll_interval=interval)


def test_ids_the_spec_gives_are_accepted() -> None:
    manager = TmuxSwarmManager("team_1")
    assert manager.log_path("coder-0").endswith(os.path.join("team_1", "logs", "coder-0.log"))
    assert TmuxSwarmManager("Team").session_name == "swarm-Team"


def test_no_repr_shows_an_env_value(tmp_path: pathlib.Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A repr ends up in logs, tracebacks and bug reports: it must not carry API keys."""
    from swarm_launch.desired import expand
    from swarm_launch.spec import load_spec

    monkeypatch.setenv("MY_API_KEY", "sk-do-not-print")
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text("version: 1\nname: r\nenv: {TOP: '${MY_API_KEY}'}\n"
                         "agents:\n  a:\n    command: x\n    env: {KEY: '${MY_API_KEY}'}\n")
    spec = load_spec(str(spec_path))
    launch = AgentLaunch("a", "x", env={"KEY": "sk-do-not-print"})
    for thing in (spec, spec.agents["a"], *expand(spec).values(), launch):
        assert "sk-do-not-print" not in repr(thing), type(thing)


def test_on_path_finds_what_shutil_which_finds(tmp_path: pathlib.Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for directory in (first, second):
        directory.mkdir()
    (first / "tool").write_text("#!/bin/sh\n")  # not executable: skipped
    (first / "adir").mkdir()  # a directory: skipped
    for name in ("tool", "adir"):
        target = second / name
        target.write_text("#!/bin/sh\n")
        target.chmod(0o755)
    search = os.pathsep.join([str(first), str(tmp_path / "missing"), str(second)])
    for name in ("tool", "adir", "absent"):
        assert tmux_manager.on_path(name, search) == shutil.which(name, path=search)
    assert tmux_manager.on_path("tool", search) == str(second / "tool")


def test_observing_where_no_socket_exists_starts_no_tmux_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """A first `up` observes three times before its server exists: each would start a
    tmux client only to hear 'no server running'."""
    async def no_client(*args: object, **kwargs: object) -> object:
        raise AssertionError("a tmux client was started")

    monkeypatch.setattr(tmux_manager, "run_tmux", no_client)
    manager = TmuxSwarmManager("c1", socket_path=str(tmp_path / "no-server-here"))
    assert asyncio.run(manager.observe()) == ()
    blocked = TmuxSwarmManager("c1", socket_path=str(tmp_path / "afile" / "sock"))
    (tmp_path / "afile").write_text("")  # a path tmux cannot use: for tmux to name
    with pytest.raises(AssertionError, match="a tmux client was started"):
        asyncio.run(blocked.observe())


def test_a_cancellation_landing_as_a_tmux_call_ends_is_not_lost() -> None:
    """Python 3.11's wait_for returns the result when the work ends in the same turn as
    the cancel (CPython gh-86296): a Ctrl-C or a caller's timeout would be lost."""
    async def scenario() -> str:
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def work() -> str:
            return await done

        call = asyncio.ensure_future(tmux_manager._within(work(), 5))
        for _ in range(3):
            await asyncio.sleep(0)
        done.set_result("answered")
        call.cancel()  # in the same turn
        try:
            return await call
        except asyncio.CancelledError:
            return "cancelled"

    assert asyncio.run(scenario()) == "cancelled"


def test_an_unknown_agent_message_names_the_first_agents_of_a_long_list() -> None:
    assert tmux_manager._some([]) == "none"
    assert tmux_manager._some(["b", "a"]) == "b, a"
    names = [f"w-{i}" for i in range(500)]
    assert tmux_manager._some(names) == ", ".join(names[:12]) + ", ... (500 in all)"


def test_a_turn_that_never_comes_names_who_holds_it(
    isolated_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'another send to a did not finish within 0.2s' said nothing of who: as the swarm
    lock does, it names the holder's pid and host."""
    monkeypatch.setenv("SWARM_LAUNCH_LOCK_TIMEOUT", "0.2")
    manager = tmux_manager.TmuxSwarmManager("turns")

    async def scenario() -> str:
        async with manager._turn("send-a.lock", "send to a"):
            try:
                async with manager._turn("send-a.lock", "send to a"):
                    return "entered twice"
            except TmuxSwarmError as exc:
                return str(exc)

    message = asyncio.run(scenario())
    assert message.startswith(f"another send to a (pid {os.getpid()} on ")
    assert message.endswith("did not finish within 0.2s")
