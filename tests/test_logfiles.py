"""Reading logs: bounded tail, --since through the index, noise stripping, following."""

from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TypeVar

import pytest

from swarm_launch import logfiles, logpipe
from swarm_launch.logfiles import LogFollower, strip_terminal_noise, tail_lines

T = TypeVar("T")


def numbered(count: int, start: int = 0) -> bytes:
    return b"".join(b"line %d\n" % i for i in range(start, start + count))


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every os.pread from now on."""
    sizes: list[int] = []
    real = os.pread

    def pread(fd: int, size: int, offset: int) -> bytes:
        data = real(fd, size, offset)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(os, "pread", pread)
    return sizes


# --- tail -------------------------------------------------------------------------------


def test_tail_returns_the_last_lines(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(numbered(1000))
    assert tail_lines(str(log), 3) == [b"line 997", b"line 998", b"line 999"]


def test_tail_keeps_a_last_line_without_newline(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"one\ntwo\nprompt> ")
    assert tail_lines(str(log), 2) == [b"two", b"prompt> "]


def test_tail_of_a_short_file_is_all_of_it(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"one\ntwo\n")
    assert tail_lines(str(log), 100) == [b"one", b"two"]
    assert tail_lines(str(log), 0) == []


def test_tail_reaches_into_rotated_files(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.log.2").write_bytes(numbered(5, 0))
    (tmp_path / "a.log.1").write_bytes(numbered(5, 5) + b"split ")
    (tmp_path / "a.log").write_bytes(b"line\n" + numbered(2, 10))
    lines = tail_lines(str(tmp_path / "a.log"), 6)
    assert lines == [b"line 7", b"line 8", b"line 9", b"split line", b"line 10", b"line 11"]
    assert len(tail_lines(str(tmp_path / "a.log"), 100)) == 13


def test_history_reads_past_the_hole_a_rotation_in_progress_leaves(tmp_path: pathlib.Path) -> None:
    """A rotation renames LOG.N to LOG.N+1 from the highest N down: caught between two
    renames, LOG.2 is missing while LOG.3 exists, and LOG.3 is still history."""
    log = tmp_path / "a.log"
    for name, text in (("a.log.3", "oldest\n"), ("a.log.1", "older\n"), ("a.log", "now\n"),
                       ("a.log.01", "not ours\n"), ("a.log.x", "not ours\n")):
        (tmp_path / name).write_text(text)
    assert logfiles.rotated_paths(str(log)) == [str(log) + ".3", str(log) + ".1", str(log)]
    assert tail_lines(str(log), 10) == [b"oldest", b"older", b"now"]


def test_history_read_during_a_rotation_is_the_files_as_they_were_listed(
    tmp_path: pathlib.Path,
) -> None:
    """Listed, then renamed by a rotation while being read: read by name, LOG.1 would be
    read as it is after the rename (the old LOG) with the old offsets: lines lost,
    repeated, spliced."""
    log = tmp_path / "a.log"
    for name, first in (("a.log.2", 0), ("a.log.1", 3), ("a.log", 6)):
        (tmp_path / name).write_bytes(numbered(3, first))
    lines = logfiles.iter_lines(str(log))
    assert next(lines) == b"line 0"
    os.replace(tmp_path / "a.log.1", tmp_path / "a.log.2")  # a rotation, LOG.2 dropped
    os.replace(log, tmp_path / "a.log.1")
    log.write_bytes(b"after\n")
    assert list(lines) == [b"line %d" % i for i in range(1, 9)]


def test_tail_of_a_big_file_reads_a_bounded_amount(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "a.log"
    with log.open("wb") as handle:
        for block in range(20):
            handle.write(numbered(100_000, block * 100_000))  # ~25 MB in all
    reads = count_reads(monkeypatch)
    lines = tail_lines(str(log), 100)
    assert lines[-1] == b"line 1999999" and len(lines) == 100
    assert sum(reads) <= 2 * logfiles.BLOCK_SIZE


def test_tail_stops_at_the_end_it_is_given(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"old\nnew\n")
    assert tail_lines(str(log), 5, end=4) == [b"old"]


# --- since ------------------------------------------------------------------------------


def write_log(path: pathlib.Path, entries: list[tuple[int, bytes]]) -> None:
    """A log and its index as the writer leaves them: one index line per second with data."""
    data, index = b"", b""
    for second, chunk in entries:
        index += b"%d %d\n" % (second, len(data))
        data += chunk
    path.write_bytes(data)
    pathlib.Path(f"{path}.idx").write_bytes(index)


@pytest.mark.parametrize(("epoch", "expected"), [
    pytest.param(50.0, 0, id="before-everything"),
    pytest.param(100.0, 0, id="exactly-the-first-second"),
    pytest.param(101.9, 2, id="within-a-second-includes-it"),
    pytest.param(102.0, 4, id="a-quiet-second-starts-at-the-next-write"),
    pytest.param(105.0, 4, id="last-second"),
    pytest.param(106.0, 6, id="after-everything-is-the-end"),
])
def test_since_finds_the_first_byte_of_that_second(
    tmp_path: pathlib.Path, epoch: float, expected: int
) -> None:
    log = tmp_path / "a.log"
    write_log(log, [(100, b"a\n"), (101, b"b\n"), (105, b"c\n")])
    assert logfiles.since(str(log), epoch) == expected


def test_since_binary_searches_a_long_index(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "a.log"
    write_log(log, [(1_000_000 + 2 * i, b"x%d\n" % i) for i in range(50_000)])
    reads = count_reads(monkeypatch)
    offset = logfiles.since(str(log), 1_000_000 + 2 * 31_337 - 1)
    assert log.read_bytes()[offset:].startswith(b"x31337\n")
    assert len(reads) < 100


def test_since_skips_a_torn_index_line_and_works_without_an_index(
    tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"a\nb\n")
    assert logfiles.since(str(log), 10**9) == 0  # no index: everything
    (tmp_path / "a.log.idx").write_bytes(b"100 0\ngarbage\n101 2\n10")
    assert logfiles.since(str(log), 101) == 2
    assert logfiles.since(str(log), 102) == 4


def test_lines_since_span_rotated_files(tmp_path: pathlib.Path) -> None:
    write_log(tmp_path / "a.log.1", [(100, b"old\n"), (200, b"middle\n")])
    write_log(tmp_path / "a.log", [(300, b"new\n")])
    path = str(tmp_path / "a.log")
    assert list(logfiles.iter_lines(path, since_epoch=150)) == [b"middle", b"new"]
    assert list(logfiles.iter_lines(path)) == [b"old", b"middle", b"new"]
    assert tail_lines(path, 1, since_epoch=150) == [b"new"]
    assert tail_lines(path, 5, since_epoch=250) == [b"new"]


# --- strip_terminal_noise -----------------------------------------------------------------


@pytest.mark.parametrize(("raw", "clean"), [
    pytest.param("plain text\tand a tab", "plain text\tand a tab", id="plain-and-tab"),
    pytest.param("\x1b[1;31mred\x1b[0m ok", "red ok", id="sgr-colours"),
    pytest.param("\x1b[38;5;208morange\x1b[m", "orange", id="256-colours"),
    pytest.param("\x1b[2K\x1b[1Gredrawn", "redrawn", id="erase-and-move"),
    pytest.param("Ready\x1b[1Cfor\x1b[3Cshortcuts\x1b[C!", "Ready for   shortcuts !",
                 id="cursor-forward-is-spaces"),
    pytest.param("\x1b[?25l\x1b[?2004hhidden\x1b[?25h", "hidden", id="private-modes"),
    pytest.param("\x1b[200~pasted\x1b[201~", "pasted", id="bracketed-paste-markers"),
    pytest.param("\x1b]0;window title\x07text", "text", id="osc-title-bel"),
    pytest.param("\x1b]8;;http://x.y\x1b\\link\x1b]8;;\x1b\\", "link", id="osc-hyperlink-st"),
    pytest.param("\x1bP+q544e\x1b\\after", "after", id="dcs"),
    pytest.param("\x1b(B\x1b7\x1b=text\x1b8", "text", id="short-escapes"),
    pytest.param("10%\r50%\r100%", "100%", id="carriage-return-redraw"),
    pytest.param("line one\r\nline two\r\n", "line one\nline two\n", id="crlf-is-a-newline"),
    pytest.param("done\r\r\n", "done\n", id="trailing-cr-keeps-text"),
    pytest.param("abd\bc", "abc", id="backspace"),
    pytest.param("\b\bx", "x", id="backspace-at-start"),
    pytest.param("bell\x07 nul\x00 del\x7f c1\x85", "bell nul del c1", id="other-controls"),
    pytest.param("\x9b31mc1 csi", "c1 csi", id="8-bit-csi"),
    pytest.param("héllo → ✓", "héllo → ✓", id="unicode-kept"),
    pytest.param("Agent ready\r\x1b[2B> ", "Agent ready\n> ", id="cr-then-move-down"),
    pytest.param("CURSES AGENT ready\r\x1b[50d> ", "CURSES AGENT ready\n> ",
                 id="curses-cr-then-row"),
    pytest.param("\x1b[3;1HWelcome\x1b[3;9Hto\x1b[3;12Hthe agent", "Welcome to the agent",
                 id="placed-along-a-row-is-spaced"),
    pytest.param("some header\x1b[4;1HREADY\x1b[K", "some header\nREADY",
                 id="placed-on-another-row-is-a-line"),
    pytest.param("a \x1b[5;1Hb\x1b[6;1H\x1b[7;1Hc", "a \nb\nc", id="one-break-per-move"),
    pytest.param("a\nb\x1b[1Ac\x1bMd", "a\nb\nc\nd", id="moves-up-and-reverse-index"),
])
def test_strip_terminal_noise(raw: str, clean: str) -> None:
    assert strip_terminal_noise(raw) == clean


# --- following ----------------------------------------------------------------------------


def append(path: pathlib.Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


def test_follower_starts_at_the_end_and_sees_appended_lines(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"before\n")
    follower = LogFollower(str(log))
    append(log, b"one\ntw")
    assert follower.poll() == [b"one"]
    append(log, b"o\n")
    assert follower.poll() == [b"two"]


def test_follower_from_start_reads_everything(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"before\n")
    assert LogFollower(str(log), from_start=True).poll() == [b"before"]


def test_idle_follower_stats_but_never_reads(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"before\n")
    follower = LogFollower(str(log))
    reads = count_reads(monkeypatch)
    assert [follower.poll() for _ in range(50)] == [[]] * 50
    assert reads == []


def test_follower_survives_rotation_without_losing_a_line(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"")
    follower = LogFollower(str(log))
    append(log, b"1\n2\n")
    assert follower.poll() == [b"1", b"2"]
    append(log, b"3\n")  # written, then rotated away before the next poll
    os.replace(log, tmp_path / "a.log.1")
    assert follower.poll() == [b"3"]
    log.write_bytes(b"4\n")
    assert follower.poll() == [b"4"]
    append(log, b"5\n")
    os.replace(log, tmp_path / "a.log.1")
    log.write_bytes(b"6\n")  # rotated and written again within one poll
    assert follower.poll() == [b"5", b"6"]


def rotating_writer(log: pathlib.Path, keep: int) -> logpipe.LogWriter:
    """The real writer (a cap no test reaches): rotations happen when `rotate()` is called."""
    return logpipe.LogWriter(str(log), max_bytes=1 << 30, keep=keep)


def test_follower_reads_every_file_rotated_between_two_polls(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    writer = rotating_writer(log, keep=5)
    follower = LogFollower(str(log))
    writer.write(numbered(3, 0))
    assert follower.poll() == [b"line 0", b"line 1", b"line 2"]
    writer.write(numbered(2, 3))  # the rest of the file the follower has open
    for block in range(3):  # three rotations, each file with its own lines
        writer.rotate()
        writer.write(numbered(4, 5 + 4 * block))
    assert follower.poll() == numbered(15, 2).split(b"\n")[1:-1]
    writer.write(numbered(1, 17))
    assert follower.poll() == [b"line 17"]
    writer.close()


def test_follower_loses_nothing_rotating_every_few_lines(tmp_path: pathlib.Path) -> None:
    """The review's repro: 3000 lines through a 4 KB cap, polled now and then."""
    log = tmp_path / "a.log"
    writer = logpipe.LogWriter(str(log), max_bytes=4096, keep=50)
    follower = LogFollower(str(log))
    lines = [b"%04d %s" % (i, b"x" * 54) for i in range(3000)]  # 60 bytes with the newline
    seen: list[bytes] = []
    for start in range(0, 3000, 300):  # 18 KB: four or five rotations between polls
        writer.write(b"".join(line + b"\n" for line in lines[start:start + 300]))
        seen += follower.poll()
    assert seen == lines
    writer.close()


