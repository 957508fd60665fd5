"""Send, broadcast, stream, exactness and secrecy, against real programs in real panes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import os
import pathlib
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from libtmux import Server

from swarm_launch import logpipe, tmux_manager
from swarm_launch.exceptions import AgentNotFoundError, PaneDeadError, SessionNotFoundError
from swarm_launch.model import SendSettings
from swarm_launch.observed import PaneState
from swarm_launch.tmux_manager import AgentLaunch, TmuxResult, TmuxSwarmManager
from tests.agents import agent
from tests.helpers import wait_until

pytestmark = pytest.mark.tmux
T = TypeVar("T")
PY = (sys.executable, "-u")
NASTY = [
    "plain", "it's", 'say "hi"', "a;b", "trailing;", ";", "$HOME", "${HOME}", "#{pane_id}",
    "##", "~", "~/x", "back\\slash", "a\\", "\\n", "line1\nline2", "a\n    indented",
    "\\\n  z", "tab\there", "é ü 日本 😀", "\x1b[31mred", " lead", "trail ", "",
    "%if 1", "{ }", "--", "-e",
]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def manager(server: Server) -> TmuxSwarmManager:
    mgr = TmuxSwarmManager("io", socket_name=server.socket_name)
    run(mgr.start())
    return mgr


def read_json(path: pathlib.Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def submissions(path: pathlib.Path) -> list[str]:
    """The texts the echo agent recorded, from whole lines only: a 100 KB line is written
    in several pieces, and a look between two of them must not read half of it."""
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    return [json.loads(line)["text"] for line in lines if "text" in json.loads(line)]


def start_echo(mgr: TmuxSwarmManager, tmp_path: pathlib.Path,
               *ids: str, delay_ms: int = 50) -> dict[str, pathlib.Path]:
    outs = {agent_id: tmp_path / f"{agent_id}.jsonl" for agent_id in ids}
    run(mgr.spawn_agents([
        AgentLaunch(agent_id, (*PY, agent("echo_loop"), str(out)),
                    send=SendSettings(submit_delay_ms=delay_ms))
        for agent_id, out in outs.items()]))
    for out in outs.values():
        wait_until(lambda out=out: out.exists(), message=f"{out.name} ready")  # type: ignore[misc]
    return outs


# -- exactness and secrecy ------------------------------------------------------


def test_argv_and_env_arrive_byte_for_byte(manager: TmuxSwarmManager,
                                           tmp_path: pathlib.Path) -> None:
    out = tmp_path / "argv.json"
    env = {f"V{i}": value for i, value in enumerate(NASTY)}
    run(manager.spawn_agents([AgentLaunch("x", (*PY, agent("argv_env"), str(out), *NASTY),
                                          env=env)]))
    record = wait_until(lambda: read_json(out), message="argv_env output")
    assert record["argv"] == NASTY
    assert {key: record["env"].get(key) for key in env} == env


def test_command_string_reaches_the_shell_exactly(manager: TmuxSwarmManager,
                                                  tmp_path: pathlib.Path) -> None:
    out = tmp_path / "argv.json"
    words = [shlex.quote(word) for word in (*PY, agent("argv_env"), str(out), *NASTY)]
    run(manager.spawn_agent("s", " ".join(words)))
    assert wait_until(lambda: read_json(out))["argv"] == NASTY


def test_one_word_argv_is_exec_d_not_shell_parsed(manager: TmuxSwarmManager,
                                                  tmp_path: pathlib.Path) -> None:
    script = tmp_path / "odd name;$x.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {shlex.quote(str(tmp_path / 'ran'))}\n")
    script.chmod(0o755)
    run(manager.spawn_agent("one", (str(script),)))
    wait_until((tmp_path / "ran").exists, message="script ran")


def test_workdir_with_hash_and_quotes(manager: TmuxSwarmManager,
                                      tmp_path: pathlib.Path) -> None:
    workdir = tmp_path / "dir #1 'q' #{x}"
    workdir.mkdir()
    out = tmp_path / "cwd.json"
    run(manager.spawn_agents([AgentLaunch("w", (*PY, agent("argv_env"), str(out)),
                                          workdir=str(workdir))]))
    assert wait_until(lambda: read_json(out))["cwd"] == str(workdir)


def test_env_reaches_that_agent_only(manager: TmuxSwarmManager,
                                     tmp_path: pathlib.Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    run(manager.spawn_agents([
        AgentLaunch("a", (*PY, agent("argv_env"), str(a)), env={"ONLY_A": "1"}),
        AgentLaunch("b", (*PY, agent("argv_env"), str(b)))]))
    assert wait_until(lambda: read_json(a))["env"]["ONLY_A"] == "1"
    assert "ONLY_A" not in wait_until(lambda: read_json(b))["env"]
    assert "ONLY_A" not in os.environ


def cmdlines() -> list[bytes]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    found.append(handle.read())
            except OSError:
                pass
    return found


def test_no_secret_in_any_argv_while_spawning(manager: TmuxSwarmManager) -> None:
    secret = "s3cr3t-" + os.urandom(8).hex()
    seen: list[bytes] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.extend(line for line in cmdlines() if secret.encode() in line)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for batch in range(4):
            run(manager.spawn_agents([
                AgentLaunch(f"a{batch}-{i}", "sleep 60", env={"TOKEN": secret})
                for i in range(5)]))
    finally:
        done.set()
        sampler.join()
    assert len(manager.list_agents()) == 20
    assert seen == []


def test_fifty_agents_cost_one_look_and_one_tmux_script(manager: TmuxSwarmManager,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real = tmux_manager.run_tmux

    async def counting(argv: Any, **kwargs: Any) -> TmuxResult:
        calls.append(list(argv))
        return await real(argv, **kwargs)

    monkeypatch.setattr(tmux_manager, "run_tmux", counting)
    started = time.monotonic()
    run(manager.spawn_agents([AgentLaunch(f"a{i}", "sleep 60") for i in range(50)]))
    elapsed = time.monotonic() - started
    # A fresh look under the spawn turn (window indexes, ids in use), then one script.
    assert ["list-panes" in calls[0], "source-file" in calls[1]] == [True, True]
    assert len(calls) == 2
    assert len(manager.list_agents()) == 50
    print(f"spawned 50 agents in {elapsed:.3f}s")


# -- send and broadcast ---------------------------------------------------------


def test_text_arrives_literally_then_one_submit(manager: TmuxSwarmManager,
                                                tmp_path: pathlib.Path) -> None:
    out = start_echo(manager, tmp_path, "e")["e"]
    text = "Enter C-c ; trailing; 'single' \"double\" $HOME #{pane_id} é 日本 \\ Escape"
    run(manager.send_to_agent("e", text))
    assert wait_until(lambda: submissions(out)) == [text]


def test_multi_line_message_is_one_submission(manager: TmuxSwarmManager,
                                              tmp_path: pathlib.Path) -> None:
    out = start_echo(manager, tmp_path, "e")["e"]
    run(manager.send_to_agent("e", "first line\nsecond line\n  third"))
    assert wait_until(lambda: submissions(out)) == ["first line\nsecond line\n  third"]


def test_hundred_kilobytes_arrive_whole(manager: TmuxSwarmManager,
                                        tmp_path: pathlib.Path) -> None:
    out = start_echo(manager, tmp_path, "e")["e"]
    text = "".join(f"{i:06d}abcdefghij\n" for i in range(6000))[:100_000]
    run(manager.send_to_agent("e", text))
    got = wait_until(lambda: submissions(out), timeout=20)
    assert len(got) == 1 and got[0] == text


def test_two_concurrent_sends_do_not_mix(manager: TmuxSwarmManager,
                                         tmp_path: pathlib.Path) -> None:
    outs = start_echo(manager, tmp_path, "a", "b")
    body = {agent_id: agent_id * 20_000 for agent_id in outs}

    async def both() -> None:
        await asyncio.gather(*(manager.send_to_agent(a, t) for a, t in body.items()))

    run(both())
    for agent_id, out in outs.items():
        assert wait_until(lambda out=out: submissions(out)) == [body[agent_id]]  # type: ignore[misc]


def test_broadcast_reaches_every_agent(manager: TmuxSwarmManager,
                                       tmp_path: pathlib.Path) -> None:
    outs = start_echo(manager, tmp_path, "a", "b", "c")
    assert run(manager.broadcast("all hands")) == (("a", "b", "c"), ())
    for out in outs.values():
        assert wait_until(lambda out=out: submissions(out)) == ["all hands"]  # type: ignore[misc]


def test_broadcast_only_reaches_exactly_the_named(manager: TmuxSwarmManager,
                                                  tmp_path: pathlib.Path) -> None:
    outs = start_echo(manager, tmp_path, "a", "b", "c")
    run(manager.broadcast("just you two", only=["a", "c"]))
    wait_until(lambda: submissions(outs["a"]) and submissions(outs["c"]))
    run(manager.send_to_agent("b", "marker"))  # b got nothing before its own marker
    assert wait_until(lambda: submissions(outs["b"])) == ["marker"]
    with pytest.raises(AgentNotFoundError):
        run(manager.broadcast("x", only=["nobody"]))


def test_broadcast_only_one_id_given_as_a_str_is_that_agent(manager: TmuxSwarmManager,
                                                             tmp_path: pathlib.Path) -> None:
    outs = start_echo(manager, tmp_path, "ab", "a", "b")
    assert run(manager.broadcast("to ab", only="ab")).sent == ("ab",)
    assert wait_until(lambda: submissions(outs["ab"])) == ["to ab"]


def test_a_broadcast_that_fails_for_some_says_who_got_it(
    manager: TmuxSwarmManager, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b's pane vanishes between the broadcast's look and its send to b."""
    outs = start_echo(manager, tmp_path, "a", "b", "c")
    real_send = manager._send

    async def b_gone_first(pane: PaneState, settings: SendSettings, message: str) -> None:
        if pane.agent_id == "b":
            await manager._tmux("kill-pane", "-t", pane.pane_id)
        await real_send(pane, settings, message)

    monkeypatch.setattr(manager, "_send", b_gone_first)
    with pytest.raises(tmux_manager.BroadcastError, match=r"sent to 2 of 3 agents \(a, c\); "
                       "not sent to b: ") as caught:
        run(manager.broadcast("all hands"))
    assert (caught.value.sent, caught.value.skipped) == (("a", "c"), ())
    assert list(caught.value.failures) == ["b"]
    assert isinstance(caught.value.failures["b"], AgentNotFoundError)
    for agent_id in ("a", "c"):
        assert wait_until(lambda a=agent_id: submissions(outs[a])) == [  # type: ignore[misc]
            "all hands"]


