"""Concurrency: simultaneous `up`s, `up` racing `down`, two swarms on one server at once."""

from __future__ import annotations

import pathlib
import random
import subprocess
import time

import pytest

from tests.faults._support import (
    agent_ids,
    assert_converged,
    assert_down,
    assert_runs_valid,
    cli_argv,
    record_figures,
    run_cli,
    socket_name,
    spec_text,
    tagged_agents,
    write_spec,
)

pytestmark = [pytest.mark.faults, pytest.mark.tmux]


def _start(sock: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(cli_argv(sock, *args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    return proc.returncode, out, err


def _changed(record: dict[str, object]) -> bool:
    actions = record.get("actions")
    return isinstance(actions, list) and any(
        isinstance(a, dict) and a.get("action") != "keep" for a in actions)


def test_five_simultaneous_ups_of_one_spec(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    sock = socket_name()
    path = write_spec(tmp_path / "s.yaml", spec_text("five", 30))
    runs = [_start(sock, "up", path) for _ in range(5)]
    results = [_finish(p) for p in runs]
    assert [code for code, _, _ in results] == [0] * 5, results
    assert_converged(sock, "five", agent_ids(30), isolated_environment)
    created = sum(int(out.split(" created")[0].split()[-1]) for _, out, _ in results)
    assert created == 30  # every agent was created by exactly one of the five
    history = assert_runs_valid(isolated_environment, "five")
    assert len(history) == 5
    record_figures("concurrency[5 ups]", {"concurrent_runs": 5, "agents": 30})


def test_up_racing_down_ends_as_the_last_writer_says(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    rng = random.Random(3)
    sock = socket_name()
    name = "race"
    ids = agent_ids(20)
    path = write_spec(tmp_path / "s.yaml", spec_text(name, 20))
    outcomes = {"up": 0, "down": 0}
    rounds = 6
    for round_ in range(rounds):
        if round_ % 2:  # from a converged swarm; else from whatever the last round left
            assert run_cli(sock, "up", path).returncode == 0
        first, second = ("up", "down") if rng.random() < 0.5 else ("down", "up")
        procs = {first: _start(sock, *([first, path]))}
        time.sleep(rng.uniform(0.0, 0.6))  # fault injection: a random head start
        procs[second] = _start(sock, second, path)
        for command, proc in procs.items():
            code, _, err = _finish(proc)
            assert code == 0, (command, err)
        history = assert_runs_valid(isolated_environment, name)
        # The last mutating run (a no-op `up` records without the lock) decides.
        last = next(r for r in reversed(history) if r["command"] == "down" or _changed(r))
        outcomes[str(last["command"])] += 1
        if last["command"] == "up":
            assert_converged(sock, name, ids, isolated_environment)
        else:
            assert_down(sock, name, isolated_environment)
    record_figures("concurrency[up vs down]", {"rounds": rounds, "up_last": outcomes["up"],
                                                "down_last": outcomes["down"]})


def test_two_swarms_on_one_server_at_once(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    sock = socket_name()
    # Names sharing a prefix: tmux's -t prefix-matches unless targets are exact.
    alpha = write_spec(tmp_path / "alpha.yaml", spec_text("team", 15))
    beta = write_spec(tmp_path / "beta.yaml", spec_text("team-b", 15, prefix="b"))
    procs = [_start(sock, "up", alpha), _start(sock, "up", beta)]
    assert [_finish(p)[0] for p in procs] == [0, 0]
    assert_converged(sock, "team", agent_ids(15), isolated_environment)
    assert_converged(sock, "team-b", agent_ids(15, "b"), isolated_environment)
    # Then at once: alpha shrinks to 10 with a changed env, beta goes down.
    write_spec(tmp_path / "alpha.yaml", spec_text("team", 10, env={"V": "2"}))
    procs = [_start(sock, "up", alpha), _start(sock, "down", beta)]
    assert [_finish(p)[0] for p in procs] == [0, 0]
    assert_converged(sock, "team", agent_ids(10), isolated_environment)
    assert_down(sock, "team-b", isolated_environment)
    # And the other way round, both at once again.
    procs = [_start(sock, "down", alpha), _start(sock, "up", beta)]
    assert [_finish(p)[0] for p in procs] == [0, 0]
    assert tagged_agents(sock, "team") == []
    assert_converged(sock, "team-b", agent_ids(15, "b"), isolated_environment)
    record_figures("concurrency[two swarms]", {"concurrent_pairs": 3})
