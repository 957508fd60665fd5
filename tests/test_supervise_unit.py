"""supervise.py's decisions and tmux_script's restart lines, without tmux."""

from __future__ import annotations

import pathlib
import subprocess
import time

import pytest

from swarm_launch import logfiles, observed, supervise
from swarm_launch.model import Backoff, LogSettings, RestartPolicy
from swarm_launch.tmux_script import (
    AgentLaunch,
    WindowPlan,
    respawn_command,
    restart_commands,
    server_environment,
)


def test_option_names_match_the_observation() -> None:
    assert (supervise.OPT_STARTED, supervise.OPT_RESTARTS, supervise.OPT_NEXT_RESTART,
            supervise.OPT_GAVE_UP, supervise.OPT_AGENT) == (
        observed.OPT_STARTED, observed.OPT_RESTARTS, observed.OPT_NEXT_RESTART,
        observed.OPT_GAVE_UP, observed.OPT_AGENT)


def test_backoff_grows_and_caps() -> None:
    assert [supervise.backoff_delay("0.5:3:2", n) for n in range(5)] == [0.5, 1, 2, 3, 3]
    assert supervise.backoff_delay("1:60:10", 10_000) == 60


def test_which_exits_restart() -> None:
    def dead(mode: str, status: str = "", sig: str = "") -> dict[str, str]:
        return {"pane_dead": "1", supervise.MODE: mode, "pane_dead_status": status,
                "pane_dead_signal": sig}

    assert supervise.wants_restart(dead("on-failure", "1"))
    assert supervise.wants_restart(dead("on-failure", sig="9"))
    assert not supervise.wants_restart(dead("on-failure", "0"))
    assert supervise.wants_restart(dead("always", "0"))
    assert not supervise.wants_restart(dead("never", "1"))
    assert not supervise.wants_restart({**dead("always", "1"), "pane_dead": "0"})
    assert supervise.exit_code(dead("x", sig="15")) == 143
    # The log says it as `plan` does ("killed by signal 9"), not as a shell's 137.
    assert supervise.exit_words(dead("x", sig="9")) == "was killed by signal 9"
    assert supervise.exit_words(dead("x", "3")) == "exited with code 3"


def test_counter_resets_after_a_stable_run() -> None:
    state = {supervise.OPT_RESTARTS: "4", supervise.RESET_AFTER: "60",
             supervise.OPT_STARTED: "1000"}
    assert supervise.restarts_so_far(state, now=1059) == 4
    assert supervise.restarts_so_far(state, now=1060) == 0


def test_give_up_line_goes_on_a_line_of_its_own(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"partial")
    supervise.append_log(str(log), "gave up")
    assert log.read_bytes() == b"partial\ngave up\n"


def test_a_line_supervise_writes_is_found_by_since(tmp_path: pathlib.Path) -> None:
    """The writer indexes its own writes; a give-up line written later must not hide
    from `logs --since` (it is the one line that says why the agent is down)."""
    log = tmp_path / "a.log"
    log.write_bytes(b"old output\n")
    (tmp_path / "a.log.idx").write_bytes(b"1000 0\n")
    before = time.time()
    supervise.append_log(str(log), "gave up")
    offset = logfiles.since(str(log), before)
    assert log.read_bytes()[offset:] == b"gave up\n"


def test_secret_named_variables_are_dropped() -> None:
    env = {"OPENAI_API_KEY": "x", "gh_token": "x", "DB_PASSWORD": "x", "MY_PASSWD": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "GOOGLE_CREDENTIALS": "x", "PRIVATE_X": "x",
           "SSH_AUTH_SOCK": "/s", "PATH": "/bin", "HOME": "/h", "TMUX_TMPDIR": "/t"}
    assert server_environment(env) == {"SSH_AUTH_SOCK": "/s", "PATH": "/bin", "HOME": "/h",
                                       "TMUX_TMPDIR": "/t"}


def plan_for(mode: str) -> WindowPlan:
    launch = AgentLaunch("a", ("prog", "x"), env={"K": "it's #{x}"}, workdir="/w#1",
                         logs=LogSettings(), restart=RestartPolicy(
                             mode, 2, Backoff(0.5, 4, 3), 30))  # type: ignore[arg-type]
    return WindowPlan(launch, 1, "exec log ##x #{pane_id}", 0.0, log_path="/l/a.log",
                      hook_command="HOOK")


def test_never_adds_nothing() -> None:
    assert restart_commands("'=s:1'", plan_for("never")) == []


def test_restart_lines_hold_the_policy_and_the_hook() -> None:
    words = [" ".join(c) for c in restart_commands("'=s:1'", plan_for("on-failure"))]
    assert "set-option -p -t '=s:1' @swarm_restart 'on-failure 2 0.5:4:3 30 /l/a.log'" in words
    assert not any("@swarm_log" in command for command in words)  # one option, not two
    policy = supervise.split_policy("on-failure 2 0.5:4:3 30 /my logs/a  b.log")
    assert policy == {supervise.MODE: "on-failure", supervise.MAX_RESTARTS: "2",
                      supervise.BACKOFF: "0.5:4:3", supervise.RESET_AFTER: "30",
                      supervise.LOG: "/my logs/a  b.log"}
    assert supervise.split_policy("") == {}
    assert words[-1] == "set-hook -p -t '=s:1' pane-died 'run-shell -b '\\''HOOK'\\'''"


