"""SIGTERM and SIGHUP (and the swarm lock's wait) under `up` and `down`, against real tmux."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from libtmux import Server

from swarm_launch import store, tmux_manager
from tests.helpers import cli_process, interruptible, invoke, wait_until
from tests.test_reconcile import NAME, agents_of, policy_of, write

pytestmark = pytest.mark.tmux

# Its stop (SIGINT, 30 s) outlasts any test: a `down` waits on it until it is signalled.
DEAF_TO_INT = ("t: {command: \"trap 'echo got INT' INT; while :; do sleep 0.2; done\", "
               "restart: always, stop: {signal: INT, timeout_s: 30}}\n")


def up(server: Server, path: str) -> None:
    result = invoke("-L", str(server.socket_name), "up", path)
    assert result.code == 0, result.err


@pytest.fixture
def spec(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "swarm.yaml"


def children(pid: int, name: str = "tmux") -> list[int]:
    """The processes whose name starts with `name` that `pid` runs now (a tmux client
    calls itself `tmux: client`)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
            with open(f"/proc/{entry}/comm") as handle:
                command = handle.read().strip()
        except OSError:
            continue
        if int(fields[1]) == pid and command.startswith(name):
            found.append(int(entry))
    return found


def happens_within(seconds: float, condition: Callable[[], bool]) -> bool:
    """Whether `condition` comes true within `seconds`: for what must not happen, which
    only a deadline can tell."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def sigterm_pending(pid: int) -> bool:
    """SIGTERM sent to `pid` and not yet taken by its handler."""
    with open(f"/proc/{pid}/status") as handle:
        masks = [int(line.split()[1], 16) for line in handle
                 if line.startswith(("SigPnd:", "ShdPnd:"))]
    return any(mask & (1 << (signal.SIGTERM - 1)) for mask in masks)


def test_a_second_sigterm_does_not_cut_the_called_off_stop_short(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    """A second SIGTERM while the first one's clean-up gave the policy back cancelled that
    too: the agent was left without its restart policy, or (cancelled as asyncio started
    the tmux call) `down` never ended. Now it is ignored: 143, the policy given back. The
    tmux server is stopped meanwhile, so the clean-up is still under way when it lands."""
    path = write(spec, DEAF_TO_INT)
    up(server, path)
    tmux_pid = int(server.cmd("display", "-p", "#{pid}").stdout[0])
    running = cli_process("-L", str(server.socket_name), "down", path)
    try:
        wait_until(lambda: policy_of(server)[1], timeout=20, message="policy held aside")
        os.kill(tmux_pid, signal.SIGSTOP)
        try:
            running.send_signal(signal.SIGTERM)
            wait_until(lambda: children(running.pid), timeout=10,
                       message="the clean-up's tmux call, waiting on the stopped server")
            running.send_signal(signal.SIGTERM)
            wait_until(lambda: not sigterm_pending(running.pid), timeout=10,
                       message="the second SIGTERM taken")
            # Cancelled again, the run ended now, its clean-up cut short (and recorded).
            assert not happens_within(1.0, lambda: running.poll() is not None
                                      or (isolated_environment / NAME / "runs.jsonl")
                                      .read_text().count("\n") > 1)
        finally:
            os.kill(tmux_pid, signal.SIGCONT)
        _, err = running.communicate(timeout=20)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 143, err
    policy, held = policy_of(server)
    assert policy.startswith("always") and held == ""
    runs = (isolated_environment / NAME / "runs.jsonl").read_text().splitlines()
    assert json.loads(runs[-1])["interrupted"] is True
    assert set(agents_of(server)) == {"t"}


def test_a_cancelled_tmux_call_does_not_wait_forever_for_its_killed_client(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio's wait for a process never ends once its pipe-connecting task was cancelled
    (CPython gh-125502, as asyncio.run's final sweep does): a tmux call cancelled then
    waited for its killed client forever. Its wait is bounded now."""
    async def never(self: Any) -> int:
        await asyncio.Event().wait()
        return 0

    monkeypatch.setattr(asyncio.subprocess.Process, "wait", never)
    monkeypatch.setattr(tmux_manager, "KILLED_CLIENT_WAIT_S", 0.2, raising=False)

    async def cancelled_call() -> float:
        call = asyncio.ensure_future(tmux_manager.run_tmux(["sleep", "60"], timeout_s=60))
        deadline = time.monotonic() + 10
        while not children(os.getpid(), "sleep") and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # until the client runs; then the caller gives up
        call.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(call, 10)
        return time.monotonic() - started

    assert asyncio.run(cancelled_call()) < 5


def has_open(pid: int, path: pathlib.Path) -> bool:
    """Whether process `pid` has `path` open (a file it opens and closes meanwhile: no)."""
    fds = f"/proc/{pid}/fd"
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):
            if os.readlink(os.path.join(fds, fd)) == str(path):
                return True
    return False


@pytest.mark.parametrize(("command", "signum"), [("up", signal.SIGTERM),
                                                 ("down", signal.SIGHUP),
                                                 ("up", signal.SIGINT)])
