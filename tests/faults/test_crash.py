"""Crash consistency: SIGKILL a real `up` at random moments; the next `up` converges exactly."""

from __future__ import annotations

import json
import pathlib
import random
import signal
import subprocess
import time

import pytest

from tests.faults._support import (
    agent_ids,
    assert_converged,
    cli_argv,
    record_figures,
    run_cli,
    socket_name,
    spec_text,
    tagged_agents,
    tmux,
    write_spec,
)

pytestmark = [pytest.mark.faults, pytest.mark.tmux]

NAME = "crash"
AGENTS = 50
TRIALS_PER_SEED = 12


def _up_killed_after(sock: str, path: str, delay: float) -> tuple[int, int, float]:
    """Start `up`, SIGKILL it after `delay` seconds (if still running):
    (pid, return code, seconds it ran)."""
    began = time.monotonic()
    proc = subprocess.Popen(cli_argv(sock, "up", path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)  # the fault injection's random delay
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return proc.pid, proc.wait(timeout=60), time.monotonic() - began


def _held_by(holder: pathlib.Path, pid: int) -> bool:
    """Did process `pid` die holding the swarm's lock (its holder record left behind)?"""
    try:
        document = json.loads(holder.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("pid") == pid


@pytest.mark.parametrize("seed", [7, 11])
def test_sigkilled_up_is_followed_by_an_exact_up(
    seed: int, tmp_path: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    rng = random.Random(seed)
    sock = socket_name()
    path = write_spec(tmp_path / "swarm.yaml", spec_text(NAME, AGENTS))
    changed = spec_text(NAME, AGENTS, env={"ROUND": "two"})
    ids = agent_ids(AGENTS)
    holder = isolated_environment / NAME / "lock.holder"

    # Calibrate: how long a whole 50-agent `up` from nothing takes here, now.
    began = time.monotonic()
    assert run_cli(sock, "up", path).returncode == 0
    full = time.monotonic() - began
    assert_converged(sock, NAME, ids, isolated_environment)

    killed = mid_apply = partial_tmux = replace_trials = 0
    for trial in range(TRIALS_PER_SEED):
        replacing = trial % 3 == 2  # from a converged swarm whose spec changed: 50 replaces
        if replacing:
            replace_trials += 1
            write_spec(tmp_path / "swarm.yaml", changed if trial % 2 else spec_text(NAME, AGENTS))
        else:
            tmux(sock, "kill-server")
        # Spread over the run: start-up, plan, lock, apply, record (and a few after it).
        delay = rng.uniform(0.0, full * 1.1)
        pid, code, ran = _up_killed_after(sock, path, delay)
        if code != -signal.SIGKILL and not replacing:
            full = min(full, ran)  # the machine got faster (calibrated under load)
        if code == -signal.SIGKILL:
            killed += 1
            inside = _held_by(holder, pid)  # killed inside the locked apply section
            mid_apply += inside
            count = len(tagged_agents(sock, NAME))
            partial_tmux += 0 < count < AGENTS or (replacing and inside)
        else:
            assert code == 0
        result = run_cli(sock, "up", path)
        assert result.returncode == 0, (trial, delay, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert_converged(sock, NAME, ids, isolated_environment)
        # And once converged, `up` again is a no-op (pane ids unchanged).
        before = tmux(sock, "list-panes", "-s", "-t", f"=swarm-{NAME}:", "-F", "#{pane_id}")
        again = run_cli(sock, "up", path)
        assert again.returncode == 0
        assert f"0 created, 0 replaced, 0 removed, {AGENTS} unchanged" in again.stdout
        after = tmux(sock, "list-panes", "-s", "-t", f"=swarm-{NAME}:", "-F", "#{pane_id}")
        assert before.stdout == after.stdout
    record_figures(f"crash[seed={seed}]", {
        "trials": TRIALS_PER_SEED, "agents": AGENTS, "kills": killed,
        "kills_mid_apply": mid_apply, "kills_leaving_partial_tmux": partial_tmux,
        "replace_trials": replace_trials, "full_up_s": round(full, 3),
    })
    assert killed >= TRIALS_PER_SEED // 3