def test_follower_rotated_past_keep_reads_what_survives_in_order(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    writer = rotating_writer(log, keep=2)
    follower = LogFollower(str(log))
    writer.write(b"open 0\n")
    assert follower.poll() == [b"open 0"]
    for block in range(4):  # the open file and the next one are dropped past LOG.2
        writer.rotate()
        writer.write(b"file %d\n" % block)
    assert follower.poll() == [b"file 1", b"file 2", b"file 3"]
    writer.rotate()
    writer.write(b"file 4\n")
    assert follower.poll() == [b"file 4"]
    writer.close()


def test_follower_ignores_leftovers_older_than_its_file(tmp_path: pathlib.Path) -> None:
    """Rotated files left by an earlier, larger `keep` are old news, not a gap to fill."""
    log = tmp_path / "a.log"
    for number in (1, 2, 3):
        leftover = tmp_path / f"a.log.{number}"
        leftover.write_bytes(b"stale %d\n" % number)
        os.utime(leftover, (1_000_000, 1_000_000))
    writer = rotating_writer(log, keep=0)
    follower = LogFollower(str(log))
    writer.write(b"one\n")
    writer.rotate()  # keep 0: the log is removed, a fresh one created
    writer.write(b"two\n")
    assert follower.poll() == [b"one", b"two"]
    writer.rotate()
    writer.write(b"three\n")
    assert follower.poll() == [b"three"]
    writer.close()


def test_follower_between_the_renames_of_a_rotation(tmp_path: pathlib.Path) -> None:
    """Polled mid-rotation (a hole in the numbers, or no LOG yet), nothing is skipped."""
    log, first, second = tmp_path / "a.log", tmp_path / "a.log.1", tmp_path / "a.log.2"
    log.write_bytes(b"")
    follower = LogFollower(str(log))
    append(log, b"a\n")
    os.replace(log, first)
    log.write_bytes(b"b\n")  # one rotation done; the next one stops half-way:
    os.replace(first, second)  # LOG.1 -> LOG.2 done, LOG -> LOG.1 not yet: LOG.1 is a hole
    assert follower.poll() == [b"a", b"b"]
    append(log, b"c\n")
    os.replace(log, first)  # LOG -> LOG.1, no fresh LOG yet
    assert follower.poll() == [b"c"]
    log.write_bytes(b"d\n")
    assert follower.poll() == [b"d"]


def test_follower_catching_up_reads_a_bounded_amount_per_poll(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logfiles, "MAX_READ_PER_POLL", 100)
    monkeypatch.setattr(logfiles, "FORWARD_BLOCK_SIZE", 64)
    log = tmp_path / "a.log"
    writer = rotating_writer(log, keep=10)
    follower = LogFollower(str(log))
    for block in range(6):
        writer.write(numbered(10, 10 * block))
        writer.rotate()
    reads = count_reads(monkeypatch)
    seen: list[bytes] = []
    polls = 0
    while polls == 0 or follower.behind:
        before = sum(reads)
        seen += follower.poll()
        assert sum(reads) - before <= 100
        polls += 1
        if polls == 2:  # more rotations while it is still catching up
            for block in range(6, 9):
                writer.write(numbered(10, 10 * block))
                writer.rotate()
    assert seen == numbered(90).split(b"\n")[:-1]
    assert polls >= 7  # ~750 bytes, 100 a poll
    writer.close()


def test_follower_restarts_after_truncation(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"a long first line\n")
    follower = LogFollower(str(log))
    log.write_bytes(b"short\n")  # truncated in place, then written
    assert follower.poll() == [b"short"]


def test_follower_waits_for_a_log_that_appears_later(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    follower = LogFollower(str(log))
    assert follower.poll() == []
    log.write_bytes(b"first\n")
    assert follower.poll() == [b"first"]


async def within(awaitable: AsyncIterator[T], timeout: float = 10.0) -> T:
    return await asyncio.wait_for(awaitable.__anext__(), timeout)


def run(coroutine: Callable[[], Coroutine[object, object, None]]) -> None:
    asyncio.run(coroutine())


def test_follow_yields_text_lines_across_rotation(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"old\n")

    async def body() -> None:
        lines = logfiles.follow(str(log), poll_interval=0.01)
        try:
            append(log, b"caf\xc3\xa9\r\nbad \xff\n")
            assert await within(lines) == "café"
            assert await within(lines) == "bad \ufffd"
            os.replace(log, tmp_path / "a.log.1")
            log.write_bytes(b"after rotation\n")
            assert await within(lines) == "after rotation"
        finally:
            await lines.aclose()

    run(body)


def test_follow_many_interleaves_agents_and_picks_up_late_logs(tmp_path: pathlib.Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"")
    followers = {"a": LogFollower(str(a)), "b": LogFollower(str(b))}

    async def body() -> None:
        stream = logfiles.follow_many(followers, poll_interval=0.01)
        try:
            append(a, b"from a\n")
            assert await within(stream) == ("a", "from a")
            b.write_bytes(b"from b, born late\n")
            assert await within(stream) == ("b", "from b, born late")
            append(a, b"a again\n")
            assert await within(stream) == ("a", "a again")
        finally:
            await stream.aclose()

    run(body)


def test_latest_start_is_the_last_start_marker_of_that_agent(tmp_path: pathlib.Path) -> None:
    from swarm_launch.logpipe import MARKER_PREFIX
    from swarm_launch.readiness import latest_start

    log = tmp_path / "a.log"
    first = f"{MARKER_PREFIX}agent a started 2026-01-01T00:00:00Z (pane %1) ---\n"
    second = f"{MARKER_PREFIX}agent a started 2026-01-02T00:00:00Z (pane %2) ---\n"
    other = f"{MARKER_PREFIX}agent ab started 2026-01-03T00:00:00Z (pane %3) ---\n"
    log.write_text(first + "old run\n" + second + "new run\n" + other + "x\n")
    assert latest_start(str(log), "a") == len(first + "old run\n")
    assert latest_start(str(log), "a", max_scan=len(second + "new run\n" + other + "x\n")) \
        == len(first + "old run\n")
    log.write_text(first + "only run\n")
    assert latest_start(str(log), "a") == 0
    log.write_text("rotated: no marker left\n")
    assert latest_start(str(log), "a") == 0
    assert latest_start(str(tmp_path / "none.log"), "a") == 0