def test_a_broadcast_to_an_empty_only_sends_to_no_one(
    manager: TmuxSwarmManager, tmp_path: pathlib.Path
) -> None:
    outs = start_echo(manager, tmp_path, "a")
    assert run(manager.broadcast("nobody", only=[])) == ((), ())
    run(manager.send_to_agent("a", "marker"))  # a got nothing before its own marker
    assert wait_until(lambda: submissions(outs["a"])) == ["marker"]


def test_concurrent_sends_to_one_agent_stay_separate_messages(
    manager: TmuxSwarmManager, tmp_path: pathlib.Path
) -> None:
    """Each send is a paste, a delay, then the submit key: two pastes before their keys
    would make one message. Two managers stand for two processes (`send` twice at once)."""
    outs = start_echo(manager, tmp_path, "a")
    other = TmuxSwarmManager(manager.cluster_id, socket_name=manager.socket_name)

    async def together() -> None:
        await asyncio.gather(*(m.send_to_agent("a", f"message {i}")
                               for i, m in enumerate([manager, other, manager, other])))

    run(together())
    wait_until(lambda: len(submissions(outs["a"])) >= 4, message="4 submissions")
    assert sorted(submissions(outs["a"])) == [f"message {i}" for i in range(4)]


@pytest.mark.parametrize("mode", ["copy-mode", "clock-mode", "choose-tree"])
def test_send_submits_even_when_the_pane_is_in_a_mode(
    manager: TmuxSwarmManager, tmp_path: pathlib.Path, mode: str
) -> None:
    """Someone scrolling back (copy-mode), or who pressed prefix-t or prefix-s there."""
    outs = start_echo(manager, tmp_path, "a")
    pane = manager.get_session_info()["agents"]["a"]["pane_id"]
    run(manager._tmux(mode, "-t", pane))
    assert run(manager._tmux("display-message", "-p", "-t", pane, "#{pane_in_mode}")).out == "1\n"
    run(manager.send_to_agent("a", "one"))
    run(manager.send_to_agent("a", "two"))
    assert wait_until(lambda: submissions(outs["a"]) == ["one", "two"] or None)


