"""The reconciler end to end: `up`, `plan`, `status`, `down` against a real, isolated tmux."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

import pytest
from libtmux import Server

from swarm_launch.sockets import server_listening, socket_of
from swarm_launch.supervise import unpack_prompt
from swarm_launch.tmux_manager import TmuxSwarmManager
from tests.helpers import cli_process, invoke, wait_until

pytestmark = pytest.mark.tmux

NAME = "team"
FMT = "#{pane_id}\t#{@swarm_agent}\t#{window_name}"


def write(path: pathlib.Path, agents: str, *, name: str = NAME) -> str:
    path.write_text(f"version: 1\nname: {name}\nagents:\n{textwrap.indent(agents, '  ')}")
    return str(path)


def agents_of(server: Server, name: str = NAME) -> dict[str, str]:
    """Agent id -> pane id, read straight from tmux."""
    out = server.cmd("list-panes", "-s", "-t", f"=swarm-{name}", "-F", FMT).stdout
    return {agent: pane for pane, agent, _ in (line.split("\t") for line in out) if agent}


def windows_of(server: Server, name: str = NAME) -> list[str]:
    out = server.cmd("list-panes", "-s", "-t", f"=swarm-{name}", "-F", FMT).stdout
    return [line.split("\t")[2] for line in out]


@pytest.fixture
def spec(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "swarm.yaml"


TWO = "a:\n  command: sleep 600\nb:\n  command: sleep 600\n  env: {ROLE: one}\n"


def up(server: Server, spec_path: str, *args: str) -> str:
    result = invoke("-L", str(server.socket_name), "up", spec_path, *args)
    assert result.code == 0, result.err
    return result.out


def test_up_twice_changes_nothing(server: Server, spec: pathlib.Path) -> None:
    path = write(spec, TWO)
    first = up(server, path)
    assert "2 created, 0 replaced, 0 removed, 0 unchanged" in first
    panes = agents_of(server)
    assert set(panes) == {"a", "b"}
    second = up(server, path)
    assert "0 created, 0 replaced, 0 removed, 2 unchanged" in second
    assert agents_of(server) == panes


def test_editing_one_agents_env_replaces_only_it(server: Server, spec: pathlib.Path) -> None:
    up(server, write(spec, TWO))
    before = agents_of(server)
    out = up(server, write(spec, TWO.replace("ROLE: one", "ROLE: two")))
    after = agents_of(server)
    assert after["a"] == before["a"]
    assert after["b"] != before["b"]
    assert "spec changed: env" in out


def test_removed_agent_is_pruned_unless_no_prune(server: Server, spec: pathlib.Path) -> None:
    up(server, write(spec, TWO))
    before = agents_of(server)
    only_a = write(spec, "a:\n  command: sleep 600\n")
    up(server, only_a, "--no-prune")
    assert agents_of(server) == before
    up(server, only_a)
    assert agents_of(server) == {"a": before["a"]}


def test_foreign_window_survives_up_and_down(server: Server, spec: pathlib.Path) -> None:
    path = write(spec, TWO)
    up(server, path)
    server.cmd("new-window", "-d", "-t", f"=swarm-{NAME}:", "-n", "mine", "sleep 600")
    up(server, write(spec, "a:\n  command: sleep 600\n"))
    assert "mine" in windows_of(server)
    assert invoke("-L", str(server.socket_name), "down", path).code == 0
    assert "mine" in windows_of(server)
    assert agents_of(server) == {}


def test_a_foreign_pane_in_an_agents_window_survives_replace_and_down(
    server: Server, spec: pathlib.Path
) -> None:
    path = write(spec, TWO)
    up(server, path)
    split = server.cmd("split-window", "-d", "-P", "-F", "#{pane_id}", "-t",
                       agents_of(server)["a"], "sleep 600").stdout[0]
    up(server, write(spec, TWO.replace("a:\n  command: sleep 600", "a:\n  command: sleep 601")))
    assert split in server.cmd("list-panes", "-a", "-F", "#{pane_id}").stdout
    assert invoke("-L", str(server.socket_name), "down", path).code == 0
    assert split in server.cmd("list-panes", "-a", "-F", "#{pane_id}").stdout
    assert agents_of(server) == {}


def test_down_leaves_a_users_window_an_agent_was_joined_into(
    server: Server, spec: pathlib.Path
) -> None:
    path = write(spec, TWO)
    up(server, path)
    server.cmd("new-window", "-d", "-t", f"=swarm-{NAME}:", "-n", "mine", "sleep 600")
    server.cmd("join-pane", "-d", "-s", agents_of(server)["b"], "-t", f"=swarm-{NAME}:mine")
    assert invoke("-L", str(server.socket_name), "down", path).code == 0
    assert windows_of(server).count("mine") == 1  # the user's own pane, in its window
    assert agents_of(server) == {}


def test_a_missing_workdir_fails_only_its_agent(
    server: Server, spec: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    missing = tmp_path / "nope"
    path = write(spec, TWO + f"c:\n  command: sleep 600\n  workdir: {missing}\n")
    result = invoke("-L", str(server.socket_name), "up", path)
    assert result.code == 1
    assert set(agents_of(server)) == {"a", "b"}
    assert f"workdir {missing} is not a directory" in result.out + result.err
    assert "2 created, 0 replaced, 0 removed, 0 unchanged, 1 failed" in result.out
    runs = (pathlib.Path(os.environ["AI_SWARM_DIR"]) / NAME / "runs.jsonl").read_text()
    outcomes = {o["agent"]: o["result"] for o in json.loads(runs.splitlines()[-1])["actions"]}
    assert outcomes["a"] == outcomes["b"] == "ok" and outcomes["c"] != "ok"
    document = json.loads(invoke("-L", str(server.socket_name), "up", path, "--json").out)
    assert document["summary"] == {"create": 0, "replace": 0, "remove": 0, "keep": 2,
                                   "update": 0, "failed": 1}


def test_a_replacement_whose_workdir_is_missing_keeps_the_running_agent(
    server: Server, spec: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    up(server, write(spec, TWO))
    before = agents_of(server)
    missing = tmp_path / "nope"
    edited = TWO.replace("ROLE: one}", f"ROLE: two}}\n  workdir: {missing}").replace(
        "a:\n  command: sleep 600", "a:\n  command: sleep 601")
    result = invoke("-L", str(server.socket_name), "up", write(spec, edited))
    assert result.code == 1
    after = agents_of(server)
    assert after["b"] == before["b"]  # kept, not killed
    assert after["a"] != before["a"]  # the other replacement went ahead
    assert "not replaced: workdir" in result.out + result.err


def test_a_relative_socket_path_is_recorded_absolute(
    spec: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = tempfile.mkdtemp(prefix="sl-")  # a socket path must stay under ~100 bytes
    monkeypatch.chdir(short)
    path = write(spec, TWO)
    try:
        assert invoke("-S", "rel.sock", "up", path).code == 0
        monkeypatch.chdir(spec.parent)
        result = invoke("down", "--name", NAME)
        assert result.code == 0, result.err
        assert "2 removed" in result.out
    finally:
        subprocess.run(["tmux", "-S", os.path.join(short, "rel.sock"), "kill-server"],
                       capture_output=True, check=False)


def int_only_agent(note: pathlib.Path) -> str:
    """An agent that ignores SIGTERM and notes a SIGINT: which signal stopped it."""
    program = (f"import signal, time\n"
               f"signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
               f"try:\n    print('ready', flush=True)\n    time.sleep(600)\n"
               f"except KeyboardInterrupt:\n    open({str(note)!r}, 'w').write('INT')\n")
    return (f"w:\n  command: [{sys.executable}, -c, {json.dumps(program)}]\n"
            f"  replicas: 2\n  stop: {{signal: INT, timeout_s: 5}}\n")


@pytest.mark.parametrize("how", ["pruned", "down --name"])
def test_an_agent_gone_from_the_spec_is_stopped_as_it_was_started(
    server: Server, spec: pathlib.Path, tmp_path: pathlib.Path, how: str
) -> None:
    note = tmp_path / "signal"
    up(server, write(spec, int_only_agent(note)))
    wait_until(lambda: len(agents_of(server)) == 2 and all(
        "ready" in server.cmd("capture-pane", "-p", "-t", pane).stdout
        for pane in agents_of(server).values()), message="agents ready")
    if how == "pruned":
        up(server, write(spec, "other:\n  command: sleep 600\n"))
    else:
        assert invoke("-L", str(server.socket_name), "down", "--name", NAME).code == 0
    assert note.read_text() == "INT"  # not TERM (ignored), then KILL after the timeout


def test_renaming_the_swarm_says_the_old_one_still_runs(
    server: Server, spec: pathlib.Path
) -> None:
    up(server, write(spec, TWO))
    result = invoke("-L", str(server.socket_name), "up", write(spec, TWO, name="renamed"))
    assert result.code == 0, result.err
    assert f"note: swarm '{NAME}' was last applied from this spec file" in result.err
    assert f"down --name {NAME}" in result.err
    assert invoke("-L", str(server.socket_name), "down", "--name", NAME).code == 0
    again = invoke("-L", str(server.socket_name), "up", write(spec, TWO + "c: {command: cat}\n",
                                                             name="renamed"))
    assert "note:" not in again.err


def test_down_removes_the_session_when_nothing_foreign_is_left(
    server: Server, spec: pathlib.Path
) -> None:
    path = write(spec, TWO)
    up(server, path)
    result = invoke("-L", str(server.socket_name), "down", path)
    assert result.code == 0, result.err
    assert not server.has_session(f"swarm-{NAME}")


def test_agent_killed_by_hand_comes_back(server: Server, spec: pathlib.Path) -> None:
    path = write(spec, TWO)
    up(server, path)
    server.cmd("kill-pane", "-t", agents_of(server)["a"])
    out = up(server, path)
    assert "missing" in out
    assert set(agents_of(server)) == {"a", "b"}


def test_replace_restarts_only_the_named_agents(server: Server, spec: pathlib.Path) -> None:
    sock = str(server.socket_name)
    path = write(spec, TWO + "w:\n  command: sleep 600\n  replicas: 2\n")
    up(server, path)
    before = agents_of(server)
    pending = invoke("-L", sock, "plan", path, "--replace", "a", "--detailed-exitcode")
    assert pending.code == 2 and "replace requested (--replace)" in pending.out
    assert agents_of(server) == before
    out = up(server, path, "--replace", "a", "--replace", "w")
    assert "0 created, 3 replaced, 0 removed, 1 unchanged" in out
    after = agents_of(server)
    assert after["b"] == before["b"]
    assert all(after[i] != before[i] for i in ("a", "w-0", "w-1"))
    wrong = invoke("-L", sock, "up", path, "--replace", "nobody")
    assert wrong.code == 1
    assert "--replace: not in the spec: nobody (its agents: a, b, w-0, w-1)" in wrong.err
    assert agents_of(server) == after


def test_an_agent_that_exits_at_once_fails_up_naming_it_with_its_output(
    server: Server, spec: pathlib.Path
) -> None:
    sock = str(server.socket_name)
    path = write(spec, "a:\n  command: sleep 600\ntypo:\n  command: no-such-command-xyz\n"
                       "kept:\n  command: no-such-command-xyz\n  restart: on-failure\n")
    result = invoke("-L", sock, "up", path)
    assert result.code == 1
    assert ("error: typo is dead (exit 127) and will not be restarted (no restart policy, "
            "or it gave up); the end of its output:" in result.err)
    assert "a is dead" not in result.err and "kept is dead" not in result.err  # policy: its job
    wait_until(lambda: "typo | " in invoke("-L", sock, "up", path).err, message="its output")
    again = invoke("-L", sock, "up", path, "--json")
    assert again.code == 1
    assert json.loads(again.out)["exited"] == {"typo": 127}


def test_an_agent_replaced_because_it_died_is_watched_for_dying_again(
    server: Server, spec: pathlib.Path
) -> None:
    """A crash loop without a restart policy: the `up` that replaces the dead agent says it
    died again (here 0.2 s after its start, within the watch), rather than exit 0."""
    sock = str(server.socket_name)
    path = write(spec, "a:\n  command: sleep 600\nflaky:\n  command: sleep 0.2; exit 3\n")
    assert invoke("-L", sock, "up", path).code == 0  # first start: looked at once, alive
    wait_until(lambda: '"exit_code": 3' in invoke("-L", sock, "status", path, "--json").out)
    again = invoke("-L", sock, "up", path, "--json")
    assert again.code == 1
    document = json.loads(again.out)
    assert document["exited"] == {"flaky": 3}
    assert [(a["action"], a["agent"]) for a in document["actions"]
            if a["action"] != "keep"] == [("replace", "flaky")]


def test_a_swarm_running_on_one_server_is_not_started_again_on_another(
    server: Server, spec: pathlib.Path
) -> None:
    path = write(spec, "a:\n  command: sleep 600\n")
    up(server, path)
    first = agents_of(server)
    other = f"{server.socket_name}-other"
    for command in ("up", "plan"):
        refused = invoke("-L", other, command, path)
        assert refused.code == 1
        assert (f"swarm 'team' still runs on tmux server -L {server.socket_name} (1 agent)"
                in refused.err)
        assert f"`swarm-launch -L {server.socket_name} down --name team`" in refused.err
    assert not Server(socket_name=other).is_alive()
    # Without -L, status and down act where the swarm was last applied, not on the spec's.
    status = invoke("status", path, "--json")
    assert [a["pane_id"] for a in json.loads(status.out)["agents"]] == [first["a"]]
    assert f"runs on tmux server -L {server.socket_name}, where it was last applied" in status.err
    assert "1 removed" in invoke("down", path).out
    assert not server.has_session(f"swarm-{NAME}")
    assert invoke("-L", other, "up", path).code == 0  # stopped there: it may start here


def test_an_agent_dead_without_a_word_says_it_printed_nothing(
    server: Server, spec: pathlib.Path
) -> None:
    path = write(spec, "mute:\n  command: [sh, -c, 'exit 3']\n")
    wait_until(lambda: "mute is dead" in invoke("-L", str(server.socket_name), "up", path).err,
               message="its death")
    result = invoke("-L", str(server.socket_name), "up", path)  # replaced, watched: dies
    assert result.code == 1
    assert ("error: mute is dead (exit 3) and will not be restarted (no restart policy, or "
            "it gave up); it printed nothing\n") in result.err


def test_a_recorded_server_that_is_gone_is_not_asked_anything(
    server: Server, spec: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens on its socket: `up` elsewhere need not start a tmux client to learn
    that nothing runs there (a few ms of every `up` after a server was killed)."""
    path = write(spec, "a:\n  command: sleep 600\n")
    up(server, path)
    socket = socket_of(str(server.socket_name), None)
    server.kill()
    wait_until(lambda: not server_listening(socket))
    assert os.path.exists(socket)  # left behind by tmux
    asked: list[str | None] = []
    real_init = TmuxSwarmManager.__init__

    def recording_init(self: TmuxSwarmManager, *args: Any, **kwargs: Any) -> None:
        asked.append(kwargs.get("socket_name"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(TmuxSwarmManager, "__init__", recording_init)
    other = f"{server.socket_name}-other"
    try:
        assert "1 created" in invoke("-L", other, "up", path).out
        assert other in asked
        assert server.socket_name not in asked  # no manager for the recorded, gone server
    finally:
        Server(socket_name=other).kill()


def test_one_server_under_several_names_is_one_server(
    server: Server, spec: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(spec, "a:\n  command: sleep 600\n")
    up(server, path)
    socket = os.path.join(os.environ["TMUX_TMPDIR"], f"tmux-{os.getuid()}",
                          str(server.socket_name))
    alias = os.path.join(spec.parent, "alias")
    os.symlink(os.path.dirname(socket), alias)
    for same in (["-S", socket], ["-S", os.path.join(alias, str(server.socket_name))]):
        # --replace: past up's no-op shortcut, through the check, under the lock
        result = invoke(*same, "up", path, "--replace", "a")
        assert result.code == 0, result.err
        assert "0 created, 1 replaced, 0 removed, 0 unchanged" in result.out
        assert invoke(*same, "plan", path, "--detailed-exitcode").code == 0
    # Inside tmux, no -L/-S means the server in $TMUX: the swarm's own one...
    monkeypatch.setenv("TMUX", f"{socket},1,0")
    assert invoke("plan", path, "--detailed-exitcode").code == 0
    assert invoke("up", path, "--replace", "a").code == 0
    # ...or another one.
    other = f"{server.socket_name}-x"
    Server(socket_name=other).cmd("new-session", "-d", "-s", "mine")
    inside = os.path.join(os.path.dirname(socket), other)
    monkeypatch.setenv("TMUX", f"{inside},1,0")
    refused = invoke("up", path)
    assert refused.code == 1
    # (last applied with no -L/-S from inside it: named by its socket, exact from anywhere)
    assert f"still runs on the tmux server at {socket} (1 agent)" in refused.err
    assert f"`swarm-launch -S {socket} down --name {NAME}`" in refused.err
    assert not Server(socket_name=other).has_session(f"swarm-{NAME}")


def test_down_on_a_server_without_the_swarm_says_where_it_runs_and_records_nothing(
    server: Server, spec: pathlib.Path
) -> None:
    path = write(spec, "a:\n  command: sleep 600\n")
    up(server, path)
    other = f"{server.socket_name}-other"
    for args in ([path], ["--name", NAME]):
        result = invoke("-L", other, "down", *args)
        assert result.code == 1
        assert (f"0 removed here; swarm {NAME} still runs on tmux server -L "
                f"{server.socket_name} (1 agent)" in result.out)
    assert "still runs on" in invoke("-L", other, "up", path).err  # records still say where
    status = invoke("-L", other, "status", path).out
    assert f"it runs on tmux server -L {server.socket_name} (1 agent)" in status
    assert set(agents_of(server)) == {"a"}


def test_a_swarm_started_inside_tmux_is_found_from_outside(
    server: Server, spec: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket = os.path.join(os.environ["TMUX_TMPDIR"], f"tmux-{os.getuid()}",
                          str(server.socket_name))
    server.new_session("the-users-own")  # the server we are "inside" runs
    monkeypatch.setenv("TMUX", f"{socket},1,0")  # inside tmux: no -L/-S means this server
    path = write(spec, "a:\n  command: sleep 600\n")
    assert invoke("up", path).code == 0
    pane = agents_of(server)["a"]
    monkeypatch.delenv("TMUX")
    status = invoke("status", path, "--json")
    assert [a["pane_id"] for a in json.loads(status.out)["agents"]] == [pane]
    assert f"runs on the tmux server at {socket}, where it was last applied" in status.err
    assert "1 removed" in invoke("down", "--name", NAME).out
    assert agents_of(server) == {}


def test_status_follows_records_only_to_a_server_running_the_swarm(
    server: Server, spec: pathlib.Path
) -> None:
    """Records can lag behind tmux (an `up --wait` interrupted before recording)."""
    path = write(spec, "a:\n  command: sleep 600\n")
    stale = f"{server.socket_name}-stale"
    assert invoke("-L", stale, "up", path).code == 0
    assert invoke("-L", stale, "down", path).code == 0  # records: on `stale`, none running
    pathlib.Path(path).write_text(pathlib.Path(path).read_text()
                                  + f"tmux:\n  socket_name: {server.socket_name}\n")
    up(server, path)
    records_file = pathlib.Path(os.environ["AI_SWARM_DIR"], NAME, "state.json")
    document = json.loads(records_file.read_text())
    document["tmux"] = {"socket_name": stale, "socket_path": None}  # as if never recorded
    records_file.write_text(json.dumps(document))
    status = invoke("status", path, "--json")
    assert json.loads(status.out)["agents"][0]["pane_id"] == agents_of(server)["a"]
    assert "note:" not in status.err
    assert "1 removed" in invoke("down", path).out


def test_commands_about_a_running_swarm_need_no_secret_in_the_environment(
    server: Server, spec: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key exported only in the terminal that ran `up`: the others still work."""
    sock = str(server.socket_name)
    path = write(spec, "k:\n  command: sh -c 'echo started; exec cat'\n"
                       "  env: {KEY: '${SWARM_TEST_KEY}', OTHER: '${SWARM_TEST_UNSET:-x}'}\n")
    monkeypatch.setenv("SWARM_TEST_KEY", "sk-not-here")
    up(server, path)
    monkeypatch.delenv("SWARM_TEST_KEY")
    assert "SWARM_TEST_KEY} is not set" in invoke("-L", sock, "plan", path).err  # needs it
    status = invoke("-L", sock, "status", path, "--json")
    assert status.code == 0, status.err
    assert json.loads(status.out)["agents"][0]["sync"] == "unknown"
    assert invoke("-L", sock, "send", path, "k", "ping").code == 0
    wait_until(lambda: "ping" in invoke("-L", sock, "logs", path, "k").out, message="logs")
    assert "1 removed" in invoke("-L", sock, "down", path).out


def test_logs_of_an_agent_no_longer_in_the_spec(server: Server, spec: pathlib.Path) -> None:
    sock = str(server.socket_name)
    loud_a = "command: sh -c 'echo from-a; sleep 600'\nb:"
    up(server, write(spec, TWO.replace("command: sleep 600\nb:", loud_a)))
    wait_until(lambda: "from-a" in invoke("-L", sock, "logs", str(spec), "a").out)
    up(server, write(spec, "b:\n  command: sleep 600\n  env: {ROLE: one}\n"))  # a pruned
    assert "from-a" in invoke("-L", sock, "logs", str(spec), "a").out
    assert "no agent 'zz'" in invoke("-L", sock, "logs", str(spec), "zz").err


def test_replicas_three_to_one_removes_two(server: Server, spec: pathlib.Path) -> None:
    up(server, write(spec, "w:\n  command: sleep 600\n  replicas: 3\n"))
    before = agents_of(server)
    assert set(before) == {"w-0", "w-1", "w-2"}
    out = up(server, write(spec, "w:\n  command: sleep 600\n  replicas: 1\n"))
    assert "0 created, 0 replaced, 2 removed, 1 unchanged" in out
    assert agents_of(server) == {"w-0": before["w-0"]}


def test_plan_detailed_exitcode(server: Server, spec: pathlib.Path) -> None:
    sock = str(server.socket_name)
    path = write(spec, TWO)
    assert invoke("-L", sock, "plan", path, "--detailed-exitcode").code == 2
    up(server, path)
    assert invoke("-L", sock, "plan", path, "--detailed-exitcode").code == 0
    spec.write_text("version: 1\nname: BAD NAME\nagents: {}\n")
    assert invoke("-L", sock, "plan", path, "--detailed-exitcode").code == 1
    # A usage error is an error too, never "changes pending"; without the flag, click's 2.
    assert invoke("-L", sock, "plan", path, "--detailed-exitcode", "--bogus").code == 1
    assert invoke("-L", sock, "plan", "--detailed-exitcode").code == 1
    assert invoke("-L", sock, "plan", path, "--bogus").code == 2


def test_plan_changes_nothing(server: Server, spec: pathlib.Path) -> None:
    result = invoke("-L", str(server.socket_name), "plan", write(spec, TWO), "--json")
    assert result.code == 0
    document = json.loads(result.out)
    assert [a["action"] for a in document["actions"]] == ["create", "create"]
    assert not server.has_session(f"swarm-{NAME}")


def test_status_json_converged_and_drifted(server: Server, spec: pathlib.Path) -> None:
    sock = str(server.socket_name)
    up(server, write(spec, TWO))
    converged = json.loads(invoke("-L", sock, "status", str(spec), "--json").out)
    assert converged["name"] == NAME
    assert converged["session"] == f"swarm-{NAME}"
    assert [(a["id"], a["status"], a["sync"]) for a in converged["agents"]] == [
        ("a", "running", "in-sync"), ("b", "running", "in-sync")]
    assert all(a["pid"] and a["pane_id"].startswith("%") for a in converged["agents"])
    write(spec, TWO.replace("ROLE: one", "ROLE: two") + "c:\n  command: sleep 600\n")
    drifted = json.loads(invoke("-L", sock, "status", str(spec), "--json").out)
    assert [(a["id"], a["sync"]) for a in drifted["agents"]] == [
        ("a", "in-sync"), ("b", "drifted"), ("c", "missing")]


def test_crashed_agent_reads_failed_with_its_exit_code(
    server: Server, spec: pathlib.Path
) -> None:
    from tests.helpers import wait_until

    # `up` exits 1 if it already sees x dead; the status must say so either way.
    invoke("-L", str(server.socket_name), "up", write(spec, "x:\n  command: exit 3\n"))

    def failed() -> dict[str, object] | None:
        document = json.loads(invoke("-L", str(server.socket_name), "status", str(spec),
                                     "--json").out)
        agent: dict[str, object] = document["agents"][0]
        return agent if agent["status"] == "failed" else None

    assert wait_until(failed)["exit_code"] == 3


def test_records_hold_state_and_history(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    path = write(spec, TWO)
    up(server, path)
    up(server, path)
    state = json.loads((isolated_environment / NAME / "state.json").read_text())
    assert set(state["agents"]) == {"a", "b"}
    assert state["agents"]["a"]["pane_id"] == agents_of(server)["a"]
    runs = (isolated_environment / NAME / "runs.jsonl").read_text().splitlines()
    assert [json.loads(line)["command"] for line in runs] == ["up", "up"]
    assert os.stat(isolated_environment / NAME / "state.json").st_mode & 0o777 == 0o600


def test_a_down_that_leaves_a_pane_is_recorded_as_failed(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm_launch.exceptions import TmuxSwarmError
    from swarm_launch.tmux_manager import TmuxSwarmManager

    path = write(spec, TWO)
    up(server, path)

    async def refused(self: TmuxSwarmManager, graceful: bool = True) -> None:
        raise TmuxSwarmError("kill-pane: tmux said: refused")

    monkeypatch.setattr(TmuxSwarmManager, "shutdown", refused)
    result = invoke("-L", str(server.socket_name), "down", path)
    assert result.code == 1 and "refused" in result.err
    runs = (isolated_environment / NAME / "runs.jsonl").read_text().splitlines()
    last = json.loads(runs[-1])
    assert (last["command"], last["ok"]) == ("down", False)


def test_concurrent_ups_end_with_one_pane_per_agent(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    path = write(spec, "".join(f"a{i}:\n  command: sleep 600\n" for i in range(10)))
    command = [sys.executable, "-m", "swarm_launch", "-L", str(server.socket_name), "up", path]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)]
    assert [p.wait(timeout=60) for p in runs] == [0, 0]
    out = server.cmd("list-panes", "-s", "-t", f"=swarm-{NAME}", "-F", "#{@swarm_agent}").stdout
    agents = [line for line in out if line]
    assert sorted(agents) == sorted(f"a{i}" for i in range(10))
    state = json.loads((isolated_environment / NAME / "state.json").read_text())
    assert len(state["agents"]) == 10


def test_up_of_an_unchanged_spec_imports_neither_yaml_nor_jsonschema_nor_libtmux(
        server: Server, spec: pathlib.Path) -> None:
    """Start-up is most of a no-op `up`: a spec that passed the schema is neither parsed nor
    checked again (PyYAML costs ~10 ms to import, jsonschema ~45 ms), and `up` never needs
    libtmux (~40 ms), nor ssl (~5 ms, asyncio's TLS: see `cli._asyncio_without_tls`)."""
    path = write(spec, "a:\n  command: sleep 600\n  env: {HOME_TOO: '${HOME}'}\n")
    code = ("import sys\n"
            "from swarm_launch.cli import run\n"
            f"assert run(['-L', {server.socket_name!r}, 'up', {path!r}]) == 0\n"
            "heavy = ('jsonschema', 'libtmux', 'yaml', 'ssl', 'shutil', 'tempfile')\n"
            "print('IMPORTED', sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
            "import ssl\n")  # still importable afterwards

    def imported() -> str:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=False, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stderr.strip().splitlines()[-1]

    first_sight = "IMPORTED ['jsonschema', 'shutil', 'tempfile', 'yaml']"  # (jsonschema's)
    assert imported() == first_sight  # parsed, validated
    assert imported() == "IMPORTED []"
    server.cmd("kill-window", "-t", f"=swarm-{NAME}:agent-a")
    assert imported() == "IMPORTED []"  # started again: the spawn path is as light
    spec.write_text(spec.read_text().replace("600", "601"))
    assert imported() == first_sight  # edited: read again


def test_a_spec_failing_the_schema_is_never_remembered_as_valid(
        server: Server, spec: pathlib.Path) -> None:
    path = write(spec, "a:\n  command: sleep 600\n  restart: sometimes\n")
    for _ in range(2):
        result = invoke("-L", str(server.socket_name), "up", path)
        assert result.code == 1 and "restart" in result.err
    assert agents_of_or_none(server) is None


def agents_of_or_none(server: Server) -> dict[str, str] | None:
    return agents_of(server) if server.has_session(f"swarm-{NAME}") else None


DAMAGED_STATES = [
    '{"agents": {"a": {"field_hashes": 3}}}',
    '{"agents": {"a": {"field_hashes": {"command": 1}}}}',
    '{"agents": {"a": 5}}',
    '{"agents": {}, "tmux": {"socket_name": 5}}',
    '{"agents": {}, "tmux": []}',
    '{"agents": {"a": {"env_keys": "KEY"}}}',
    '{"agents": {}, "spec_hash": {}}',
]


@pytest.mark.parametrize("state", DAMAGED_STATES)
def test_a_state_file_of_the_wrong_shape_is_ignored_and_rewritten(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path, state: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Valid JSON that is not what `up` writes (a hand edit, a damaged disk): tmux is the
    truth, so the file is ignored with a warning, and rewritten by the next apply."""
    path = write(spec, TWO)
    up(server, path)
    state_file = isolated_environment / NAME / "state.json"
    state_file.write_text(state)
    sessions_file = isolated_environment / "swarm_sessions.json"
    sessions_file.write_text('{"sessions": []}')
    result = invoke("-L", str(server.socket_name), "up", path, "--replace", "a")
    assert result.code == 0, result.err
    assert "1 replaced" in result.out
    assert "ignoring" in caplog.text and "state.json" in caplog.text
    assert set(json.loads(state_file.read_text())["agents"]) == {"a", "b"}
    assert set(agents_of(server)) == {"a", "b"}
    for command in (["status", path], ["ls"], ["plan", path], ["down", path]):
        assert invoke("-L", str(server.socket_name), *command).code == 0, command


def user_server(server: Server, *settings: list[str]) -> None:
    """The user's default server: running already, their session, their .tmux.conf."""
    server.cmd("new-session", "-d", "-s", "work", "sleep 600")
    for setting in settings:
        server.cmd(*setting)


def test_the_users_after_new_window_hook_does_not_take_the_agents_tags(
    server: Server, spec: pathlib.Path
) -> None:
    """A split in a global after-new-window hook would make `=session:index` (the window's
    active pane) the hook's pane: the agent untagged, unlogged, never stopped."""
    user_server(server, ["set-hook", "-g", "after-new-window", "split-window 'sleep 599'"])
    path = write(spec, "a: {command: sleep 600}\n")
    up(server, path)
    out = server.cmd("list-panes", "-s", "-t", f"={'swarm-' + NAME}", "-F",
                     "#{@swarm_agent}|#{pane_start_command}").stdout
    assert [line for line in out if line.startswith("a|")] == ['a|/bin/sh -c "sleep 600"']
    assert "sleep 599" not in "".join(out)  # the session's own (empty) hook shadowed it
    assert invoke("-L", str(server.socket_name), "down", path).code == 0
    assert not server.has_session(f"swarm-{NAME}")


def test_destroy_unattached_does_not_destroy_the_swarm(
    server: Server, spec: pathlib.Path
) -> None:
    """With it on, tmux destroys every session without a client (so the user works in
    an attached one: here a control-mode client's)."""
    user_server(server)
    client = subprocess.Popen(["tmux", "-L", str(server.socket_name), "-C", "attach", "-t",
                               "work"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: server.cmd("list-clients").stdout, message="client attached")
        server.cmd("set-option", "-g", "destroy-unattached", "on")
        path = write(spec, "a: {command: sleep 600}\n")
        up(server, path)
        assert set(agents_of(server)) == {"a"}
        assert "0 created" in up(server, path)
    finally:
        client.kill()
        client.wait()


def test_an_interrupted_up_is_recorded_with_what_it_did(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    """Ctrl-C while `up` waits for a dependency to be ready: `db` was created, and the
    history says so (every `up` has its line), marked interrupted."""
    go = spec.parent / "go"
    path = write(spec, f"db: {{command: 'while [ ! -f {go} ]; do sleep 0.05; done; "
                       "echo READY; sleep 600', ready: {pattern: READY, timeout_s: 60}}\n"
                       "app: {command: sleep 600, depends_on: [db]}\n")
    running = cli_process("-L", str(server.socket_name), "up", path)
    try:
        wait_until(lambda: "db" in agents_of(server), timeout=20, message="db created")
        running.send_signal(2)  # SIGINT, as Ctrl-C
        out, err = running.communicate(timeout=20)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 130 and "interrupted" in err
    assert "+ create  db" in out
    runs = (isolated_environment / NAME / "runs.jsonl").read_text().splitlines()
    record = json.loads(runs[-1])
    assert record["interrupted"] is True and record["ok"] is False
    assert [(a["action"], a["agent"], a["result"]) for a in record["actions"]] == [
        ("create", "db", "ok")]


def test_up_fails_for_an_agent_whose_policy_gave_up(server: Server, spec: pathlib.Path) -> None:
    """`max_restarts: 0` gives up at the first death: `up` said `1 replaced`, exit 0, on
    every run, while `status` said `failed 127 (gave up)`."""
    sock = str(server.socket_name)
    path = write(spec, "g:\n  command: no-such-command-xyz\n  restart: on-failure\n"
                       "  max_restarts: 0\n")
    for _ in range(2):  # created, then replaced as dead
        result = invoke("-L", sock, "up", path, "--json")
        assert result.code == 1, result.out
        assert json.loads(result.out)["exited"] == {"g": 127}


DEAF_TO_TERM = ("t: {command: \"trap '' TERM; while :; do sleep 1; done\", "
                "restart: on-failure, stop: {signal: TERM, timeout_s: 30}}\n")


def policy_of(server: Server, agent: str = "t") -> tuple[str, str]:
    """The agent pane's restart policy and the one a stop holds aside ("" for none)."""
    out = server.cmd("list-panes", "-s", "-t", f"=swarm-{NAME}", "-F",
                     "#{@swarm_agent}\t#{@swarm_restart}\t#{@swarm_restart_held}").stdout
    return next((policy, held) for a, policy, held in (line.split("\t") for line in out)
                if a == agent)


def stop_midway(server: Server, path: str, signum: int) -> subprocess.Popen[str]:
    """A `down` signalled once it holds the agent's restart policy aside (its agent,
    deaf to SIGTERM, keeps it waiting out the stop's timeout)."""
    running = cli_process("-L", str(server.socket_name), "down", path)
    try:
        wait_until(lambda: policy_of(server)[1], timeout=20, message="policy held aside")
        running.send_signal(signum)
        running.communicate(timeout=20)
    finally:
        if running.poll() is None:
            running.kill()
    return running


def restarted_after_a_crash(server: Server) -> bool:
    pid = server.cmd("display", "-p", "-t", agents_of(server)["t"], "#{pane_pid}").stdout[0]
    os.kill(int(pid), 9)
    return bool(wait_until(lambda: server.cmd("display", "-p", "-t", agents_of(server)["t"],
                                              "#{pane_pid}|#{pane_dead}").stdout[0]
                           not in (f"{pid}|0", f"{pid}|1"), timeout=15,
                           message="the agent restarted by its policy"))


def test_a_stop_killed_midway_leaves_a_policy_the_next_up_gives_back(
    server: Server, spec: pathlib.Path
) -> None:
    """`down` killed (-9) while it held the policy aside: the agent ran on unsupervised,
    `plan` said in sync, and a crash was never restarted."""
    path = write(spec, DEAF_TO_TERM)
    up(server, path)
    assert stop_midway(server, path, 9).returncode == -9
    assert policy_of(server)[0] == ""
    planned = invoke("-L", str(server.socket_name), "plan", path, "--detailed-exitcode")
    assert planned.code == 2 and "~ update  t" in planned.out
    assert "left disarmed by an interrupted stop" in planned.out
    pid = server.cmd("display", "-p", "-t", agents_of(server)["t"], "#{pane_pid}").stdout
    assert "1 updated" in up(server, path)
    assert server.cmd("display", "-p", "-t", agents_of(server)["t"], "#{pane_pid}").stdout == pid
    policy, held = policy_of(server)
    assert policy.startswith("on-failure") and held == ""
    assert invoke("-L", str(server.socket_name), "plan", path, "--detailed-exitcode").code == 0
    assert restarted_after_a_crash(server)


@pytest.mark.parametrize(("signum", "code"), [(15, 143), (1, 129), (2, 130)])
def test_sigterm_or_sighup_during_down_gives_the_policy_back(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path, signum: int,
    code: int
) -> None:
    """As Ctrl-C does: the stop is called off, the agent keeps its restart policy, and
    the history has the `down`, interrupted (it had no line at all)."""
    path = write(spec, DEAF_TO_TERM)
    up(server, path)
    stopped = stop_midway(server, path, signum)
    assert stopped.returncode == code
    policy, held = policy_of(server)
    assert policy.startswith("on-failure") and held == ""
    runs = (isolated_environment / NAME / "runs.jsonl").read_text().splitlines()
    record = json.loads(runs[-1])
    assert (record["command"], record["interrupted"], record["ok"]) == ("down", True, False)
    assert restarted_after_a_crash(server)


def test_up_while_a_down_runs_waits_for_it_then_starts_the_swarm_again(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    """`up` found the swarm in sync without the lock, said `unchanged` and exited 0; the
    `down` under way then removed the swarm."""
    path = write(spec, "t: {command: \"trap '' TERM; while :; do sleep 1; done\", "
                       "stop: {signal: TERM, timeout_s: 2}}\n")
    up(server, path)
    command = [sys.executable, "-m", "swarm_launch", "-L", str(server.socket_name), "down", path]
    down = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        holder = isolated_environment / NAME / "lock.holder"
        wait_until(holder.exists, timeout=20, message="the down holding the lock")
        assert "1 created, 0 replaced, 0 removed, 0 unchanged" in up(server, path)
        assert down.wait(timeout=20) == 0
    finally:
        if down.poll() is None:
            down.kill()
    assert set(agents_of(server)) == {"t"}


@pytest.mark.parametrize("edit", ["prompt", "prompt_file", "ready"])
def test_a_prompt_edit_up_would_apply_is_a_pending_change_to_plan(
    server: Server, spec: pathlib.Path, edit: str
) -> None:
    """`up` rewrites the prompt a restart-policy agent's pane keeps for its restarts, so
    `plan` must not say in sync (a CI job running `up` on drift never delivered it)."""
    sock = str(server.socket_name)
    (spec.parent / "prompt.txt").write_text("old words")
    source = "prompt_file: prompt.txt" if edit == "prompt_file" else "prompt: old words"
    path = write(spec, f"a:\n  command: echo ready; exec cat\n  restart: always\n  {source}\n"
                       "  ready: {pattern: ready, timeout_s: 5}\n")
    up(server, path)
    if edit == "prompt_file":
        (spec.parent / "prompt.txt").write_text("new words")
    else:
        before = "old words" if edit == "prompt" else "timeout_s: 5"
        after = "new words" if edit == "prompt" else "timeout_s: 7"
        spec.write_text(spec.read_text().replace(before, after))
    planned = invoke("-L", sock, "plan", path, "--detailed-exitcode")
    assert planned.code == 2, planned.out
    assert "~ update  a   prompt changed (applies at its next restart" in planned.out
    pid = server.cmd("display", "-p", "-t", agents_of(server)["a"], "#{pane_pid}").stdout
    out = up(server, path)
    assert "~ update  a" in out and "0 replaced, 0 removed, 0 unchanged, 1 updated" in out
    assert server.cmd("display", "-p", "-t", agents_of(server)["a"], "#{pane_pid}").stdout == pid
    kept = server.cmd("show-options", "-pv", "-t", agents_of(server)["a"], "@swarm_prompt")
    words = "old words" if edit == "ready" else "new words"
    timeout_s = 7.0 if edit == "ready" else 5.0
    assert unpack_prompt("".join(kept.stdout)) == (words, ("ready", timeout_s))
    assert invoke("-L", sock, "plan", path, "--detailed-exitcode").code == 0


def test_a_stop_edit_is_recorded_by_up_for_down_name(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    """`stop` and `depends_on` are read at use: nothing in tmux changes (`plan` says in
    sync, rightly), but state.json, which `down --name` stops by, takes the new stop."""
    sock = str(server.socket_name)
    path = write(spec, "a: {command: sleep 600, stop: {signal: TERM, timeout_s: 3}}\n"
                       "b: {command: sleep 600}\n")
    up(server, path)
    spec.write_text(spec.read_text().replace("signal: TERM, timeout_s: 3",
                                             "signal: INT, timeout_s: 4")
                    .replace("b: {command: sleep 600}", "b: {command: sleep 600, "
                                                        "depends_on: [a]}"))
    assert invoke("-L", sock, "plan", path, "--detailed-exitcode").code == 0
    assert "0 unchanged" not in up(server, path)
    state = json.loads((isolated_environment / NAME / "state.json").read_text())
    assert state["agents"]["a"]["stop"] == {"signal": "INT", "timeout_s": 4.0}


def test_an_interrupted_up_records_the_agents_it_replaced(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    """Ctrl-C after `db` was replaced, while `up` waits for it to be ready: state.json kept
    the old pane, and `status --name` said the new one `drifted`."""
    go = spec.parent / "go"
    path = write(spec, "db: {command: sleep 600}\n")
    up(server, path)
    write(spec, f"db: {{command: 'while [ ! -f {go} ]; do sleep 0.05; done; "
                "echo READY; sleep 600', ready: {pattern: READY, timeout_s: 60}}\n"
                "app: {command: sleep 600, depends_on: [db]}\n")
    old = agents_of(server)["db"]
    running = cli_process("-L", str(server.socket_name), "up", path)
    try:
        wait_until(lambda: agents_of(server).get("db", old) != old, timeout=20,
                   message="db replaced")
        running.send_signal(2)  # SIGINT, as Ctrl-C
        running.communicate(timeout=20)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 130
    state = json.loads((isolated_environment / NAME / "state.json").read_text())
    assert state["agents"]["db"]["pane_id"] == agents_of(server)["db"]
    status = json.loads(invoke("-L", str(server.socket_name), "status", "--name", NAME,
                               "--json").out)
    assert [(a["id"], a["sync"]) for a in status["agents"]] == [("db", "in-sync")]


@pytest.mark.parametrize("lost", ["sessions", "sessions and state"])
def test_the_next_up_tracks_a_session_a_killed_run_left_untracked(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path, lost: str
) -> None:
    """`up` killed once tmux had created the agents, before it recorded them: the no-op
    `up` after it rewrote state.json, and `swarm_sessions.json` still lacked the swarm."""
    path = write(spec, TWO)
    up(server, path)
    sessions = isolated_environment / "swarm_sessions.json"
    sessions.write_text('{"sessions": {}}')
    if "state" in lost:  # and the records: `up` takes its locked path
        (isolated_environment / NAME / "state.json").unlink()
    assert "0 created, 0 replaced, 0 removed, 2 unchanged" in up(server, path)
    [entry] = json.loads(sessions.read_text())["sessions"].values()
    assert (entry["cluster_id"], entry["agents"]) == (NAME, agents_of(server))


def test_a_second_spec_file_of_the_same_name_says_it_replaces_the_first(
    server: Server, tmp_path: pathlib.Path
) -> None:
    """Two files giving one `name:` are one swarm: `up` of the second pruned the first's
    agents, saying only `- remove a1 not in the spec`."""
    sock = str(server.socket_name)
    first = write(tmp_path / "a.yaml", "a1: {command: sleep 600}\n")
    second = write(tmp_path / "b.yaml", "b1: {command: sleep 600}\n")
    up(server, first)
    note = f"note: swarm '{NAME}' was last applied from {first}; applying {second} replaces it"
    assert note in invoke("-L", sock, "plan", second).err
    applied = invoke("-L", sock, "up", second)
    assert applied.code == 0 and note in applied.err
    assert "- remove  a1" in applied.out
    assert "note:" not in invoke("-L", sock, "up", second).err


def test_a_session_the_user_made_under_our_name_is_adopted_with_our_settings(
    server: Server, spec: pathlib.Path
) -> None:
    """Agents in a `swarm-NAME` the user made got its history-limit (0: `capture` saw one
    screen), and nothing said the session was not ours, nor why `down` left it."""
    sock = str(server.socket_name)
    server.cmd("new-session", "-d", "-s", f"swarm-{NAME}", "sleep 600")
    server.cmd("set-option", "-t", f"swarm-{NAME}", "history-limit", "0")
    path = write(spec, "a: {command: sleep 600}\n")
    note = f"note: session swarm-{NAME} exists and was not made by swarm-launch"
    assert note in invoke("-L", sock, "plan", path).err
    applied = invoke("-L", sock, "up", path)
    assert applied.code == 0 and note in applied.err
    limit = server.cmd("display", "-p", "-t", agents_of(server)["a"], "#{history_limit}")
    assert limit.stdout == ["100000"]
    assert note not in invoke("-L", sock, "up", path).err  # ours now
    down = invoke("-L", sock, "down", path)
    assert down.code == 0 and f"session swarm-{NAME} kept" in down.err
    assert server.has_session(f"swarm-{NAME}")


def test_records_that_cannot_be_written_fail_the_run_after_it_is_told(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    """`down` stopped everything, then failed on state.json: the summary was never printed,
    and the swarm_sessions.json warning came twice, bare."""
    path = write(spec, "a: {command: sleep 600}\n")
    up(server, path)
    for record in (isolated_environment / NAME / "state.json",
                   isolated_environment / "swarm_sessions.json"):
        record.unlink()
        record.mkdir()  # in the way of every write
    result = invoke("-L", str(server.socket_name), "down", path)
    assert result.code == 1
    assert result.out.endswith(f"1 removed; swarm {NAME} is down\n")
    assert not agents_of_or_none(server)
    errors = result.err.splitlines()
    assert [line.split(":")[0] for line in errors if "cannot write" in line] == [
        "warning", "error"]  # the sessions file once, then the state that fails the run
    assert errors[-1].startswith(f"error: cannot write {isolated_environment / NAME}")


def test_an_agent_whose_log_is_a_directory_is_refused_not_run_unlogged(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    """Its writer refuses a directory or symlink: `up` said created, and the agent ran
    with all its output dropped."""
    logs = isolated_environment / NAME / "logs"
    logs.mkdir(parents=True)
    (logs / "a.log").mkdir()
    path = write(spec, "a: {command: sleep 600}\nb: {command: sleep 600}\n")
    result = invoke("-L", str(server.socket_name), "up", path)
    assert result.code == 1
    assert f"a (its log {logs / 'a.log'} is a directory: remove it" in result.err
    assert set(agents_of(server)) == {"b"}


def test_an_interrupted_up_records_only_what_it_applied(
    server: Server, spec: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    """SIGTERM while `up` waits out b's stop: state.json took the new spec's prompt digest
    for a, whose pane still kept the old prompt, so `plan` said `a in sync` and no `up`
    ever rewrote it (its restarts sent the old prompt for good); b's reason lost its field."""
    sock = str(server.socket_name)
    termed = spec.parent / "termed"
    path = write(spec, "a: {command: cat, restart: always, prompt: PROMPT-V1}\n"
                       f"b: {{command: 'trap \"touch {termed}\" TERM; echo v1; "
                       "while :; do sleep 0.2; done', stop: {timeout_s: 8}}\n")
    up(server, path)
    state_file = isolated_environment / NAME / "state.json"
    before = json.loads(state_file.read_text())["agents"]
    spec.write_text(spec.read_text().replace("PROMPT-V1", "PROMPT-V2").replace("echo v1",
                                                                               "echo v2"))
    running = cli_process("-L", sock, "up", path)
    try:
        wait_until(termed.exists, timeout=20, message="b's stop under way")
        running.send_signal(15)
        running.communicate(timeout=20)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 143
    assert json.loads(state_file.read_text())["agents"] == before
    planned = invoke("-L", sock, "plan", path).out
    assert "~ update  a   prompt changed" in planned
    assert "~ replace b   spec changed: command" in planned
    up(server, path)
    kept = server.cmd("show-options", "-pv", "-t", agents_of(server)["a"], "@swarm_prompt")
    assert unpack_prompt("".join(kept.stdout)) == ("PROMPT-V2", None)


def test_status_says_drifted_for_a_policy_a_killed_stop_left_disarmed(
    server: Server, spec: pathlib.Path
) -> None:
    """`down` killed (-9) mid-stop: `plan` said `~ update` (exit 2 with
    --detailed-exitcode) while `status` said the agent was running in-sync."""
    sock = str(server.socket_name)
    path = write(spec, DEAF_TO_TERM)
    up(server, path)
    assert stop_midway(server, path, 9).returncode == -9
    status = json.loads(invoke("-L", sock, "status", path, "--json").out)
    assert [(a["id"], a["status"], a["sync"]) for a in status["agents"]] == [
        ("t", "running", "drifted")]
    by_name = json.loads(invoke("-L", sock, "status", "--name", NAME, "--json").out)
    assert [a["sync"] for a in by_name["agents"]] == ["drifted"]
    text = invoke("-L", sock, "status", path).out
    assert "note: t: its restart policy was left disarmed by an interrupted stop" in text
    up(server, path)
    status = json.loads(invoke("-L", sock, "status", path, "--json").out)
    assert [a["sync"] for a in status["agents"]] == ["in-sync"]
