"""`swarm-launch logs`: prefixes, agent selection, --tail, --since, --raw, -f, errors."""

from __future__ import annotations

import datetime
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Iterator, Mapping
from typing import Any

import pytest

from swarm_launch import logfiles
from swarm_launch.commands import logs
from tests.helpers import invoke

SPEC = """\
version: 1
name: team
agents:
  planner:
    command: sleep 100
  coder:
    command: sleep 100
    replicas: 3
"""


@pytest.fixture
def spec(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "swarm.yaml"
    path.write_text(SPEC)
    return str(path)


@pytest.fixture
def logs_dir(isolated_environment: pathlib.Path) -> pathlib.Path:
    path = isolated_environment / "team" / "logs"
    path.mkdir(parents=True, mode=0o700)
    os.chmod(isolated_environment, 0o700)
    return path


def write_log(path: pathlib.Path, entries: list[tuple[float, bytes]]) -> None:
    """A log and its time index, as the writer leaves them."""
    data, index = b"", b""
    for second, chunk in entries:
        index += b"%d %d\n" % (int(second), len(data))
        data += chunk
    path.write_bytes(data)
    pathlib.Path(f"{path}.idx").write_bytes(index)


def test_several_agents_with_padded_prefixes_in_spec_order(
    spec: str, logs_dir: pathlib.Path
) -> None:
    (logs_dir / "planner.log").write_bytes(b"plan A\r\nplan B\r\n")
    (logs_dir / "coder-1.log").write_bytes(b"coding\n")
    result = invoke("logs", spec)
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["planner | plan A", "planner | plan B",
                                       "coder-1 | coding"]


def test_replicated_id_selects_its_replicas_and_a_replica_itself(
    spec: str, logs_dir: pathlib.Path
) -> None:
    for replica in range(3):
        (logs_dir / f"coder-{replica}.log").write_bytes(b"I am %d\n" % replica)
    (logs_dir / "planner.log").write_bytes(b"plan\n")
    assert invoke("logs", spec, "coder").out.splitlines() == [
        "coder-0 | I am 0", "coder-1 | I am 1", "coder-2 | I am 2"]
    assert invoke("logs", spec, "coder-2", "planner").out.splitlines() == [
        "coder-2 | I am 2", "planner | plan"]


def test_tail_is_per_agent(spec: str, logs_dir: pathlib.Path) -> None:
    (logs_dir / "planner.log").write_bytes(b"p1\np2\np3\n")
    (logs_dir / "coder-0.log").write_bytes(b"c1\nc2\nc3\n")
    result = invoke("logs", spec, "--tail", "2", "planner", "coder-0")
    assert result.out.splitlines() == ["planner | p2", "planner | p3",
                                       "coder-0 | c2", "coder-0 | c3"]


@pytest.mark.parametrize("since", [
    pytest.param("1h", id="duration"),
    pytest.param(datetime.datetime.fromtimestamp(time.time() - 3600, datetime.timezone.utc)
                 .strftime("%Y-%m-%dT%H:%M:%SZ"), id="iso-utc"),
])
def test_since_skips_older_output(spec: str, logs_dir: pathlib.Path, since: str) -> None:
    now = time.time()
    write_log(logs_dir / "planner.log", [(now - 7200, b"two hours ago\n"), (now - 5, b"now\n")])
    result = invoke("logs", spec, "planner", "--since", since)
    assert result.out.splitlines() == ["planner | now"]


def test_bad_since_is_a_user_error(spec: str) -> None:
    result = invoke("logs", spec, "--since", "yesterday")
    assert result.code == 1
    assert "--since 'yesterday'" in result.err and "10s, 5m, 2h, 1d" in result.err


@pytest.mark.parametrize(("text", "seconds_ago"), [
    pytest.param("10s", 10, id="seconds"),
    pytest.param("5m", 300, id="minutes"),
    pytest.param("2h", 7200, id="hours"),
    pytest.param("1d", 86400, id="days"),
    pytest.param("1.5h", 5400, id="fraction"),
])
def test_parse_since_durations(text: str, seconds_ago: int) -> None:
    assert logs.parse_since(text, now=100_000.0) == 100_000.0 - seconds_ago


@pytest.mark.parametrize("text", ["0001-01-01", "1969-01-01T00:00:00Z", "9" * 400 + "d"])
def test_since_a_moment_before_any_log_means_from_the_beginning(
    spec: str, logs_dir: pathlib.Path, text: str
) -> None:
    """Older than the epoch, or than a float can hold: everything, not a crash (exit 3)."""
    write_log(logs_dir / "planner.log", [(1000.0, b"first\n"), (2000.0, b"second\n")])
    result = invoke("logs", spec, "planner", "--since", text)
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["planner | first", "planner | second"]


def test_parse_since_iso_times() -> None:
    assert logs.parse_since("1970-01-02T00:00:00Z", now=0) == 86400
    assert logs.parse_since("1970-01-02T01:00:00+01:00", now=0) == 86400


def test_noise_is_stripped_unless_raw(spec: str, logs_dir: pathlib.Path) -> None:
    (logs_dir / "planner.log").write_bytes(b"\x1b[31mred\x1b[0m\r\n\x1b[?25l\r\n10%\r100%\n")
    assert invoke("logs", spec, "planner").out.splitlines() == [
        "planner | red", "planner | 100%"]  # the escape-only line is dropped
    raw = invoke("logs", spec, "planner", "--raw").out
    assert raw.splitlines()[0] == "planner | \x1b[31mred\x1b[0m"
    assert "\x1b[?25l" in raw and "10%\r100%" in raw


def test_every_row_of_a_screen_drawn_with_cursor_moves_carries_its_agent(
    spec: str, logs_dir: pathlib.Path
) -> None:
    """A TUI moves the cursor rather than print newlines: its rows are the agent's too,
    and the rows the moves skipped are not printed as blank lines of nobody's."""
    (logs_dir / "planner.log").write_bytes(b"row1\x1b[5;1Hrow5\n")
    assert invoke("logs", spec, "planner").out.splitlines() == [
        "planner | row1", "planner | row5"]


def test_ctrl_c_while_logs_f_still_prints_the_history_ends_it_with_0(
    spec: str, logs_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: where Ctrl-C is how a command ends (`logs -f`), it exits 0; also before it
    has got to following. Without -f, an interrupted `logs` is 130, as elsewhere."""
    (logs_dir / "planner.log").write_bytes(b"line\n")

    def interrupted(*args: object, **kwargs: object) -> Iterator[bytes]:
        raise KeyboardInterrupt
        yield b""

    monkeypatch.setattr(logfiles, "iter_lines", interrupted)
    following = invoke("logs", spec, "planner", "-f")
    assert (following.code, following.err) == (0, "")
    assert invoke("logs", spec, "planner").code == 130


@pytest.mark.parametrize("follow", [[], ["-f"]])
def test_a_reader_gone_ends_logs_with_0(
    spec: str, logs_dir: pathlib.Path, follow: list[str]
) -> None:
    """`logs | head -1`, `logs -f | grep -m1 ready`: the reader has what it wanted, so
    that is success (click made it 1); and -f stops rather than follow for nobody."""
    (logs_dir / "planner.log").write_bytes(b"".join(b"line %d\n" % i for i in range(50_000)))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        cli = subprocess.Popen([sys.executable, "-m", "swarm_launch", "logs", spec, "planner",
                                *follow], stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    _, err = cli.communicate(timeout=60)
    assert (cli.returncode, err) == (0, b"")


def test_unknown_agent_lists_the_known_ones(spec: str) -> None:
    result = invoke("logs", spec, "planner", "nobody")
    assert result.code == 1
    assert "no agent 'nobody' in swarm team" in result.err
    assert "planner, coder (coder-0..coder-2)" in result.err


def test_unknown_agent_with_an_entry_of_no_replicas(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "z.yaml"
    path.write_text("version: 1\nname: z\nagents:\n  b: {command: x, replicas: 2}\n"
                    "  z: {command: x, replicas: 0}\n")
    result = invoke("logs", str(path), "nope")
    assert result.code == 1
    assert "b (b-0..b-1), z (replicas: 0)" in result.err


def test_no_logs_yet_is_a_clear_message_and_success(spec: str) -> None:
    result = invoke("logs", spec)
    assert result.code == 0
    assert result.out == ""
    assert "no logs yet for swarm team" in result.err


def test_colours_only_on_a_terminal() -> None:
    plain = logs.Printer(["a", "bb"], colour=False, raw=False)
    assert plain.text("a", b"x") == "a  | x"
    coloured = logs.Printer(["a", "bb"], colour=True, raw=False)
    prefixes = {coloured.text(agent, b"x") or "" for agent in ("a", "bb")}
    assert len(prefixes) == 2 and all("\x1b[" in prefix for prefix in prefixes)


def stop_after(count: int, *, then_write: Mapping[pathlib.Path, bytes],
               monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `logs -f` write to logs once following, and press Ctrl-C after `count` lines."""
    real = logfiles.follow_many

    async def scripted(followers: Mapping[str, logfiles.LogFollower], *, poll_interval: float,
                       discover: Any = None) -> AsyncGenerator[tuple[str, str], None]:
        stream = real(followers, poll_interval=0.01, discover=discover, discover_every_s=0)
        for path, data in then_write.items():
            with path.open("ab") as handle:
                handle.write(data)
        seen = 0
        async for item in stream:
            yield item
            seen += 1
            if seen == count:
                raise KeyboardInterrupt

    monkeypatch.setattr(logfiles, "follow_many", scripted)


def test_following_the_whole_swarm_picks_up_an_agent_started_later(
    spec: str, logs_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (logs_dir / "planner.log").write_bytes(b"old\n")
    stop_after(2, then_write={logs_dir / "planner.log": b"live\n",
                              logs_dir / "newcomer.log": b"first words\n"},
               monkeypatch=monkeypatch)
    result = invoke("logs", spec, "-f", "--tail", "0")
    assert result.code == 0
    assert sorted(result.out.splitlines()) == ["newcomer | first words", "planner | live"]


def test_follow_continues_the_tail_without_gap_or_repeat_and_ctrl_c_exits_0(
    spec: str, logs_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (logs_dir / "planner.log").write_bytes(b"old 1\nold 2\n")
    stop_after(2, then_write={logs_dir / "planner.log": b"live 1\n",
                              logs_dir / "coder-0.log": b"born late\n"}, monkeypatch=monkeypatch)
    result = invoke("logs", spec, "planner", "coder", "-f", "--tail", "1")
    assert result.code == 0
    assert result.out.splitlines() == ["planner | old 2", "planner | live 1",
                                       "coder-0 | born late"]


def test_follow_started_mid_line_prints_that_line_whole(
    spec: str, logs_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history ends, and the follow begins, where the unfinished line starts: not in
    its middle (which cut it in two, and a character with it)."""
    (logs_dir / "planner.log").write_bytes("first line\nhalf emoji \U0001f389".encode()[:-2])
    stop_after(1, then_write={logs_dir / "planner.log": "\U0001f389".encode()[-2:]
                              + b" done\n"}, monkeypatch=monkeypatch)
    result = invoke("logs", spec, "planner", "-f")
    assert result.code == 0
    assert result.out.splitlines() == ["planner | first line",
                                       "planner | half emoji \U0001f389 done"]


def test_follow_shows_an_unfinished_line_once_it_is_quiet(
    spec: str, logs_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt waiting for input, a full-screen program placing text by cursor moves:
    no newline may ever come."""
    (logs_dir / "planner.log").write_bytes(b"")
    stop_after(1, then_write={logs_dir / "planner.log": b"\x1b[3;1HCURSES AGENT ready> "},
               monkeypatch=monkeypatch)
    result = invoke("logs", spec, "planner", "-f")
    assert result.code == 0
    assert result.out.splitlines() == ["planner | CURSES AGENT ready> "]


def test_follow_shows_an_agent_gone_from_the_spec_from_now_only(
    spec: str, logs_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its history is not the spec's (`logs` leaves it out): not dumped as a newcomer's."""
    (logs_dir / "planner.log").write_bytes(b"old\n")
    (logs_dir / "removed.log").write_bytes(b"".join(b"history %d\n" % i for i in range(50)))
    stop_after(2, then_write={logs_dir / "removed.log": b"still talking\n",
                              logs_dir / "planner.log": b"live\n"}, monkeypatch=monkeypatch)
    result = invoke("logs", spec, "-f", "--tail", "1")
    assert result.code == 0
    assert sorted(result.out.splitlines()) == ["planner | live", "planner | old",
                                               "removed | still talking"]


@pytest.mark.parametrize("name", ["planner.log", "planner.log.1"])
def test_a_directory_or_symlink_in_place_of_a_log_is_an_error_naming_it(
    spec: str, logs_dir: pathlib.Path, tmp_path: pathlib.Path, name: str
) -> None:
    """The writer cannot open such a log (or refuses it): `logs` must say so, not crash
    (a directory: IsADirectoryError, exit 3) nor print a symlink's target."""
    (tmp_path / "elsewhere").write_bytes(b"someone else's file\n")
    (logs_dir / "coder-0.log").symlink_to(tmp_path / "elsewhere")
    (logs_dir / name).mkdir()
    for agent, path in (("planner", logs_dir / name), ("coder-0", logs_dir / "coder-0.log")):
        result = invoke("logs", spec, agent)
        assert result.code == 1, result
        assert result.err.startswith(f"error: {path} is a "), result.err
        assert "someone else" not in result.out