def test_broadcast_that_reaches_no_one_is_an_error(
    manager: TmuxSwarmManager, tmp_path: pathlib.Path
) -> None:
    absent = TmuxSwarmManager("absent", socket_name=manager.socket_name)
    with pytest.raises(SessionNotFoundError):
        run(absent.broadcast("anyone?"))
    with pytest.raises(PaneDeadError, match="nothing was sent"):
        run(manager.broadcast("anyone?"))  # the session, no agent yet
    run(manager.spawn_agents([AgentLaunch("gone", "exit 0")]))
    wait_until(lambda: manager.get_session_info()["agents"]["gone"]["status"] == "stopped")
    with pytest.raises(PaneDeadError, match="nothing was sent"):
        run(manager.broadcast("anyone?"))


def test_submit_key_is_read_back_from_the_pane(manager: TmuxSwarmManager,
                                               tmp_path: pathlib.Path) -> None:
    out = tmp_path / "e.jsonl"
    run(manager.spawn_agents([AgentLaunch(
        "e", (*PY, agent("echo_loop"), str(out)),
        send=SendSettings(submit_key="C-m", submit_delay_ms=10))]))
    wait_until(out.exists)
    run(manager.send_to_agent("e", "via C-m"))
    assert wait_until(lambda: submissions(out)) == ["via C-m"]


