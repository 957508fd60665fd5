"""send, broadcast, capture and logs through the CLI, against real programs in panes."""

from __future__ import annotations

import json
import pathlib
import sys
import textwrap

import pytest
from libtmux import Server

from tests.agents import agent
from tests.helpers import invoke, wait_until

pytestmark = pytest.mark.tmux
PY = sys.executable


def echo_spec(tmp_path: pathlib.Path, names: list[str], extra: str = "") -> str:
    body = "".join(
        f"{n}:\n  command: [{PY}, -u, {agent('echo_loop')}, {tmp_path / n}.out]\n"
        f"  send: {{submit_delay_ms: 50}}\n{textwrap.indent(extra, '  ')}" for n in names)
    path = tmp_path / "io.yaml"
    path.write_text("version: 1\nname: io\nagents:\n" + textwrap.indent(body, "  "))
    return str(path)


def submissions(tmp_path: pathlib.Path, name: str) -> list[str]:
    path = tmp_path / f"{name}.out"
    if not path.exists():
        return []
    # Whole lines only: the agent may be between two pieces of a long line.
    records = [json.loads(line) for line in path.read_text().split("\n")[:-1]]
    return [r["text"] for r in records if "text" in r]


def ready(tmp_path: pathlib.Path, *names: str) -> None:
    wait_until(lambda: all((tmp_path / f"{n}.out").exists() for n in names),
               message=f"{', '.join(names)} ready")


def test_send_from_stdin_is_one_submission_with_its_lines(
    server: Server, tmp_path: pathlib.Path
) -> None:
    spec = echo_spec(tmp_path, ["a"])
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", spec).code == 0
    ready(tmp_path, "a")
    message = "first line\nEnter C-c; 'quoted' \"double\" héllo ✓;"
    result = invoke("-L", sock, "send", spec, "a", input=message + "\n")
    assert result.code == 0, result.err
    got = wait_until(lambda: submissions(tmp_path, "a"), message="submission")
    assert got == [message]


def test_send_from_stdin_takes_crlf_lines_and_any_bytes(
    server: Server, tmp_path: pathlib.Path
) -> None:
    """A file from Windows: its CRs would be key presses of their own. Bytes that are
    not UTF-8 (whatever the locale's encoding) reach the agent as they came."""
    spec = echo_spec(tmp_path, ["a"])
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", spec).code == 0
    ready(tmp_path, "a")
    result = invoke("-L", sock, "send", spec, "a", input=b"line1\r\nline2 \xff\r\n")
    assert result.code == 0, result.err
    got = wait_until(lambda: submissions(tmp_path, "a"), message="submission")
    assert got == ["line1\nline2 \ufffd"]  # the agent decodes with replacement


