"""AI_SWARM_DIR safety: an unsafe directory is refused; what we create is private."""

from __future__ import annotations

import errno
import fcntl
import os
import pathlib
import stat
import subprocess
import sys
import threading
import time

import pytest

from swarm_launch import store
from swarm_launch.exceptions import LockTimeoutError, StoreError
from tests.helpers import wait_until


def mode(path: str | pathlib.Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_default_dir_comes_from_the_environment(isolated_environment: pathlib.Path) -> None:
    assert store.data_dir() == str(isolated_environment)
    assert mode(isolated_environment) == 0o700


def test_default_is_tmp_ai_swarm_when_unset() -> None:
    assert store.DEFAULT_DIR == "/tmp/ai_swarm/"


def test_missing_parents_are_created_private(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "a" / "b"
    assert store.data_dir({"AI_SWARM_DIR": str(path)}) == str(path)
    assert mode(path) == 0o700
    assert mode(tmp_path / "a") == 0o700  # not only the last one
    logs = store.ensure_private_dir(str(path / "swarm" / "logs"))
    assert [mode(d) for d in (path / "swarm", logs)] == [0o700, 0o700]


def test_symlinked_dir_is_refused(tmp_path: pathlib.Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(StoreError, match="is a symlink"):
        store.data_dir({"AI_SWARM_DIR": str(link)})


@pytest.mark.parametrize("unsafe_mode", [0o770, 0o707, 0o777, 0o720])
def test_dir_writable_by_others_is_refused(tmp_path: pathlib.Path, unsafe_mode: int) -> None:
    path = tmp_path / "shared"
    path.mkdir()
    path.chmod(unsafe_mode)
    with pytest.raises(StoreError, match=f"writable by others \\(mode {unsafe_mode:04o}\\)"):
        store.data_dir({"AI_SWARM_DIR": str(path)})


def test_dir_of_another_user_is_refused(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "theirs"
    path.mkdir(mode=0o700)
    if os.getuid() == 0:
        os.chown(path, 12345, -1)
    else:
        real_uid = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: real_uid + 1)
    with pytest.raises(StoreError, match="not by you"):
        store.data_dir({"AI_SWARM_DIR": str(path)})


def test_a_file_in_place_of_the_dir_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        store.data_dir({"AI_SWARM_DIR": str(path)})


def test_swarm_dir_is_private(isolated_environment: pathlib.Path) -> None:
    path = store.swarm_dir("team")
    assert path == os.path.join(str(isolated_environment), "team")
    assert mode(path) == 0o700


def test_written_files_are_0600(isolated_environment: pathlib.Path) -> None:
    directory = store.swarm_dir("team")
    json_path = os.path.join(directory, store.STATE_FILE)
    jsonl_path = os.path.join(directory, store.RUNS_FILE)
    store.atomic_write_json(json_path, {"a": 1})
    store.append_jsonl(jsonl_path, {"run": 1})
    assert mode(json_path) == mode(jsonl_path) == 0o600
    assert store.read_json(json_path) == {"a": 1}
    assert store.read_jsonl(jsonl_path) == [{"run": 1}]


def test_lock_files_are_0600(isolated_environment: pathlib.Path) -> None:
    directory = store.swarm_dir("team")
    with store.locked(directory, timeout_s=1):
        assert mode(os.path.join(directory, store.LOCK_FILE)) == 0o600


def test_appending_to_a_nonempty_history_keeps_every_record(
    isolated_environment: pathlib.Path,
) -> None:
    path = os.path.join(store.swarm_dir("team"), store.RUNS_FILE)
    store.append_jsonl(path, {"run": 1})
    store.append_jsonl(path, {"run": 2})
    assert store.read_jsonl(path) == [{"run": 1}, {"run": 2}]


def _flock_waiters(path: str) -> bool:
    """Whether a process waits for a flock on `path` (/proc/locks shows waiters as `->`)."""
    inode = f":{os.stat(path).st_ino} "
    with open("/proc/locks", encoding="ascii") as handle:
        return any("->" in line and "FLOCK" in line and inode in line for line in handle)


def test_an_append_waits_for_a_writer_still_writing_its_line(
    isolated_environment: pathlib.Path,
) -> None:
    # The no-op `up` appends outside the swarm's lock: a second appender must neither take
    # the first one's half-written line for a torn tail nor interleave with it.
    path = os.path.join(store.swarm_dir("team"), store.RUNS_FILE)
    store.append_jsonl(path, {"run": 1})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b'{"run": ')
        second = threading.Thread(target=store.append_jsonl, args=(path, {"run": 3}))
        second.start()
        wait_until(lambda: _flock_waiters(path), timeout=5, message="the append to wait")
        os.write(fd, b'2}\n')
    finally:
        os.close(fd)  # releases the flock
    second.join(timeout=10)
    assert store.read_jsonl(path) == [{"run": 1}, {"run": 2}, {"run": 3}]


def test_a_torn_last_line_is_skipped_and_the_next_record_starts_fresh(
    isolated_environment: pathlib.Path,
) -> None:
    path = os.path.join(store.swarm_dir("team"), store.RUNS_FILE)
    pathlib.Path(path).write_text('{"run": 1}\n{"ru', encoding="utf-8")
    store.append_jsonl(path, {"run": 2})
    assert store.read_jsonl(path) == [{"run": 1}, {"run": 2}]


def test_a_dir_under_one_others_could_swap_is_refused(tmp_path: pathlib.Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may rename what is in it
    with pytest.raises(StoreError, match=r"shared, above .* is writable by others"):
        store.data_dir({"AI_SWARM_DIR": str(shared / "ai")})
    safe = tmp_path / "safe"
    safe.mkdir(mode=0o700)
    (shared / "link").symlink_to(safe)  # a safe target, through a swappable link
    with pytest.raises(StoreError, match="writable by others"):
        store.data_dir({"AI_SWARM_DIR": str(shared / "link" / "ai")})
    shared.chmod(0o1777)  # sticky, as /tmp: only the owner of an entry may rename it
    assert store.data_dir({"AI_SWARM_DIR": str(shared / "ai")}) == str(shared / "ai")


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root")
def test_a_dir_under_another_users_directory_is_refused(tmp_path: pathlib.Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, -1)
    with pytest.raises(StoreError, match="owned by uid 65534, who could replace"):
        store.data_dir({"AI_SWARM_DIR": str(theirs / "ai")})


def test_an_impossible_dir_is_a_clear_error_not_a_crash(tmp_path: pathlib.Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(StoreError, match=f"^{afile} exists and is not a directory"):
        store.data_dir({"AI_SWARM_DIR": str(afile / "x" / "ai")})


def test_a_lock_holder_note_that_cannot_be_written_does_not_stop_the_run(
    isolated_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note only names the holder to a waiter: with a full disk, `down` must still
    be able to stop agents."""
    def full(path: str, document: object, **_: object) -> None:
        raise StoreError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(store, "atomic_write_json", full)
    ran = []
    with store.locked(store.swarm_dir("full"), timeout_s=1):
        ran.append(True)
    assert ran == [True]


def test_a_lock_that_is_a_directory_is_a_clear_error(isolated_environment: pathlib.Path) -> None:
    directory = store.swarm_dir("odd")
    os.mkdir(os.path.join(directory, store.LOCK_FILE))
    with (pytest.raises(StoreError, match=r"cannot lock .*lock: Is a directory"),
          store.locked(directory, timeout_s=1)):
        pass


@pytest.mark.parametrize("note", ['{"started": null}', '{"started": "x"}', "[]", "garbage"])
def test_a_damaged_holder_note_reads_as_unknown(
    isolated_environment: pathlib.Path, note: str
) -> None:
    directory = store.swarm_dir("held")
    lock_path = os.path.join(directory, store.LOCK_FILE)
    with open(lock_path + ".holder", "w") as handle:
        handle.write(note)
    assert store.describe_holder(lock_path) == "holder unknown"


def test_a_second_hold_of_a_lock_waits_even_in_the_same_thread(
    isolated_environment: pathlib.Path,
) -> None:
    """Each hold is its own open of the lock file: not re-entrant, so two managers or
    runs in one process exclude each other, and the wait ends when the first lets go."""
    directory = store.swarm_dir("twice")
    with store.locked(directory, timeout_s=1):
        started = time.monotonic()
        with (pytest.raises(LockTimeoutError, match=r"pid \d+ on .*did not finish within 0.2s"),
              store.locked(directory, timeout_s=0.2)):
            pass
        assert time.monotonic() - started >= 0.2
    with store.locked(directory, timeout_s=0.2):  # released: taken at once
        holder = store.read_json(os.path.join(directory, "lock.holder"))
        assert isinstance(holder, dict) and holder["pid"] == os.getpid()
    assert not os.path.exists(os.path.join(directory, "lock.holder"))


def test_shared_json_updates_take_turns_across_processes(
    isolated_environment: pathlib.Path,
) -> None:
    path = os.path.join(store.data_dir(), "counter.json")
    script = ("from swarm_launch import store\n"
              f"for _ in range(50): store.update_json({path!r}, lambda n: (n or 0) + 1)\n")
    writers = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(4)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0, 0]
    assert store.read_json(path) == 200


def test_the_lock_holder_note_costs_no_fsync_but_records_do(
    isolated_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The note is a hint that lives as long as the lock: syncing it to disk would only
    slow every `up` (two fsyncs); a record must survive a crash."""
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    directory = store.swarm_dir("quick")
    with store.locked(directory, timeout_s=1):
        assert os.path.exists(os.path.join(directory, "lock.holder"))
        assert synced == []
    store.atomic_write_json(os.path.join(directory, "state.json"), {"agents": {}})
    assert len(synced) == 2  # the file, then its directory


@pytest.mark.parametrize("value", ["abc", "nan", "1s"])
def test_a_lock_timeout_that_is_not_a_number_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SWARM_LAUNCH_LOCK_TIMEOUT", value)
    with pytest.raises(StoreError, match=r"SWARM_LAUNCH_LOCK_TIMEOUT=.* is not a number"):
        store.lock_timeout_s()


def test_a_negative_lock_timeout_waits_for_as_long_as_it_takes(
    isolated_environment: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with the filelock package before: no end to the wait, not an immediate failure."""
    monkeypatch.setenv("SWARM_LAUNCH_LOCK_TIMEOUT", "-1")
    directory = store.swarm_dir("patient")
    holder = store.open_lock(os.path.join(directory, store.LOCK_FILE))
    fcntl.flock(holder, fcntl.LOCK_EX)
    threading.Timer(0.5, os.close, [holder]).start()  # lets go in half a second
    started = time.monotonic()
    with store.locked(directory):
        assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize(("code", "remedy"), [
    (errno.ENOSPC, "free some space"), (errno.EROFS, "make it writable"),
    (errno.EISDIR, "fix that path"), (errno.ENOENT, "fix that path")])
def test_a_record_that_cannot_be_written_says_what_to_do_about_it(
        tmp_path: pathlib.Path, code: int, remedy: str) -> None:
    """Only a full disk is 'free some space' (a directory in the way said so too)."""
    error = store._write_error(str(tmp_path / "state.json"), OSError(code, os.strerror(code)))
    assert f"; {remedy} and run again" in str(error)


def test_a_temp_file_a_killed_writer_left_is_removed_by_the_next_write(
        tmp_path: pathlib.Path) -> None:
    """kill -9 between create and rename left `.tmp-…state.json` files forever."""
    tmp_path = tmp_path / "records"
    tmp_path.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".tmp-{dead.pid}-0a0b0c0d0e0f-state.json"
    busy = tmp_path / f".tmp-{os.getpid()}-0a0b0c0d0e0f-state.json"  # a writer at work
    other = tmp_path / f".tmp-{dead.pid}-0a0b0c0d0e0f-runs.json"  # another file's
    for path in (orphan, busy, other):
        path.write_text("{")
    store.atomic_write_json(str(tmp_path / "state.json"), {"ok": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [busy.name, other.name, "state.json"])