# -- logs and streaming ---------------------------------------------------------


def test_first_line_printed_at_start_up_is_in_the_log(manager: TmuxSwarmManager) -> None:
    run(manager.spawn_agent("p", ("printf", "very first line\\n")))
    path = pathlib.Path(manager.log_path("p"))
    wait_until(lambda: path.exists() and "very first line" in path.read_text())
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def writer_program(log_path: str) -> str:
    """argv[0] of the process writing `log_path` (the pane's pipe-pane child)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if log_path.encode() in argv:
            return argv[0].decode()
    return ""


@pytest.mark.parametrize("writer", ["auto", "perl", "python"])
def test_each_log_writer_logs_through_tmux(manager: TmuxSwarmManager, writer: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The C writer (built here: cc is on PATH), the Perl one and the Python one, each fed
    by a real pipe-pane."""
    monkeypatch.setenv(logpipe.WRITER_ENV, writer)
    run(manager.spawn_agent("p", ("printf", "one\\ntwo\\n")))
    path = pathlib.Path(manager.log_path("p"))

    def logged() -> list[str] | None:
        text = path.read_text() if path.exists() else ""
        return text.splitlines() if text.count("\n") >= 3 else None

    lines = wait_until(logged, message="the marker and both lines")
    assert lines[0].startswith(logpipe.MARKER_PREFIX + "agent p started ") and lines[1:] == [
        "one", "two"]
    assert pathlib.Path(str(path) + ".idx").read_text().split()[1] == "0"
    perl = shutil.which("perl") or sys.executable
    auto = os.environ[logpipe.CACHE_ENV] + "/logpipe-" if shutil.which("cc") else perl
    expected = {"auto": auto, "perl": perl, "python": sys.executable}[writer]
    assert writer_program(str(path)).startswith(str(expected))


TICKER = ("import time\ntime.sleep(0.5)\n"
          "for i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.1)\n")


async def follow_lines(mgr: TmuxSwarmManager, agent_id: str) -> list[str]:
    return [text async for text in mgr.stream_agent_output(agent_id, poll_interval=0.02)]


def test_stream_yields_new_lines_until_the_agent_exits(manager: TmuxSwarmManager) -> None:
    run(manager.spawn_agent("t", (*PY, "-c", TICKER)))
    lines = run(follow_lines(manager, "t"))
    # The log writer may add its start marker line: the agent's lines end the stream.
    assert lines[-3:] == ["tick 0", "tick 1", "tick 2"]


