"""The pure tmux script builders and parsers, table-driven."""

from __future__ import annotations

import pytest

from swarm_launch.model import SendSettings
from swarm_launch.tmux_script import (
    AgentLaunch,
    WindowPlan,
    argv_for,
    assign_errors,
    check_launch,
    kill_panes_script,
    parse_listing,
    parse_spawn_output,
    parse_version,
    quote,
    signal_number,
    window_line,
)


@pytest.mark.parametrize(("word", "quoted"), [
    pytest.param("plain", "'plain'", id="plain"),
    pytest.param("it's", "'it'\\''s'", id="single-quote"),
    pytest.param("a\n  b", "'a'\"\\n\"'  b'", id="newline-leaves-the-quotes"),
    pytest.param("$x ~ #{y} ;", "'$x ~ #{y} ;'", id="specials-stay-literal"),
    pytest.param("", "''", id="empty"),
])
def test_quote(word: str, quoted: str) -> None:
    assert quote(word) == quoted


@pytest.mark.parametrize(("command", "argv"), [
    pytest.param("echo hi", ("/bin/sh", "-c", "echo hi"), id="string-via-sh"),
    pytest.param(("prog",), ("/bin/sh", "-c", 'exec "$0"', "prog"), id="one-word-exec"),
    pytest.param(("prog", "a"), ("prog", "a"), id="argv-as-is"),
])
def test_argv_for(command: str | tuple[str, ...], argv: tuple[str, ...]) -> None:
    assert argv_for(command) == argv


@pytest.mark.parametrize("launch", [
    pytest.param(AgentLaunch("", "x"), id="empty-id"),
    pytest.param(AgentLaunch("a b", "x"), id="space-in-id"),
    pytest.param(AgentLaunch("../../x", "x"), id="path-out-of-the-logs-dir"),
    pytest.param(AgentLaunch("a/b", "x"), id="slash-in-id"),
    pytest.param(AgentLaunch("-a", "x"), id="read-as-an-option"),
    pytest.param(AgentLaunch("a:1", "x"), id="tmux-target-syntax"),
    pytest.param(AgentLaunch("a", ()), id="empty-argv"),
    pytest.param(AgentLaunch("a", "x", env={"A=B": "1"}), id="equals-in-key"),
    pytest.param(AgentLaunch("a", "x", env={"A": "nul\x00"}), id="nul-in-value"),
])
def test_check_launch_refuses(launch: AgentLaunch) -> None:
    with pytest.raises(ValueError, match="agent"):
        check_launch(launch)


def test_window_line_is_one_list_with_tags_and_log() -> None:
    launch = AgentLaunch("a", ("prog", "x;"), env={"K": "v#"}, workdir="/w#1",
                         config_hash="h", send=SendSettings("C-m", 300))
    text = window_line("swarm-c", "c", WindowPlan(launch, 4, "cat >> /l", 12.5))
    assert "\n" not in text
    assert text.startswith("new-window -d -t '=swarm-c:4' -n 'agent-a' -P -F")
    for part in ("-e 'K=v#'", "-c '/w##1'", "-- 'prog' 'x;' ;",
                 "set-option -p -t '=swarm-c:4' remain-on-exit on",
                 "@swarm_hash 'h'", "@swarm_started '12.500'", "@swarm_submit_key 'C-m'",
                 "@swarm_submit_delay_ms '300'", "pipe-pane -O -t '=swarm-c:4' 'cat >> /l'"):
        assert part in text


def test_default_send_settings_cost_no_option() -> None:
    text = window_line("swarm-c", "c", WindowPlan(AgentLaunch("a", "x"), 1, "cat", 1.0))
    assert "@swarm_submit" not in text
    assert text.count("set-option") == 5  # remain-on-exit, cluster, agent, hash, started


def test_parse_spawn_output() -> None:
    out = parse_spawn_output("+session\n+created a %1 @1 $0\n+done a\n+created b %2 @2 $0\n")
    assert out.created == {"a": ("%1", "@1", "$0"), "b": ("%2", "@2", "$0")}
    assert (out.done, out.session_ok) == (frozenset({"a"}), True)


@pytest.mark.parametrize(("failed", "stderr", "session_failed", "expected"), [
    pytest.param(["b"], "index 2 in use\n", False, ("", {"b": "index 2 in use"}),
                 id="one-to-one"),
    pytest.param(["a", "b"], "dup\nno session\nno session\n", True,
                 ("dup", {"a": "no session", "b": "no session"}), id="session-first"),
    pytest.param(["a", "b"], "e1\n", False, ("", {"a": "e1", "b": "e1"}), id="mismatch"),
])
def test_assign_errors(failed: list[str], stderr: str, session_failed: bool,
                       expected: tuple[str, dict[str, str]]) -> None:
    assert assign_errors(failed, stderr, session_failed=session_failed) == expected


def test_kill_script_is_one_line_per_pane() -> None:
    assert kill_panes_script(["%1", "%2"]) == "kill-pane -t '%1'\nkill-pane -t '%2'\n"


def test_parse_listing_reads_send_settings_with_defaults() -> None:
    sep = "\x1f"
    base = sep.join(["%1", "@1", "1", "$0", "42", "0", "", "", "c", "a", "h", "1.0",
                     "0", "", ""])
    (pane, settings), (_, defaults) = parse_listing(
        f"{base}{sep}C-m{sep}300\n{base}{sep}{sep}\n")
    assert (pane.agent_id, pane.pid, settings) == ("a", 42, SendSettings("C-m", 300))
    assert defaults == SendSettings()


@pytest.mark.parametrize(("text", "version"), [
    pytest.param("tmux 3.3a\n", (3, 3), id="release"),
    pytest.param("tmux 3.2", (3, 2), id="plain"),
    pytest.param("tmux next-3.5", (3, 5), id="next"),
    pytest.param("tmux master", (99, 0), id="master"),
])
def test_parse_version(text: str, version: tuple[int, int]) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("name", ["TERM", "SIGTERM", "term", "15"])
def test_signal_number(name: str) -> None:
    assert signal_number(name) == 15


def test_unknown_signal() -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        signal_number("NOPE")
