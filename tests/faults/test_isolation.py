"""Isolation: an unsafe AI_SWARM_DIR is refused; what we write is private; a swarm touches
only its own panes."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest

from tests.faults._support import (
    agent_ids,
    assert_converged,
    record_figures,
    server_running,
    session_panes,
    socket_name,
    spec_text,
    tmux,
    write_spec,
)
from tests.helpers import CliResult, invoke

pytestmark = [pytest.mark.faults]


def assert_refused(result: CliResult, words: str) -> None:
    assert result.code == 1, result
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], result.err
    assert "Traceback" not in result.out + result.err


@pytest.mark.parametrize("unsafe", ["symlink", "other-uid", "world-writable", "group-writable"])
def test_unsafe_ai_swarm_dir_is_refused(
    unsafe: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    target = real
    words = {"symlink": "is a symlink", "other-uid": "owned by uid",
             "world-writable": "writable by others", "group-writable": "writable by others"}
    if unsafe == "symlink":
        target = tmp_path / "link"
        target.symlink_to(real)
    elif unsafe == "other-uid":
        if os.getuid() == 0:
            os.chown(real, 12345, -1)
        else:
            real_uid = os.getuid()
            monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)
    else:
        real.chmod(0o777 if unsafe == "world-writable" else 0o770)
    monkeypatch.setenv("AI_SWARM_DIR", str(target))
    sock = socket_name()
    spec = write_spec(tmp_path / "s.yaml", spec_text("safe", 2))
    for args in (("up", spec), ("status", spec), ("down", spec), ("ls",), ("plan", spec)):
        assert_refused(invoke("-L", sock, *args), words[unsafe])
    assert not server_running(sock)  # refused before tmux was touched
    assert os.listdir(real) == []


@pytest.mark.tmux
def test_files_0600_and_dirs_0700_after_a_real_up(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    sock = socket_name()
    spec = write_spec(tmp_path / "s.yaml", spec_text("priv", 5, command="'echo hi; sleep 600'"))
    assert invoke("-L", sock, "up", spec).code == 0
    assert invoke("-L", sock, "up", spec).code == 0
    assert invoke("-L", sock, "status", spec).code == 0
    dirs = files = 0
    for root, names, files_here in os.walk(isolated_environment):
        assert stat.S_IMODE(os.lstat(root).st_mode) == 0o700, root
        dirs += 1
        for name in files_here:
            info = os.lstat(os.path.join(root, name))
            assert stat.S_ISREG(info.st_mode), name
            assert stat.S_IMODE(info.st_mode) == 0o600, (root, name, oct(info.st_mode))
            files += 1
        assert all(stat.S_IMODE(os.lstat(os.path.join(root, n)).st_mode) == 0o700
                   for n in names)
    assert files >= 8  # state, runs, sessions, lock, 5 logs
    record_figures("isolation[modes]", {"dirs": dirs, "files": files})


@pytest.mark.tmux
def test_a_swarm_touches_only_its_own_panes(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    sock = socket_name()
    # A foreign session first: the server exists before any swarm, with panes not ours.
    tmux(sock, "new-session", "-d", "-s", "swarm-one-x", "sleep 600")
    one = write_spec(tmp_path / "one.yaml", spec_text("one", 4))
    two = write_spec(tmp_path / "two.yaml", spec_text("one-two", 4, prefix="t"))
    assert invoke("-L", sock, "up", one).code == 0
    assert invoke("-L", sock, "up", two).code == 0
    # A foreign window inside swarm one's session, and a pane tagged by someone else.
    tmux(sock, "new-window", "-d", "-t", "=swarm-one:", "-n", "mine", "sleep 600")
    tmux(sock, "new-window", "-d", "-t", "=swarm-one:", "-n", "fake", "sleep 600")
    tmux(sock, "set-option", "-p", "-t", "=swarm-one:fake", "@swarm_cluster", "one-two")
    tmux(sock, "set-option", "-p", "-t", "=swarm-one:fake", "@swarm_agent", "t0")

    def everything() -> set[str]:
        out = tmux(sock, "list-panes", "-a", "-F", "#{pane_id}").stdout
        return set(out.split())

    before_two = {p["pane_id"] for p in session_panes(sock, "one-two")}
    foreign = everything() - {p["pane_id"] for p in session_panes(sock, "one")
                              if p["cluster"] == "one"} - before_two
    assert len(foreign) == 3  # swarm-one-x, "mine", "fake"
    # Change one (replace all, drop one), then take it down: others untouched throughout.
    write_spec(tmp_path / "one.yaml", spec_text("one", 3, env={"V": "2"}))
    assert invoke("-L", sock, "up", one).code == 0
    assert_converged(sock, "one", agent_ids(3), isolated_environment, foreign_ok=True)
    assert foreign <= everything()
    assert invoke("-L", sock, "down", one).code == 0
    assert foreign | before_two <= everything()
    assert {p["pane_id"] for p in session_panes(sock, "one-two")} == before_two
    assert_converged(sock, "one-two", agent_ids(4, "t"), isolated_environment)
    assert invoke("-L", sock, "down", two).code == 0
    assert foreign <= everything()
    record_figures("isolation[foreign panes]", {"foreign_panes_survived": len(foreign)})