def open_fds_of(path: str) -> int:
    """How many of this process's file descriptors are open on `path`."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own fd, closed by now
            count += os.readlink(f"/proc/self/fd/{fd}") == path
    return count


def test_a_stream_never_iterated_closes_the_log_it_opened(manager: TmuxSwarmManager) -> None:
    """The log is opened when the stream is made, so a line written before the first
    iteration is not missed: closing or dropping the stream must close it."""
    run(manager.spawn_agent("t", "echo hi; exec sleep 60"))
    log = manager.log_path("t")
    wait_until(lambda: os.path.exists(log), message="the agent's log")

    async def close_them() -> None:
        for _ in range(5):
            await manager.stream_agent_output("t").aclose()

    run(close_them())
    assert open_fds_of(log) == 0
    streams = [manager.stream_agent_output("t") for _ in range(5)]
    assert open_fds_of(log) == 5
    del streams
    gc.collect()
    assert open_fds_of(log) == 0


def test_stream_yields_a_prompt_that_waits_without_newline(manager: TmuxSwarmManager) -> None:
    """`> ` then waiting for input: the stream shows it once it has been quiet a while."""
    run(manager.spawn_agent("t", (*PY, "-c", "import time\ntime.sleep(0.5)\n"
                                               "print('> ', end='', flush=True)\n"
                                               "time.sleep(30)\n")))

    async def first_prompt() -> str:
        async for text in manager.stream_agent_output("t", poll_interval=0.02):
            if text.endswith("> "):
                return text
        return ""

    assert run(asyncio.wait_for(first_prompt(), 10)) == "> "


def test_stream_ends_with_a_last_line_without_newline(manager: TmuxSwarmManager) -> None:
    script = "import time\ntime.sleep(0.5)\nprint('one')\nprint('two', end='', flush=True)\n"
    run(manager.spawn_agent("t", (*PY, "-c", script)))
    lines = run(follow_lines(manager, "t"))
    assert lines[-2:] == ["one", "two"]


SLOW_TICKER = ("import itertools, time\nfor n in itertools.count():\n"
               "    print('tick', n, flush=True)\n    time.sleep(0.25)\n")


def test_a_stream_survives_next_calls_timed_out_and_loses_no_line(
        manager: TmuxSwarmManager) -> None:
    run(manager.spawn_agent("t", (*PY, "-c", SLOW_TICKER)))

    async def ticks() -> tuple[int, list[str]]:
        stream = manager.stream_agent_output("t", poll_interval=0.01)
        got: list[str] = []
        timeouts = 0
        while timeouts < 6 or len(got) < 6:  # each wait far shorter than a tick
            try:
                got.append(await asyncio.wait_for(anext(stream), 0.03))
            except asyncio.TimeoutError:
                timeouts += 1
        await stream.aclose()
        return timeouts, [text for text in got if text.startswith("tick")]

    timeouts, got = run(asyncio.wait_for(ticks(), 20))
    first = int(got[0].split()[1])
    assert timeouts >= 6
    assert got == [f"tick {n}" for n in range(first, first + len(got))]


# Asks for bracketed paste, says so, then records every byte it reads, raw.
RAW_RECORDER = (
    "import os, sys, tty\n"
    "tty.setraw(0)\n"
    "sys.stdout.write('\\x1b[?2004hready\\r\\n'); sys.stdout.flush()\n"
    "with open(sys.argv[1], 'wb', buffering=0) as out:\n"
    "    while True:\n"
    "        out.write(os.read(0, 4096))\n")


@pytest.mark.parametrize("how", ["send", "broadcast"])
def test_text_cannot_end_a_bracketed_paste_early(manager: TmuxSwarmManager,
                                                 tmp_path: pathlib.Path, how: str) -> None:
    out = tmp_path / "in.bin"
    run(manager.spawn_agent("t", (*PY, "-c", RAW_RECORDER, str(out))))
    wait_until(lambda: "ready" in run(manager.capture_agent_output("t")), message="ready")
    text = "a\x1b[201~\x03b\x1b[200~c\x1b[20\x1b[201~1~d"
    run(manager.send_to_agent("t", text) if how == "send" else manager.broadcast(text))
    # One paste, the markers tmux puts around it its only ones, then the submit key.
    wanted = b"\x1b[200~a\x03bcd\x1b[201~\r"
    assert wait_until(lambda: (out.exists() and out.read_bytes() == wanted) or None,
                      message=f"{wanted!r} in {out}")


def test_an_agent_the_api_spawns_knows_its_id_and_swarm_unless_told_otherwise(
        manager: TmuxSwarmManager, tmp_path: pathlib.Path) -> None:
    outs = {agent_id: tmp_path / f"{agent_id}.json" for agent_id in ("a", "b")}
    run(manager.spawn_agent("a", (*PY, agent("argv_env"), str(outs["a"]))))
    run(manager.spawn_agent("b", (*PY, agent("argv_env"), str(outs["b"])),
                            env={"SWARM_NAME": "mine"}))
    envs = {a: wait_until(functools.partial(read_json, out), message=f"{a}'s env")["env"]
            for a, out in outs.items()}
    assert (envs["a"]["SWARM_AGENT_ID"], envs["a"]["SWARM_NAME"]) == ("a", manager.cluster_id)
    assert (envs["b"]["SWARM_AGENT_ID"], envs["b"]["SWARM_NAME"]) == ("b", "mine")
