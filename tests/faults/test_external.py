"""External faults: tmux server killed, windows and processes killed by hand, records lost,
truncated or garbage, the disk full while writing them. Clear messages; `up` recovers."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import signal
import tempfile

import pytest

from swarm_launch import store
from tests.faults._support import (
    agent_ids,
    assert_converged,
    assert_runs_valid,
    record_figures,
    session_panes,
    socket_name,
    spec_text,
    tmux,
    write_spec,
)
from tests.helpers import CliResult, invoke, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.tmux]

NAME = "ext"
COUNT = 6
IDS = agent_ids(COUNT)


def cli(sock: str, *args: str) -> CliResult:
    result = invoke("-L", sock, *args)
    assert "Traceback" not in result.out + result.err
    assert result.code in (0, 1), result
    return result


def assert_clear_error(result: CliResult, *words: str) -> None:
    """Exit 1 and exactly one `error: ...` line naming `words`; never a bug report."""
    assert result.code == 1, result
    lines = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.err
    assert "unexpected failure" not in lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


def panes_by_agent(sock: str) -> dict[str, str]:
    return {p["agent"]: p["pane_id"] for p in session_panes(sock, NAME) if p["agent"]}


@pytest.fixture
def swarm(tmp_path: pathlib.Path, isolated_environment: pathlib.Path) -> tuple[str, str]:
    """A converged swarm of COUNT agents: (socket name, spec path)."""
    sock = socket_name()
    path = write_spec(tmp_path / "swarm.yaml", spec_text(NAME, COUNT))
    assert cli(sock, "up", path).code == 0
    assert_converged(sock, NAME, IDS, isolated_environment)
    return sock, path


def test_tmux_server_killed(swarm: tuple[str, str], isolated_environment: pathlib.Path) -> None:
    sock, path = swarm
    tmux(sock, "kill-server")
    for args in (("status", path), ("status", "--name", NAME)):
        status = cli(sock, *args)
        assert status.code == 0
        assert f"swarm {NAME} is not running" in status.out, status.out
    document = json.loads(cli(sock, "status", path, "--json").out)
    assert {a["sync"] for a in document["agents"]} == {"missing"}
    up = cli(sock, "up", path)
    assert up.code == 0 and f"{COUNT} created" in up.out
    assert_converged(sock, NAME, IDS, isolated_environment)
    record_figures("external[server killed]", {"faults": 1})


def test_agent_window_killed_by_hand(
    swarm: tuple[str, str], isolated_environment: pathlib.Path
) -> None:
    sock, path = swarm
    before = panes_by_agent(sock)
    tmux(sock, "kill-window", "-t", before["a2"])
    assert "a2" in cli(sock, "status", path).out
    up = cli(sock, "up", path)
    assert "1 created, 0 replaced, 0 removed, 5 unchanged" in up.out
    after = panes_by_agent(sock)
    assert {a: p for a, p in after.items() if a != "a2"} == {
        a: p for a, p in before.items() if a != "a2"}
    assert_converged(sock, NAME, IDS, isolated_environment)
    record_figures("external[window killed]", {"faults": 1})


def test_agent_process_killed(swarm: tuple[str, str], isolated_environment: pathlib.Path) -> None:
    sock, path = swarm
    pane = next(p for p in session_panes(sock, NAME) if p["agent"] == "a3")
    os.kill(int(pane["pid"]), signal.SIGKILL)

    def failed() -> dict[str, object] | None:
        agents = json.loads(cli(sock, "status", path, "--json").out)["agents"]
        row: dict[str, object] = next(a for a in agents if a["id"] == "a3")
        return row if row["status"] == "failed" else None

    assert wait_until(failed, message="a3 to read failed")["exit_code"] is not None
    up = cli(sock, "up", path)
    assert "0 created, 1 replaced, 0 removed, 5 unchanged" in up.out
    assert "dead" in up.out
    assert_converged(sock, NAME, IDS, isolated_environment)
    assert panes_by_agent(sock)["a3"] != pane["pane_id"]
    record_figures("external[process killed]", {"faults": 1})


def test_ai_swarm_dir_deleted_between_runs(
    swarm: tuple[str, str], isolated_environment: pathlib.Path
) -> None:
    sock, path = swarm
    before = panes_by_agent(sock)
    # Gone from AI_SWARM_DIR's view at once (agents' log writers still hold their files).
    isolated_environment.rename(isolated_environment.with_name("deleted"))
    status = cli(sock, "status", path)
    assert status.code == 0 and "in-sync" in status.out
    up = cli(sock, "up", path)
    assert up.code == 0 and f"{COUNT} unchanged" in up.out
    assert panes_by_agent(sock) == before  # tmux trusted: nothing respawned
    assert_converged(sock, NAME, IDS, isolated_environment)  # records rewritten
    record_figures("external[AI_SWARM_DIR deleted]", {"faults": 1})


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "binary", "wrong-json"])
def test_state_json_damaged(
    damage: str, swarm: tuple[str, str], isolated_environment: pathlib.Path
) -> None:
    sock, path = swarm
    before = panes_by_agent(sock)
    state = isolated_environment / NAME / "state.json"
    text = state.read_text()
    state.write_bytes({
        "empty": b"",
        "truncated": text[: len(text) // 2].encode(),
        "garbage": b"}}}{{{ not json at all\n",
        "binary": os.urandom(512),
        "wrong-json": b'{"agents": [1, 2], "spec_hash": 7}',
    }[damage])
    runs = isolated_environment / NAME / "runs.jsonl"
    with runs.open("ab") as handle:  # a torn last line, as a crash mid-append leaves
        handle.write(b'{"command": "up", "tim')
    for args in (("status", path), ("status", "--name", NAME), ("ls",), ("plan", path)):
        assert cli(sock, *args).code == 0, args
    up = cli(sock, "up", path)
    assert up.code == 0 and f"{COUNT} unchanged" in up.out
    assert panes_by_agent(sock) == before
    assert_converged(sock, NAME, IDS, isolated_environment)
    record_figures(f"external[state.json {damage}]", {"faults": 2})


def _disk_full(monkeypatch: pytest.MonkeyPatch, base: pathlib.Path) -> list[str]:
    """Every write under AI_SWARM_DIR fails with ENOSPC (after a partial write, as a real
    full disk does); returns the paths that failed."""
    failed: list[str] = []

    def atomic_write_text(path: str, text: str, **_: object) -> None:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            os.write(fd, text.encode()[: len(text) // 2])
        finally:
            os.close(fd)
            os.unlink(tmp)
        failed.append(path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_write = os.write
    short_done: set[int] = set()

    def write(fd: int, data: bytes) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if not target.startswith(str(base)):
            return real_write(fd, data)
        failed.append(target)
        if fd not in short_done and len(data) > 1:
            short_done.add(fd)
            return real_write(fd, bytes(data)[: len(data) // 2])  # a short write first
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store, "atomic_write_text", atomic_write_text)
    monkeypatch.setattr(os, "write", write)
    return failed


def test_disk_full_while_writing_state(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock = socket_name()
    path = write_spec(tmp_path / "swarm.yaml", spec_text(NAME, COUNT))
    assert cli(sock, "up", path).code == 0
    good_state = (isolated_environment / NAME / "state.json").read_text()
    write_spec(tmp_path / "swarm.yaml", spec_text(NAME, COUNT + 2, env={"V": "2"}))
    faults = 0
    with monkeypatch.context() as patch:
        failed = _disk_full(patch, isolated_environment)
        up = invoke("-L", sock, "up", path)
        assert_clear_error(up, "No space left on device")
        down_ids = invoke("-L", sock, "status", path)  # reading still works
        assert down_ids.code == 0
        faults += len(failed)
    # Nothing torn: the old state.json is whole, runs.jsonl has only whole lines.
    assert (isolated_environment / NAME / "state.json").read_text() == good_state
    assert_runs_valid(isolated_environment, NAME)
    # tmux did the work; the next `up` trusts it and rewrites the records.
    again = cli(sock, "up", path)
    assert again.code == 0, again
    assert_converged(sock, NAME, agent_ids(COUNT + 2), isolated_environment)
    # And `down` on a full disk: a clear error too; then a clean `down`.
    with monkeypatch.context() as patch:
        failed = _disk_full(patch, isolated_environment)
        assert_clear_error(invoke("-L", sock, "down", path), "No space left on device")
        faults += len(failed)
    assert cli(sock, "down", path).code == 0
    assert_runs_valid(isolated_environment, NAME)
    record_figures("external[disk full]", {"faults": faults})
