"""Secrets: an env value never reaches AI_SWARM_DIR, any output, the error log, or any argv."""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import signal
import subprocess
import threading

import pytest

from tests.faults._support import (
    agent_ids,
    assert_converged,
    record_figures,
    session_panes,
    socket_name,
    tmux,
    write_spec,
)
from tests.helpers import invoke, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.tmux]

NAME = "vault"


def _sample_argv(tokens: list[bytes], stop: threading.Event, seen: list[str],
                 samples: list[int]) -> None:
    """Read every process's /proc/PID/cmdline until `stop`; note any holding a token."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    cmdline = handle.read()
            except OSError:
                continue
            if any(token in cmdline for token in tokens):
                seen.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        samples[0] += 1


def test_secret_values_leak_nowhere(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = "sk-env-" + secrets.token_hex(16)
    literal = "sk-lit-" + secrets.token_hex(16)
    monkeypatch.setenv("SECRET", from_env)
    tokens = [from_env, literal]
    agents = "".join(
        f"  a{i}:\n    command: sleep 600\n    env:\n      API_KEY: ${{SECRET}}\n"
        f"      LITERAL_KEY: {literal}\n" for i in range(30))
    path = write_spec(tmp_path / "swarm.yaml",
                      f"version: 1\nname: {NAME}\nenv:\n  SHARED: ${{SECRET}}\nagents:\n{agents}")
    sock = socket_name()
    outputs: list[str] = []

    def run(*args: str) -> None:
        result = invoke("-L", sock, *args)
        assert result.code == 0, result
        outputs.append(result.out + result.err)

    run("plan", path)
    run("plan", path, "--json")
    stop, seen, samples = threading.Event(), list[str](), [0]
    sampler = threading.Thread(target=_sample_argv,
                               args=([t.encode() for t in tokens], stop, seen, samples))
    sampler.start()
    try:
        run("up", path)
    finally:
        stop.set()
        sampler.join()
    assert not seen, seen
    assert_converged(sock, NAME, agent_ids(30), isolated_environment)
    # A changed secret replaces every agent; still nothing printed or stored.
    monkeypatch.setenv("SECRET", from_env + "-rotated")
    tokens.append(from_env + "-rotated")
    run("plan", path, "--json")
    run("up", path, "--json")
    run("up", path)
    for args in (("status", path), ("status", path, "--json"), ("status", "--name", NAME),
                 ("ls",), ("ls", "--json"), ("up", "--dry-run", path)):
        run(*args)
    # A failing command writes the error log; it must not carry the values either.
    bad = write_spec(tmp_path / "bad.yaml", f"version: 1\nname: {NAME}\nagents:\n"
                     f"  x:\n    command: [sleep, 600]\n    env: {{K: [{literal}]}}\n")
    outputs.append(invoke("-L", sock, "up", bad).err)
    for text in outputs:
        for token in tokens:
            assert token not in text, text
    files = 0
    for root, _, names in os.walk(isolated_environment):
        for name in names:
            data = pathlib.Path(root, name).read_bytes()
            files += 1
            for token in tokens:
                assert token.encode() not in data, os.path.join(root, name)
    record_figures("secrets", {"argv_samples": samples[0], "files_scanned": files,
                               "outputs_checked": len(outputs), "agents": 30})


def _holders(tokens: list[bytes]) -> dict[int, str]:
    """Every process whose environment holds one of `tokens`: pid -> its command line."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if any(token in environ for token in tokens):
            found[int(pid)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def _writers(swarm_dir: pathlib.Path, agent: str) -> set[int]:
    """The pids of the log writers of `agent` (their argv names its log)."""
    log = f"{swarm_dir / NAME / 'logs' / agent}.log ".encode()
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if log in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "):
                pids.add(int(pid))
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc/PID/environ")
def test_keys_of_a_server_started_with_them_reach_no_writer_nor_the_placeholder(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user started the server from a shell that exported keys: pipe-pane runs each
    log writer with the server process's own environment, and new-session starts the
    placeholder before the session drops the names; a restart runs pipe-pane again. A key
    only the server has (not exported where `up` runs) reaches no agent either."""
    sock = socket_name()
    server_keys = {"OPENAI_API_KEY": "sk-srv-" + secrets.token_hex(8),
                   "GH_TOKEN": "gh-srv-" + secrets.token_hex(8)}
    server_only = {"ANTHROPIC_API_KEY": "sk-ant-srv-" + secrets.token_hex(8)}
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", "mine", "sleep", "600"],
                   check=True, env={**os.environ, **server_keys, **server_only})
    user_processes = {int(tmux(sock, "display-message", "-p", "#{pid}").stdout),
                      int(tmux(sock, "display-message", "-p", "-t", "=mine:",
                               "#{pane_pid}").stdout)}
    for name, value in server_keys.items():
        monkeypatch.setenv(name, value.replace("-srv-", "-sh-"))
    path = write_spec(tmp_path / "swarm.yaml", f"version: 1\nname: {NAME}\nagents:\n"
                      "  a:\n    command: sleep 600\n"
                      "  b:\n    command: sleep 600\n    restart: always\n"
                      "    env:\n      OPENAI_API_KEY: ${OPENAI_API_KEY}\n")
    result = invoke("-L", sock, "up", path)
    assert result.code == 0, result
    tokens = [value.encode() for value in [*server_keys.values(), *server_only.values()]]
    first = wait_until(lambda: _writers(isolated_environment, "b"), message="b's writer")
    assert _writers(isolated_environment, "a")
    assert set(_holders(tokens)) == user_processes, _holders(tokens)
    agent_b = next(pane["pid"] for pane in session_panes(sock, NAME) if pane["agent"] == "b")
    os.kill(int(agent_b), signal.SIGKILL)
    wait_until(lambda: _writers(isolated_environment, "b") - first, timeout=20,
               message="the restart's writer")
    assert set(_holders(tokens)) == user_processes, _holders(tokens)
    # An agent added to the running swarm: the server is found as its panes' parent.
    with open(path, "a") as spec:
        spec.write("  c:\n    command: sleep 600\n")
    assert invoke("-L", sock, "up", path).code == 0
    wait_until(lambda: _writers(isolated_environment, "c"), message="c's writer")
    assert set(_holders(tokens)) == user_processes, _holders(tokens)