def test_respawn_command_escapes_everything_but_the_pane_id() -> None:
    text = respawn_command(plan_for("always"))
    assert text == ("respawn-pane -t #{pane_id} -e 'K=it'\\''s ##{x}' -c '/w####1' -- "
                    "'prog' 'x' ; pipe-pane -O -t #{pane_id} 'exec log ####x ##{pane_id}'")


class FakeTmux(supervise.Tmux):
    def __init__(self, listing: str) -> None:
        super().__init__("tmux", "/s")
        self.listing = listing

    def run(self, *args: str, stdin: bytes | None = None) -> str | None:
        return self.listing


def test_the_batch_watcher_picks_recent_agents_with_a_policy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now, sep = time.time(), supervise.SEPARATOR
    listing = "".join(sep.join(row) + "\n" for row in [
        ("11", "on-failure 3 1:60:2 300", f"{now:.3f}"),
        ("12", "always 3 1:60:2 300", f"{now - 1:.3f}"),
        ("13", "", f"{now:.3f}"),  # the placeholder, or an agent without a policy
        ("14", "never", f"{now:.3f}"),
        ("15", "always 3 1:60:2 300", f"{now - 3600:.3f}")])  # up for long: not watched
    watched: list[set[int]] = []
    monkeypatch.setattr(supervise, "watch", lambda server, pids: watched.append(pids))
    supervise.watch_session(FakeTmux(listing), "$1", 99)
    assert watched == [{11, 12}]


def test_watch_nudges_the_server_for_a_zombie_among_live_agents(
        monkeypatch: pytest.MonkeyPatch) -> None:
    live = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])  # exits; we do not reap it yet: a zombie
    nudged: list[int] = []

    def nudge(server_pid: int) -> None:
        nudged.append(server_pid)
        dead.wait()  # what tmux does when nudged: reap

    monkeypatch.setattr(supervise, "_nudge", nudge)
    try:
        supervise.watch(4242, {live.pid, dead.pid}, duration_s=3)
    finally:
        live.kill()
        live.wait()
    assert nudged == [4242]


def test_a_pane_made_by_an_earlier_version_keeps_its_policy() -> None:
    """Then the policy lived in four options; a running swarm outlives an upgrade."""
    fields = ("pane_id", *supervise._FIELDS)
    old = {"pane_id": "%4", "pane_dead": "1", supervise.OPT_POLICY: "on-failure",
           "@swarm_max_restarts": "5", "@swarm_backoff": "2:30:3", "@swarm_reset_after": "60"}
    state = supervise.read_pane(FakeTmux(supervise.SEPARATOR.join(
        old.get(name, "") for name in fields) + "\n"), "%4")
    assert state is not None
    assert [state[part] for part in (supervise.MODE, supervise.MAX_RESTARTS, supervise.BACKOFF,
                                     supervise.RESET_AFTER)] == ["on-failure", "5", "2:30:3", "60"]
    new = {**old, supervise.OPT_POLICY: "always 2 1:9:2 30"}
    state = supervise.read_pane(FakeTmux(supervise.SEPARATOR.join(
        new.get(name, "") for name in fields) + "\n"), "%4")
    assert state is not None and state[supervise.MAX_RESTARTS] == "2"


def test_a_pane_made_by_an_earlier_version_keeps_its_log_path() -> None:
    """Then the log path had an option of its own; now it ends the policy."""
    fields = ("pane_id", *supervise._FIELDS)
    old = {"pane_id": "%4", supervise.OPT_POLICY: "always 2 1:9:2 30", "@swarm_log": "/l/old.log"}
    state = supervise.read_pane(FakeTmux(supervise.SEPARATOR.join(
        old.get(name, "") for name in fields) + "\n"), "%4")
    assert state is not None and state[supervise.LOG] == "/l/old.log"
    new = {**old, supervise.OPT_POLICY: "always 2 1:9:2 30 /l/new.log"}
    state = supervise.read_pane(FakeTmux(supervise.SEPARATOR.join(
        new.get(name, "") for name in fields) + "\n"), "%4")
    assert state is not None and state[supervise.LOG] == "/l/new.log"


def test_the_prompt_option_survives_any_text_and_pattern() -> None:
    text = "line one\nsemi;colon #{pane_id} 'q' \"dq\" \x1f é"
    packed = supervise.pack_prompt(text, ("^ready>\\s*$", 12.5))
    assert set(packed) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    assert supervise.unpack_prompt(packed) == (text, ("^ready>\\s*$", 12.5))
    assert supervise.unpack_prompt(supervise.pack_prompt("p", None)) == ("p", None)
    assert supervise.unpack_prompt("not base64 json") is None