def test_an_env_value_that_is_not_utf8_reaches_the_agent_byte_for_byte(
    server: Server, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exported value with a byte that is not UTF-8 (a Latin-1 file name, say):
    hashing it crashed up, plan, status and even down (exit 3)."""
    monkeypatch.setenv("LATIN", "caf\udce9")  # the byte 0xe9, as os.environ holds it
    out = tmp_path / "got"
    script = tmp_path / "dump_v.py"
    script.write_text(f"import os, time\nopen({str(out)!r}, 'wb').write(os.environb[b'V'])\n"
                      "time.sleep(60)\n")
    path = tmp_path / "bytes.yaml"
    path.write_text("version: 1\nname: bytes\nagents:\n  a:\n"
                    f"    command: [{PY}, {script}]\n    env: {{V: '${{LATIN}}'}}\n")
    sock, spec = str(server.socket_name), str(path)
    for command in ("plan", "up", "status"):
        result = invoke("-L", sock, command, spec)
        assert result.code == 0, (command, result.err)
    assert wait_until(lambda: out.exists() and out.read_bytes()) == b"caf\xe9"
    assert invoke("-L", sock, "down", spec).code == 0


def test_text_given_as_an_argument_is_sent_as_from_stdin(
    server: Server, tmp_path: pathlib.Path
) -> None:
    """`send A "$var"` with a trailing newline or CRLF lines: one submission, as when the
    same text comes on stdin, not extra empty ones."""
    spec = echo_spec(tmp_path, ["a"])
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", spec).code == 0
    ready(tmp_path, "a")
    assert invoke("-L", sock, "send", spec, "a", "one\r\ntwo\n").code == 0
    got = wait_until(lambda: submissions(tmp_path, "a"), message="submission")
    assert got == ["one\ntwo"]


def test_a_spec_entry_with_replicas_is_all_of_them_for_only_and_named_for_send(
    server: Server, tmp_path: pathlib.Path
) -> None:
    """As in `logs` and `depends_on`: `--only rep` reaches its replicas; `send rep`, which
    takes one agent, says which ids to name instead of 'no agent rep'."""
    path = tmp_path / "io.yaml"
    path.write_text(
        "version: 1\nname: io\nagents:\n  rep:\n    replicas: 2\n"
        f"    command: {PY} -u {agent('echo_loop')} {tmp_path}/$SWARM_AGENT_ID.out\n"
        "    send: {submit_delay_ms: 50}\n")
    sock, spec = str(server.socket_name), str(path)
    assert invoke("-L", sock, "up", spec).code == 0
    ready(tmp_path, "rep-0", "rep-1")
    assert invoke("-L", sock, "broadcast", spec, "to both", "--only", "rep").code == 0
    wait_until(lambda: submissions(tmp_path, "rep-0") == submissions(tmp_path, "rep-1")
               == ["to both"], message="both replicas")
    for command in (("send", spec, "rep", "hi"), ("capture", spec, "rep")):
        refused = invoke("-L", sock, *command)
        assert (refused.code, refused.err) == (1, "error: 'rep' is a spec entry with "
                                                  "replicas (rep-0, rep-1): name one of them\n")
    for command in (("send", spec, "nobody", "hi"), ("capture", spec, "nobody")):
        refused = invoke("-L", sock, *command)
        assert (refused.code, refused.err) == (1, "error: no agent 'nobody' in swarm 'io'; "
                                                  "its agents are: rep-0, rep-1\n")


def test_broadcast_only_reaches_exactly_the_named_agents(
    server: Server, tmp_path: pathlib.Path
) -> None:
    spec = echo_spec(tmp_path, ["a", "b", "c"])
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", spec).code == 0
    ready(tmp_path, "a", "b", "c")
    assert invoke("-L", sock, "broadcast", spec, "hi all", "--only", "a,c").code == 0
    wait_until(lambda: submissions(tmp_path, "a") and submissions(tmp_path, "c"))
    assert invoke("-L", sock, "broadcast", spec, "second").code == 0
    wait_until(lambda: submissions(tmp_path, "b"), message="b got the broadcast")
    assert submissions(tmp_path, "b") == ["second"]
    wait_until(lambda: len(submissions(tmp_path, "a")) == 2)
    assert submissions(tmp_path, "a") == ["hi all", "second"]


def test_broadcast_names_the_agents_it_skipped_because_they_exited(
    server: Server, tmp_path: pathlib.Path
) -> None:
    spec = echo_spec(tmp_path, ["a"])
    with open(spec, "a", encoding="utf-8") as handle:
        handle.write("  gone: {command: 'exit 0'}\n")
    sock = str(server.socket_name)
    invoke("-L", sock, "up", spec)  # fails if gone is already dead: it has no restart policy
    ready(tmp_path, "a")
    wait_until(lambda: "gone 1" in server.cmd(
        "list-panes", "-a", "-F", "#{@swarm_agent} #{pane_dead}").stdout, message="gone dead")
    result = invoke("-L", sock, "broadcast", spec, "hello")
    assert result.code == 0, result.err
    assert result.err == "sent to 1 agent; skipped gone: exited, nothing sent\n"
    wait_until(lambda: submissions(tmp_path, "a"), message="a got the broadcast")
    quiet = invoke("-L", sock, "broadcast", spec, "again", "--only", "a")
    assert (quiet.code, quiet.err) == (0, "")
    named = invoke("-L", sock, "broadcast", spec, "again", "--only", "gone")
    assert (named.code, named.err) == (1, "error: agent gone has exited; nothing was sent\n")


def test_broadcast_only_unknown_agent_is_an_error(
    server: Server, tmp_path: pathlib.Path
) -> None:
    spec = echo_spec(tmp_path, ["a"])
    assert invoke("-L", str(server.socket_name), "up", spec).code == 0
    result = invoke("-L", str(server.socket_name), "broadcast", spec, "x", "--only", "nope")
    assert result.code == 1
    assert "nope" in result.err


def test_send_to_a_dead_agent_is_a_clear_error(server: Server, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "dead.yaml"
    path.write_text("version: 1\nname: io\nagents:\n  gone:\n    command: exit 4\n")
    sock = str(server.socket_name)
    invoke("-L", sock, "up", str(path))  # 1 once it sees `gone` dead: not what is tested
    wait_until(lambda: '"failed"' in invoke("-L", sock, "status", str(path), "--json").out)
    result = invoke("-L", sock, "send", str(path), "gone", "hello")
    assert result.code == 1
    assert result.err.startswith("error: agent gone has exited")


def captured(sock: str, spec: str, agent_id: str, drawn: str, *flags: str) -> str:
    """`capture` output once it shows `drawn`."""
    def screen() -> str | None:
        text = invoke("-L", sock, "capture", spec, agent_id, *flags).out
        return text if drawn in text else None

    return wait_until(screen, message=f"{drawn!r} drawn")


def test_capture_shows_a_curses_screen(server: Server, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "tui.yaml"
    path.write_text(f"version: 1\nname: io\nagents:\n  tui:\n"
                    f"    command: [{PY}, {agent('curses_app')}]\n")
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", str(path)).code == 0
    screen = captured(sock, str(path), "tui", "CURSES-SCREEN-OK")
    assert "second line of the screen" in screen


def test_capture_ansi_keeps_the_colours_when_piped(server: Server, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "col.yaml"
    path.write_text("version: 1\nname: io\nagents:\n  col:\n"
                    "    command: \"printf '\\\\033[31mRED\\\\033[0m\\\\n'; exec sleep 600\"\n")
    sock = str(server.socket_name)
    assert invoke("-L", sock, "up", str(path)).code == 0
    assert "\x1b[31mRED" in captured(sock, str(path), "col", "RED", "--ansi")


def test_logs_survive_a_replace(server: Server, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "log.yaml"

    def write(word: str) -> None:
        path.write_text(f"version: 1\nname: io\nagents:\n  talker:\n"
                        f"    command: echo said-{word}; sleep 600\n")

    sock = str(server.socket_name)
    write("one")
    assert invoke("-L", sock, "up", str(path)).code == 0
    wait_until(lambda: "said-one" in invoke("-L", sock, "logs", str(path)).out)
    write("two")
    assert invoke("-L", sock, "up", str(path)).code == 0
    def both_runs() -> str | None:
        text = invoke("-L", sock, "logs", str(path), "--raw").out
        return text if "said-two" in text else None

    out = wait_until(both_runs, message="second run logged")
    assert out.index("said-one") < out.index("said-two")
    assert out.count("--- swarm-launch: agent talker started") == 2


def test_a_fast_printer_in_a_pane_loses_no_line(server: Server, tmp_path: pathlib.Path,
                                               isolated_environment: pathlib.Path) -> None:
    path = tmp_path / "fast.yaml"
    path.write_text("version: 1\nname: io\nagents:\n  fast:\n"
                    f"    command: [{PY}, -c, 'import sys; sys.stdout.writelines(\"%d\\n\" % i "
                    "for i in range(200000)); sys.stdout.flush()']\n")
    assert invoke("-L", str(server.socket_name), "up", str(path)).code == 0
    log = isolated_environment / "io" / "logs" / "fast.log"

    def numbers() -> list[str] | None:
        lines = [line.rstrip("\r") for line in log.read_text().splitlines()
                 if not line.startswith("--- swarm-launch")] if log.exists() else []
        return lines if lines[-1:] == ["199999"] else None

    logged = wait_until(numbers, timeout=60, message="all 200,000 lines logged")
    expected = [str(i) for i in range(200000)]
    missing = sorted(set(expected) - set(logged), key=int)[:5]
    assert logged == expected, f"{len(logged)} lines logged; first missing: {missing}"