def test_a_signal_ends_the_wait_for_the_swarm_lock_at_once(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch, command: str, signum: int
) -> None:
    """`up` or `down` waiting for another run's lock held off SIGTERM, SIGHUP and Ctrl-C
    until that run was done (a blocking wait: the loop never ran their handlers), forever
    with no lock timeout. Now the wait ends at once, nothing done (nor recorded)."""
    path = write(spec, "a: {command: sleep 600}\nb: {command: sleep 600}\n")
    up(server, path)
    panes = agents_of(server)
    write(spec, "a: {command: sleep 601}\n")  # an `up` would replace a and remove b
    runs = (isolated_environment / NAME / "runs.jsonl").read_text()
    monkeypatch.setenv("SWARM_LAUNCH_LOCK_TIMEOUT", "-1")
    with store.locked(str(isolated_environment / NAME)):  # another run, holding it
        running = cli_process("-L", str(server.socket_name), command, path)
        try:
            wait_until(lambda: has_open(running.pid, isolated_environment / NAME / "lock"),
                       timeout=20, message=f"{command} waiting for the lock")
            running.send_signal(signum)
            _, err = running.communicate(timeout=10)
        finally:
            if running.poll() is None:
                running.kill()
    assert running.returncode == 128 + signum and "interrupted" in err
    assert agents_of(server) == panes
    assert (isolated_environment / NAME / "runs.jsonl").read_text() == runs


def test_a_no_op_up_does_not_wait_for_an_up_waiting_for_readiness(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock probe sent every `up` down the locked path while any run held the lock:
    a no-op `up` waited out an `up --wait` waiting for readiness (or failed with the
    lock's timeout). Only a `down`, or a holder it cannot tell, sends it there."""
    path = write(spec, "w: {command: 'echo starting; sleep 1000', "
                       "ready: {pattern: NEVER, timeout_s: 30}}\n")
    up(server, path)
    up(server, path)  # its records now current: the next `up` is a no-op
    waiting = cli_process("-L", str(server.socket_name), "up", path, "--wait")
    try:
        holder = isolated_environment / NAME / "lock.holder"
        wait_until(holder.exists, timeout=20, message="up --wait holding the lock")
        monkeypatch.setenv("SWARM_LAUNCH_LOCK_TIMEOUT", "2")
        result = invoke("-L", str(server.socket_name), "up", path)
    finally:
        waiting.kill()
        waiting.communicate()
    assert result.code == 0, result.err
    assert "0 created, 0 replaced, 0 removed, 1 unchanged" in result.out


def test_the_lock_holder_is_named_by_its_command_while_it_lives(tmp_path: pathlib.Path) -> None:
    """`up`'s no-op path reads the holder's command: a note of a run that died (its pid
    gone, the lock now another's) or none at all tells nothing."""
    directory = str(tmp_path)
    assert store.lock_holder(directory) is None

    async def holding(command: str) -> str | None:
        async with store.locked_async(directory, command=command):
            return store.lock_holder(directory)

    assert asyncio.run(holding("down")) == "down"
    assert asyncio.run(holding("up")) == "up"
    assert store.lock_holder(directory) is None
    gone = subprocess.Popen(["true"])  # a pid that no longer runs
    gone.wait()
    with store.locked(directory):
        assert store.lock_holder(directory) == ""  # a note without a command
        note = {"pid": gone.pid, "command": "up", "host": socket.gethostname(),
                "started": time.time()}
        (tmp_path / "lock.holder").write_text(json.dumps(note))
        assert store.lock_holder(directory) == ""


def watching(server: Server, path: str, out: pathlib.Path) -> subprocess.Popen[bytes]:
    """`up PATH --watch`, its output in `out`, once it watches (its first apply done)."""
    with out.open("w") as handle:
        watcher = interruptible([sys.executable, "-m", "swarm_launch", "-L",
                                 str(server.socket_name), "up", path, "--watch"],
                                stdout=handle, stderr=subprocess.STDOUT)
    wait_until(lambda: "watching" in out.read_text() or watcher.poll() is not None,
               timeout=20, message="the watch under way")
    return watcher


def ended(watcher: subprocess.Popen[bytes], signum: int) -> int:
    watcher.send_signal(signum)
    try:
        return watcher.wait(timeout=20)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()


def test_sigterm_during_a_watch_apply_calls_the_apply_off_and_ends_the_watch(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path,
    tmp_path: pathlib.Path
) -> None:
    """SIGTERM killed `up --watch` outright during an apply: the agent it was replacing
    ran on with its restart policy held aside, and the apply had no line in runs.jsonl.
    Now it is called off as by Ctrl-C, and the watch ends: 143."""
    path = write(spec, DEAF_TO_INT)
    up(server, path)
    pane = agents_of(server)["t"]
    out = tmp_path / "out.txt"
    watcher = watching(server, path, out)
    write(spec, DEAF_TO_INT.replace("timeout_s: 30}", "timeout_s: 30}, env: {E: '1'}"))
    try:
        wait_until(lambda: policy_of(server)[1], timeout=20, message="policy held aside")
    finally:
        code = ended(watcher, signal.SIGTERM)
    assert code == 143, out.read_text()
    assert "stopped watching; the swarm keeps running" in out.read_text()
    policy, held = policy_of(server)
    assert policy.startswith("always") and held == ""
    assert agents_of(server) == {"t": pane}
    runs = (isolated_environment / NAME / "runs.jsonl").read_text().splitlines()
    assert json.loads(runs[-1])["interrupted"] is True


def test_sighup_between_watch_applies_ends_the_watch(
    server: Server, spec: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """SIGHUP (its terminal closed) killed the watch without a word; it ends it as
    Ctrl-C does, with 129."""
    path = write(spec, "a: {command: sleep 600}\n")
    out = tmp_path / "out.txt"
    code = ended(watching(server, path, out), signal.SIGHUP)
    assert code == 129, out.read_text()
    assert "stopped watching; the swarm keeps running" in out.read_text()
    assert set(agents_of(server)) == {"a"}
