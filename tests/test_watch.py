"""`up --watch`: an edit is applied within 2 s; an invalid edit is reported and survived."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest
from libtmux import Server

from swarm_launch import watch
from tests.helpers import interruptible, wait_until

pytestmark = pytest.mark.tmux


def agents(server: Server) -> set[str]:
    result = server.cmd("list-panes", "-s", "-t", "=swarm-w", "-F", "#{@swarm_agent}")
    return {line for line in result.stdout if line}


HEAD = "version: 1\nname: w\nagents:\n"


def watch_command(server: Server, spec: pathlib.Path) -> list[str]:
    return [sys.executable, "-m", "swarm_launch", "-L", str(server.socket_name), "up",
            str(spec), "--watch"]


def interrupt(watcher: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """Ctrl-C, as a person stops the watch; its exit code. Never leaves it running."""
    watcher.send_signal(signal.SIGINT)
    try:
        return watcher.wait(timeout=timeout)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()


def test_watch_applies_edits_and_survives_an_invalid_one(
    server: Server, tmp_path: pathlib.Path
) -> None:
    spec, head = tmp_path / "w.yaml", HEAD
    spec.write_text(head + "  a: {command: sleep 600}\n")
    out = (tmp_path / "out.txt").open("w")
    watcher = interruptible(watch_command(server, spec), stdout=out, stderr=subprocess.STDOUT)
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
        code = interrupt(watcher)
        out.close()
    assert code == 0
    assert agents(server) == {"a"}
    assert "the swarm keeps running" in (tmp_path / "out.txt").read_text()
    assert os.path.exists(spec)


def panes(server: Server) -> dict[str, str]:
    result = server.cmd("list-panes", "-s", "-t", "=swarm-w", "-F", "#{@swarm_agent} #{pane_id}")
    pairs = (line.split(" ") for line in result.stdout)
    return {agent: pane for agent, pane in pairs if agent}


def test_watch_replaces_once_and_refuses_an_unknown_name(
    server: Server, tmp_path: pathlib.Path
) -> None:
    spec, head = tmp_path / "w.yaml", HEAD
    spec.write_text(head + "  a: {command: sleep 600}\n")
    command = watch_command(server, spec)
    subprocess.run(command[:-1], check=True, capture_output=True)
    before = panes(server)

    wrong = subprocess.run([*command, "--replace", "b"], check=False, capture_output=True,
                           text=True, timeout=30)
    assert wrong.returncode == 1
    assert "--replace: not in the spec: b" in wrong.stderr
    assert panes(server) == before

    log = tmp_path / "out.txt"
    with log.open("w") as out:
        watcher = interruptible([*command, "--replace", "a"], stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: "watching" in log.read_text(), timeout=20)
            replaced = panes(server)
            assert replaced["a"] != before["a"]
            spec.write_text(head + "  a: {command: sleep 600}\n  b: {command: sleep 600}\n")
            wait_until(lambda: set(panes(server)) == {"a", "b"}, timeout=5, message="b created")
            assert panes(server)["a"] == replaced["a"]  # the edit did not replace it again
        finally:
            assert interrupt(watcher) == 0


def test_ctrl_c_during_an_apply_ends_the_watch_at_once(
    server: Server, tmp_path: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    """Ctrl-C while an apply waits (here 30 s for an agent that ignores TERM to stop)
    cancels it and ends the watch; the swarm is left as it is."""
    spec = tmp_path / "w.yaml"
    head = HEAD + "  a: {command: sleep 600}\n"
    stubborn = ("  b:\n    command: [sh, -c, \"trap '' TERM; exec sleep 600\"]\n"
                "    stop: {signal: TERM, timeout_s: 30}\n")
    spec.write_text(head + stubborn)
    log = tmp_path / "out.txt"
    with log.open("w") as out:
        watcher = interruptible(watch_command(server, spec), stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: "watching" in log.read_text(), timeout=20)
            spec.write_text(head)  # removing b now waits for it to stop
            holder = isolated_environment / "w" / "lock.holder"
            wait_until(holder.exists, timeout=5, message="the apply holding the lock")
            interrupted = time.monotonic()
        finally:
            code = interrupt(watcher, timeout=10)
    assert code == 0
    assert time.monotonic() - interrupted < 5
    assert "stopped watching; the swarm keeps running" in log.read_text()
    assert agents(server) >= {"a"}


def test_a_save_during_the_first_apply_is_applied_next(
    server: Server, tmp_path: pathlib.Path
) -> None:
    """The first apply waits for `db` to be ready (it waits for a file); the spec saved
    meanwhile must not count as already seen."""
    spec, go, log = tmp_path / "w.yaml", tmp_path / "go", tmp_path / "out.txt"
    db = (f"  db: {{command: 'while [ ! -f {go} ]; do sleep 0.05; done; echo READY; "
          "sleep 600', ready: {pattern: READY, timeout_s: 30}}\n"
          "  app: {command: sleep 600, depends_on: [db]}\n")
    spec.write_text(HEAD + db + "  x: {command: sleep 601}\n")
    with log.open("w") as out:
        watcher = interruptible(watch_command(server, spec), stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: "db" in agents(server), timeout=20, message="db started")
            first = panes(server)["x"]
            spec.write_text(HEAD + db + "  x: {command: sleep 602}\n")
            go.touch()
            wait_until(lambda: "watching" in log.read_text(), timeout=20)
            wait_until(lambda: panes(server).get("x", first) != first, timeout=10,
                       message="the save made during the first apply was applied")
        finally:
            assert interrupt(watcher) == 0


def test_watching_a_spec_that_goes_away_says_so_once_and_applies_it_when_back(
    tmp_path: pathlib.Path,
) -> None:
    """Deleted or moved away (not an editor's rename-save, which is back within ms): the
    swarm keeps running as it is, and the watch says why nothing happens."""
    spec = tmp_path / "s.yaml"
    spec.write_text("one")
    changes: list[str] = []
    gone: list[float] = []
    done = threading.Event()
    watcher = threading.Thread(target=watch.watch, args=(
        str(spec), lambda: changes.append(spec.read_text())), kwargs={
        "should_stop": done.is_set, "on_gone": lambda: gone.append(time.monotonic())})
    watcher.start()
    try:
        spec.unlink()
        wait_until(lambda: gone, message="the watch to say the file is gone")
        time.sleep(2 * watch.GONE_S)  # a window to see nothing more happen: said once only
        assert len(gone) == 1 and changes == []
        spec.write_text("two")
        wait_until(lambda: changes == ["two"], message="the file back, applied")
    finally:
        done.set()
        watcher.join(timeout=10)
