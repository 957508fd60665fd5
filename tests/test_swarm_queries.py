"""ls, status/down by --name, and the per-swarm lock, through the CLI on real tmux."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest
from libtmux import Server

from tests.helpers import invoke, wait_until

pytestmark = pytest.mark.tmux


def spec_file(tmp_path: pathlib.Path, name: str, agents: int = 2) -> str:
    path = tmp_path / f"{name}.yaml"
    body = "".join(f"  a{i}: {{command: sleep 600}}\n" for i in range(agents))
    path.write_text(f"version: 1\nname: {name}\nagents:\n{body}")
    return str(path)


def test_ls_lists_swarms_with_agent_counts(server: Server, tmp_path: pathlib.Path) -> None:
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", spec_file(tmp_path, "one", 2)).code == 0
    assert invoke("-L", sock, "up", spec_file(tmp_path, "two", 3)).code == 0
    document = json.loads(invoke("-L", sock, "ls", "--json").out)
    counts = {s["name"]: (s["agents"], s["running"], s["recorded"]) for s in document["swarms"]}
    assert counts == {"one": (2, 2, True), "two": (3, 3, True)}
    text = invoke("-L", sock, "ls").out
    assert "swarm-two" in text.splitlines()[2]


def test_ls_shows_each_recorded_swarm_on_its_own_server(
    server: Server, tmp_path: pathlib.Path
) -> None:
    other = f"{server.socket_name}-other"
    assert invoke("-L", str(server.socket_name), "up", spec_file(tmp_path, "here", 2)).code == 0
    try:
        assert invoke("-L", other, "up", spec_file(tmp_path, "there", 1)).code == 0
        document = json.loads(invoke("-L", other, "ls", "--json").out)
        seen = {s["name"]: (s["socket_name"], s["agents"]) for s in document["swarms"]}
        assert seen == {"here": (server.socket_name, 2), "there": (other, 1)}
    finally:
        subprocess.run(["tmux", "-L", other, "kill-server"], capture_output=True, check=False)


def test_ls_counts_a_swarm_once_whatever_its_server_is_called(
    server: Server, tmp_path: pathlib.Path
) -> None:
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", spec_file(tmp_path, "once", 2)).code == 0
    same = os.path.join(os.environ["TMUX_TMPDIR"], f"tmux-{os.getuid()}", sock)
    document = json.loads(invoke("-S", same, "ls", "--json").out)
    assert [(s["name"], s["agents"]) for s in document["swarms"]] == [("once", 2)]


def test_an_unknown_name_is_an_error_that_records_nothing(
    server: Server, isolated_environment: pathlib.Path
) -> None:
    for command in ("down", "status"):
        result = invoke("-L", str(server.socket_name), command, "--name", "nosuch")
        assert result.code == 1, command
        assert "no swarm 'nosuch'" in result.err
    assert "nosuch" not in invoke("-L", str(server.socket_name), "ls").out
    assert not (isolated_environment / "nosuch" / "state.json").exists()


def test_status_and_down_by_name_use_the_recorded_server(
    server: Server, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "named.yaml"
    path.write_text(f"version: 1\nname: named\ntmux: {{socket_name: {server.socket_name}}}\n"
                    "agents:\n  a: {command: sleep 600}\n")
    assert invoke("up", str(path)).code == 0
    status = json.loads(invoke("status", "--name", "named", "--json").out)
    assert [(a["id"], a["status"], a["sync"]) for a in status["agents"]] == [
        ("a", "running", "in-sync")]
    assert invoke("down", "--name", "named").code == 0
    assert not server.has_session("swarm-named")


@pytest.mark.parametrize("args", [("status", "x.yaml", "--name", "x"), ("status",),
                                  ("down", "x.yaml", "--name", "x"), ("down",)])
def test_spec_and_name_together_or_neither_is_a_usage_error(args: tuple[str, ...]) -> None:
    result = invoke(*args)
    assert result.code == 2
    assert "one of them" in result.err


def test_status_by_name_of_a_stopped_swarm_says_how_to_start_it_and_that_no_server_runs(
    server: Server, tmp_path: pathlib.Path
) -> None:
    sock, path = str(server.socket_name), spec_file(tmp_path, "stopped", 1)
    assert invoke("-L", sock, "up", path).code == 0
    server.kill()
    by_name = invoke("-L", sock, "status", "--name", "stopped")
    assert by_name.code == 0, by_name
    assert "swarm stopped is not running: no tmux server running on " in by_name.out
    assert f"`swarm-launch -L {sock} up {path}` starts it" in by_name.out
    by_spec = invoke("-L", sock, "status", path).out
    assert "no tmux server running on " in by_spec
    assert f"`swarm-launch -L {sock} up {path}` starts it\n" in by_spec  # with its -L


def test_a_held_lock_makes_up_wait_then_fail_naming_the_holder(
    server: Server, tmp_path: pathlib.Path, isolated_environment: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = spec_file(tmp_path, "locked")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from swarm_launch import store\n"
         "with store.locked(store.swarm_dir('locked')):\n"
         "    print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        monkeypatch.setenv("SWARM_LAUNCH_LOCK_TIMEOUT", "0.5")
        result = invoke("-L", str(server.socket_name), "up", path)
        assert result.code == 1
        assert f"pid {holder.pid}" in result.err
        assert "error: another swarm-launch run holds the lock" in result.err
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        taken = invoke("-L", str(server.socket_name), "up", path)
        assert taken.code == 0, taken.err
    finally:
        holder.kill()
        holder.wait(timeout=10)
    wait_until(lambda: server.has_session("swarm-locked"))


@pytest.mark.parametrize("kind", ["directory", "regular file", "path too long"])
def test_a_server_that_cannot_be_reached_is_an_error_not_a_stopped_swarm(
    kind: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = spec_file(tmp_path, "unreached")
    socket = tmp_path / "not-a-socket"
    if kind == "directory":
        socket.mkdir()
    else:
        socket.write_text("")
    server: tuple[str, ...] = ("-S", str(socket))
    if kind == "path too long":  # tmux: "error connecting to ... (File name too long)"
        long_dir = tmp_path / ("x" * 100)
        long_dir.mkdir()
        monkeypatch.setenv("TMUX_TMPDIR", str(long_dir))
        server = ()
    for args in (("status", path), ("status", path, "--json"), ("ls",), ("plan", path)):
        result = invoke(*server, *args)
        assert result.code == 1, (args, result)
        assert result.err.startswith("error: "), (args, result.err)
        assert "not running" not in result.out and "no swarms" not in result.out
    if kind != "path too long":
        assert f"{socket} is" in result.err  # what the path is, not tmux's "no server running"


def test_ls_shows_same_named_swarms_on_two_servers_as_two_rows(
    server: Server, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
    isolated_environment: pathlib.Path,
) -> None:
    other = f"{server.socket_name}-twin"
    assert invoke("-L", str(server.socket_name), "up", spec_file(tmp_path, "twin", 2)).code == 0
    try:  # the same name on another server, recorded in another AI_SWARM_DIR
        monkeypatch.setenv("AI_SWARM_DIR", str(tmp_path / "elsewhere"))
        assert invoke("-L", other, "up", spec_file(tmp_path, "twin", 3)).code == 0
        monkeypatch.setenv("AI_SWARM_DIR", str(isolated_environment))
        document = json.loads(invoke("-L", other, "ls", "--json").out)
        rows = sorted((s["socket_name"], s["agents"], s["running"], s["recorded"])
                      for s in document["swarms"])
        assert rows == sorted([(server.socket_name, 2, 2, True), (other, 3, 3, False)])
    finally:
        subprocess.run(["tmux", "-L", other, "kill-server"], capture_output=True, check=False)


def sync_by_id(*args: str) -> dict[str, str]:
    result = invoke(*args, "--json")
    assert result.code == 0, result
    return {a["id"]: a["sync"] for a in json.loads(result.out)["agents"]}


def test_status_by_name_calls_an_agent_kept_by_no_prune_an_orphan_as_the_spec_does(
    server: Server, tmp_path: pathlib.Path
) -> None:
    sock = str(server.socket_name)
    path = spec_file(tmp_path, "kept", 2)
    assert invoke("-L", sock, "up", path).code == 0
    spec_file(tmp_path, "kept", 1)  # a1 leaves the spec
    assert invoke("-L", sock, "up", "--no-prune", path).code == 0
    expected = {"a0": "in-sync", "a1": "orphan"}
    assert sync_by_id("-L", sock, "status", path) == expected
    assert sync_by_id("-L", sock, "status", "--name", "kept") == expected


def test_status_by_name_without_usable_records_says_unknown_not_orphan(
    server: Server, tmp_path: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", spec_file(tmp_path, "damaged", 2)).code == 0
    (isolated_environment / "damaged" / "state.json").write_text("}{ garbage")
    assert sync_by_id("-L", sock, "status", "--name", "damaged") == {
        "a0": "unknown", "a1": "unknown"}


def test_status_by_name_counts_restarts_from_zero_after_reset_after_s(
    server: Server, tmp_path: pathlib.Path
) -> None:
    sock, mark = str(server.socket_name), tmp_path / "crashed-once"
    path = tmp_path / "resets.yaml"  # crashes once, then runs: 1 restart, reset after 1 s
    path.write_text(
        "version: 1\nname: resets\nagents:\n  c:\n"
        f"    command: test -e {mark} && exec sleep 600; touch {mark}; exit 1\n"
        "    restart: on-failure\n    backoff: {initial_s: 0.1, max_s: 1, factor: 2}\n"
        "    reset_after_s: 1\n")
    assert invoke("-L", sock, "up", str(path)).code == 0

    def restarts(*args: str) -> int:
        agents = json.loads(invoke("-L", sock, "status", *args, "--json").out)["agents"]
        return int(agents[0]["restarts"]) if agents[0]["status"] == "running" else -1

    wait_until(lambda: restarts("--name", "resets") == 1, message="the restart")
    wait_until(lambda: restarts("--name", "resets") == 0, timeout=15, message="a reset")
    assert restarts(str(path)) == 0


def test_ls_and_status_by_name_find_a_swarm_started_by_the_python_api(server: Server) -> None:
    import asyncio

    from swarm_launch import TmuxSwarmManager

    async def start() -> None:
        manager = TmuxSwarmManager("apiswarm", socket_name=server.socket_name)
        await manager.start()
        await manager.spawn_agent("w", ["sleep", "600"])

    asyncio.run(start())
    document = json.loads(invoke("ls", "--json").out)  # no -L: found through its records
    assert [(s["name"], s["agents"], s["running"]) for s in document["swarms"]] == [
        ("apiswarm", 1, 1)]
    assert sync_by_id("status", "--name", "apiswarm") == {"w": "unknown"}


def test_a_stray_directory_in_ai_swarm_dir_does_not_break_ls(
    server: Server, tmp_path: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    import shutil

    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", spec_file(tmp_path, "kept", 1)).code == 0
    shutil.copytree(isolated_environment / "kept", isolated_environment / "Old.bak")
    result = invoke("-L", sock, "ls", "--json")
    assert result.code == 0, result
    assert [s["name"] for s in json.loads(result.out)["swarms"]] == ["kept"]


def test_status_shows_a_duplicate_pane_that_ls_and_plan_count(
    server: Server, tmp_path: pathlib.Path
) -> None:
    sock, path = str(server.socket_name), spec_file(tmp_path, "twice", 1)
    assert invoke("-L", sock, "up", path).code == 0
    original = server.cmd("list-panes", "-s", "-t", "=swarm-twice:", "-F",
                          "#{pane_id} #{@swarm_agent}").stdout
    first = next(line.split()[0] for line in original if line.endswith(" a0"))
    # A second pane claiming a0, as a crash between create and clean-up leaves.
    second = server.cmd("new-window", "-d", "-P", "-F", "#{pane_id}", "-t", "=swarm-twice:",
                        "sleep 600").stdout[0]
    for option, value in (("@swarm_cluster", "twice"), ("@swarm_agent", "a0")):
        server.cmd("set-option", "-p", "-t", second, option, value)
    document = json.loads(invoke("-L", sock, "status", path, "--json").out)
    assert [(a["id"], a["pane_id"], a["sync"]) for a in document["agents"]] == [
        ("a0", second, "drifted"), ("a0", first, "duplicate")]
    assert "duplicate" in invoke("-L", sock, "status", "--name", "twice").out
    assert "duplicate pane" in invoke("-L", sock, "plan", path).out


def test_reading_a_swarm_that_never_ran_creates_no_directory(
    server: Server, tmp_path: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    sock = str(server.socket_name)
    assert invoke("-L", sock, "status", spec_file(tmp_path, "never")).code == 0
    assert invoke("-L", sock, "plan", spec_file(tmp_path, "never")).code == 0
    assert invoke("-L", sock, "status", "--name", "nosuch").code == 1
    assert not (isolated_environment / "never").exists()
    assert not (isolated_environment / "nosuch").exists()
