"""The log writer process: lossless, appending, rotating, private; and its pipe-pane command."""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys

import pytest

from swarm_launch import logpipe
from swarm_launch.model import LogSettings
from tests.helpers import wait_until

MARKER = re.compile(rb"^--- swarm-launch: agent (\S+) started \S+Z \(pane (\S+)\) ---$")


def run_logpipe(log: pathlib.Path, data: bytes, *, max_bytes: int = 50 * 1024 * 1024,
                keep: int = 3, agent: str = "planner", pane: str = "%3") -> None:
    """Feed `data` through the real `python -m swarm_launch.logpipe` process, to its EOF."""
    command = [sys.executable, "-m", "swarm_launch.logpipe", str(log),
               "--max-bytes", str(max_bytes), "--keep", str(keep),
               "--agent", agent, "--pane", pane]
    subprocess.run(command, input=data, check=True, timeout=60)


def numbered(count: int, start: int = 0) -> bytes:
    return b"".join(b"line %d\n" % i for i in range(start, start + count))


def without_markers(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if not MARKER.match(line)]


def test_200000_numbered_lines_arrive_whole_and_in_order(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "logs" / "planner.log"
    run_logpipe(log, numbered(200_000))
    lines = log.read_bytes().split(b"\n")
    assert MARKER.match(lines[0])
    assert lines[1:-1] == [b"line %d" % i for i in range(200_000)]
    assert lines[-1] == b""


def test_each_start_appends_a_marker_and_never_truncates(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    run_logpipe(log, b"first run\n", agent="coder-0", pane="%1")
    run_logpipe(log, b"second run\n", agent="coder-0", pane="%7")
    lines = log.read_bytes().splitlines()
    assert [MARKER.match(line) is not None for line in lines] == [True, False, True, False]
    assert lines[1] == b"first run" and lines[3] == b"second run"
    assert MARKER.match(lines[2]).groups() == (b"coder-0", b"%7")  # type: ignore[union-attr]


def test_marker_starts_on_a_fresh_line_after_a_partial_one(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    run_logpipe(log, b"prompt> ")
    run_logpipe(log, b"again\n")
    lines = log.read_bytes().split(b"\n")
    assert lines[1] == b"prompt> "
    assert MARKER.match(lines[2])


def test_rotation_keeps_k_files_and_loses_no_byte(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    data = numbered(20_000)  # ~200 KB through a 16 KB cap: a dozen rotations
    run_logpipe(log, data, max_bytes=16 * 1024, keep=3)
    files = [tmp_path / f"a.log.{n}" for n in (3, 2, 1)] + [log]
    assert sorted(p.name for p in tmp_path.glob("a.log*")) == [
        "a.log", "a.log.1", "a.log.1.idx", "a.log.2", "a.log.2.idx", "a.log.3", "a.log.3.idx",
        "a.log.idx"]
    assert all(p.stat().st_size <= 16 * 1024 for p in files)
    assert all(p.read_bytes().endswith(b"\n") for p in files[:-1])  # rotated between lines
    kept = b"".join(p.read_bytes() for p in files)
    assert kept == data[-len(kept):]  # the newest bytes, contiguous across every boundary


def test_rotation_within_one_run_is_lossless_across_the_boundary(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    data = numbered(5_000)  # ~49 KB through a 20 KB cap: two rotations
    run_logpipe(log, data, max_bytes=20_000, keep=5)
    files = [tmp_path / f"a.log.{n}" for n in (2, 1)] + [log]
    assert not (tmp_path / "a.log.3").exists()
    assert without_markers(b"".join(p.read_bytes() for p in files)) == without_markers(data)


def test_keep_zero_keeps_no_old_file(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    run_logpipe(log, numbered(5_000), max_bytes=4096, keep=0)
    assert not (tmp_path / "a.log.1").exists()
    assert log.stat().st_size <= 4096
    assert log.read_bytes().endswith(b"line 4999\n")


def test_files_are_0600_and_the_directory_0700(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "new" / "logs" / "a.log"
    run_logpipe(log, numbered(3_000), max_bytes=8192, keep=2)
    assert (tmp_path / "new" / "logs").stat().st_mode & 0o777 == 0o700
    for path in (log.parent).iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path.name


def test_index_notes_where_each_run_starts(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    run_logpipe(log, b"hello\n")
    run_logpipe(log, b"again\n")
    entries = [line.split() for line in (tmp_path / "a.log.idx").read_text().splitlines()]
    second_start = log.read_bytes().index(b"--- swarm-launch", 1)
    assert [int(offset) for _, offset in entries] == [0, second_start]
    assert all(second.isdigit() for second, _ in entries)


def test_writer_splits_a_line_longer_than_the_cap(tmp_path: pathlib.Path) -> None:
    writer = logpipe.LogWriter(str(tmp_path / "a.log"), max_bytes=10, keep=5)
    writer.write(b"0123456789abcdefghij-tail\n")
    writer.close()
    parts = [(tmp_path / name).read_bytes() for name in ("a.log.2", "a.log.1", "a.log")]
    assert parts == [b"0123456789", b"abcdefghij", b"-tail\n"]


def test_pipe_command_quotes_for_sh_and_doubles_hashes_for_tmux(tmp_path: pathlib.Path) -> None:
    path = "/tmp/we#ird dir's $HOME ~/a#1.log"
    command = logpipe.pipe_command(path, LogSettings(max_bytes=1000, keep=2), agent_id="a#b")
    assert command.startswith("exec ")
    assert command.endswith(" '#{pane_id}'")
    expanded = command[:-len("'#{pane_id}'")].replace("##", "#") + "%5"  # what tmux does
    words = shlex.split(expanded[len("exec "):])
    assert os.path.isabs(words[0])
    assert words[1:3] == ["-I", "-S"]  # isolated, and no site import: it starts once per agent
    assert words[4:] == [path, "--max-bytes", "1000", "--keep", "2", "--agent", "a#b",
                         "--pane", "%5"]


@pytest.mark.parametrize("argv", [
    pytest.param([], id="no-path"),
    pytest.param(["--keep", "3"], id="option-first"),
    pytest.param(["a.log", "--keep"], id="missing-value"),
    pytest.param(["a.log", "--bogus", "1"], id="unknown-option"),
    pytest.param(["a.log", "--keep", "x"], id="not-a-number"),
])
def test_bad_arguments_print_usage(argv: list[str]) -> None:
    with pytest.raises(SystemExit, match="usage"):
        logpipe.main(argv)


def test_sigterm_writes_what_is_already_in_the_pipe_then_exits(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "swarm_launch.logpipe", str(log), "--agent", "a", "--pane", "%1"],
        stdin=subprocess.PIPE)
    assert process.stdin is not None
    try:
        wait_until(lambda: log.exists() and log.read_bytes().endswith(b"---\n"),
                   message="the start marker")
        process.send_signal(signal.SIGSTOP)  # so the data is still in the pipe at SIGTERM
        process.stdin.write(numbered(1000))
        process.stdin.flush()
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGCONT)
        assert process.wait(timeout=10) == 0
        assert without_markers(log.read_bytes()) == without_markers(numbered(1000))
    finally:
        process.kill()
        process.stdin.close()
