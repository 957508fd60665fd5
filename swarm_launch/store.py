"""AI_SWARM_DIR: its safe creation, atomic files, the per-swarm lock, the run history.

Everything swarm-launch writes to disk goes through here, so the rules hold in
one place: directories 0700, files 0600, writes atomic (temp file, fsync,
rename), a refused directory when someone else could tamper with it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from swarm_launch.exceptions import LockTimeoutError, StoreError

log = logging.getLogger(__name__)

DEFAULT_DIR = "/tmp/ai_swarm/"
SESSIONS_FILE = "swarm_sessions.json"
STATE_FILE = "state.json"
RUNS_FILE = "runs.jsonl"
LOCK_FILE = "lock"
DEFAULT_LOCK_TIMEOUT_S = 60.0


def data_dir(environ: dict[str, str] | None = None) -> str:
    """AI_SWARM_DIR, created 0700 if missing, refused if anyone else could write to it."""
    env = os.environ if environ is None else environ
    path = os.path.abspath(env.get("AI_SWARM_DIR") or DEFAULT_DIR)
    check_ancestors(path)
    return ensure_private_dir(path)


def check_ancestors(path: str) -> None:
    """Refuse a path under a directory or symlink someone else could swap: every existing
    ancestor, as written and as resolved, must be root's or ours, and a directory writable
    by group or others must be sticky (as /tmp is), as ssh demands of a key's directories."""
    hint = "; set AI_SWARM_DIR to a directory of your own with mode 0700"
    resolved = os.path.realpath(os.path.dirname(os.path.normpath(path)))
    lexical = os.path.dirname(os.path.normpath(path))
    for ancestor in {*_ancestors(lexical), *_ancestors(resolved)}:
        try:
            info = os.lstat(ancestor)
        except (FileNotFoundError, NotADirectoryError):
            continue  # created 0700 by us, or refused with its reason when we try
        except OSError as exc:
            raise StoreError(f"cannot check {ancestor}, above {path}: "
                             f"{exc.strerror or exc}{hint}") from exc
        if info.st_uid not in (0, os.getuid()):
            raise StoreError(f"{ancestor}, above {path}, is owned by uid {info.st_uid}, "
                             f"who could replace what is under it{hint}")
        writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if stat.S_ISDIR(info.st_mode) and writable and not info.st_mode & stat.S_ISVTX:
            raise StoreError(f"{ancestor}, above {path}, is writable by others (mode "
                             f"{stat.S_IMODE(info.st_mode):04o}) and not sticky: they could "
                             f"replace what is under it{hint}")


def _ancestors(path: str) -> list[str]:
    found = []
    while True:
        found.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            return found
        path = parent


def swarm_dir(name: str, base: str | None = None) -> str:
    """The directory holding one swarm's records: AI_SWARM_DIR/<name>/."""
    return ensure_private_dir(os.path.join(base or data_dir(), name))


def ensure_private_dir(path: str) -> str:
    """Create `path` 0700 (parents too) or check an existing one is ours alone."""
    path = os.path.normpath(path)
    try:
        _make_private_dirs(path)
    except FileExistsError as exc:
        raise StoreError(
            f"{exc.filename or path} exists and is not a directory; remove it or set "
            "AI_SWARM_DIR"
        ) from exc
    except OSError as exc:
        raise StoreError(
            f"cannot create {path}: {exc.strerror}; set AI_SWARM_DIR to a writable place"
        ) from exc
    check_private_dir(path)
    return path


def _make_private_dirs(path: str) -> None:
    """`os.makedirs(path, 0o700)`, but every directory it creates is 0700, not only the
    last (makedirs gives the intermediate ones the umask's default, often 0755)."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        _make_private_dirs(parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def check_private_dir(path: str) -> None:
    """Refuse a symlink, a directory of another user, or one writable by group or others."""
    info = os.lstat(path)
    hint = "; set AI_SWARM_DIR to a directory of your own with mode 0700"
    if stat.S_ISLNK(info.st_mode):
        raise StoreError(f"{path} is a symlink, which someone could redirect{hint}")
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"{path} is not a directory{hint}")
    if info.st_uid != os.getuid():
        raise StoreError(
            f"{path} is owned by uid {info.st_uid}, not by you (uid {os.getuid()}){hint}"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(info.st_mode)
        raise StoreError(f"{path} is writable by others (mode {mode:04o}){hint}")


def atomic_write_text(path: str, text: str, *, durable: bool = True) -> None:
    """Replace `path` with `text` so a reader sees the old or the new file, never a mix;
    `durable`: on disk before returning (fsync of the file and of its directory)."""
    directory, name = os.path.split(path)
    # As tempfile.mkstemp does, without importing it (~3 ms: shutil, random, bz2, lzma);
    # with our pid, so a temp file a killed writer left behind can be told and removed.
    tmp = os.path.join(directory, f"{_TMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}-{name}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _remove_orphan_temps(directory, name)
    if durable:
        _fsync_dir(directory)


_TMP_PREFIX = ".tmp-"


def _remove_orphan_temps(directory: str, name: str) -> None:
    """Remove the temp files of `name` whose writer died before its rename (kill -9)."""
    suffix = f"-{name}"
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            if entry.startswith(_TMP_PREFIX) and entry.endswith(suffix):
                pid = entry[len(_TMP_PREFIX):].partition("-")[0]
                if pid.isdigit() and not _alive(int(pid)):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(directory, entry))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def atomic_write_json(path: str, document: Any, *, durable: bool = True) -> None:
    try:
        atomic_write_text(path, json.dumps(document, indent=2, sort_keys=True) + "\n",
                          durable=durable)
    except OSError as exc:  # a full disk, a read-only or vanished directory
        raise _write_error(path, exc) from exc


# What to do about a record that cannot be written, by errno; anything else: fix the path.
_REMEDIES = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
             errno.EROFS: "make it writable", errno.EACCES: "make it writable",
             errno.EPERM: "make it writable"}


def _write_error(path: str, exc: OSError) -> StoreError:
    remedy = _REMEDIES.get(exc.errno or 0, "fix that path")
    return StoreError(f"cannot write {path}: {exc.strerror or exc}; {remedy} and run again "
                      "(tmux holds the truth: the next `up` rewrites the records)")


_warned: set[str] = set()


def read_json(path: str) -> Any | None:
    """The JSON document at `path`, or None when missing or unreadable (tmux is the truth)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        ignoring(path, str(exc))
        return None


def ignoring(path: str, why: str) -> None:
    """Say that a record file is ignored (it will be rewritten): once per file and
    process, however often it is read."""
    if path not in _warned:
        _warned.add(path)
        log.warning("ignoring %s (%s); it will be rewritten", path, why)


def append_jsonl(path: str, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write, so a killed writer leaves whole lines.

    Appenders take turns (flock): the no-op `up` appends outside the swarm's lock, and a
    tail repair or a rollback must never cut into another writer's line."""
    import fcntl

    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the close below
            _repair_torn_tail(fd, path)
            size = os.fstat(fd).st_size
            try:
                rest = memoryview(line)
                while rest:  # a full disk may first accept part of the line
                    rest = rest[os.write(fd, rest):]
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)  # leave whole lines only
                raise
        finally:
            os.close(fd)
    except OSError as exc:
        raise _write_error(path, exc) from exc


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """Every whole JSON line of `path`; a torn or garbage line is skipped, not fatal."""
    records: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                with contextlib.suppress(ValueError):
                    value = json.loads(line)
                    if isinstance(value, dict):
                        records.append(value)
    except FileNotFoundError:
        pass
    return records


def _repair_torn_tail(fd: int, path: str) -> None:
    # A writer that died mid-line left a partial last line: drop it, keep whole lines only.
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return
    end, keep = size, 0
    while end > 0:
        start = max(0, end - 65536)
        cut = os.pread(fd, end - start, start).rfind(b"\n")
        if cut >= 0:
            keep = start + cut + 1
            break
        end = start
    log.warning("%s ended in a partial line; dropping it", path)
    os.ftruncate(fd, keep)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_timeout_s() -> float:
    """How long to wait for a lock: $SWARM_LAUNCH_LOCK_TIMEOUT seconds (negative: no end,
    as with the filelock package it replaces), else 60 s."""
    text = os.environ.get("SWARM_LAUNCH_LOCK_TIMEOUT") or ""
    if not text:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise StoreError(f"SWARM_LAUNCH_LOCK_TIMEOUT={text!r} is not a number of seconds")
    return value


def open_lock(path: str) -> int:
    """The file descriptor to flock for `path`, created 0600 if missing. An flock belongs
    to this open of the file: a second open, even in this thread, waits its turn; closing
    it (or dying) releases the lock."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def try_lock(fd: int) -> bool:
    """Take the flock on `fd` if nobody holds it: True once it is ours."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def held_by_another(directory: str) -> bool:
    """Whether some run holds `directory`/lock now: a try, released at once (microseconds).
    Nothing is created: without the directory or its lock file nobody holds it."""
    try:
        fd = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return not try_lock(fd)
    finally:
        os.close(fd)  # releases the lock if the try took it


def _pauses(fd: int, timeout_s: float) -> Iterator[float]:
    """The pauses between tries of the flock (flock itself cannot time out): 5 ms at
    first, so a short wait ends fast, then 50 ms; ends once the lock is ours, or once
    `timeout_s` has passed (negative: never)."""
    deadline = time.monotonic() + timeout_s if timeout_s >= 0 else float("inf")
    pause = 0.005
    while not try_lock(fd):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        yield min(pause, left)
        pause = min(pause * 2, 0.05)


def wait_for_lock(fd: int, timeout_s: float) -> bool:
    """Whether the flock on `fd` was ours within `timeout_s` (see `_pauses`)."""
    for pause in _pauses(fd, timeout_s):
        time.sleep(pause)
    return try_lock(fd)  # ours already (flock again is a no-op), or one last try


async def wait_for_lock_async(fd: int, timeout_s: float) -> bool:
    """`wait_for_lock` for a coroutine: it pauses in `asyncio.sleep`, so the event loop
    runs meanwhile, and a SIGTERM, SIGHUP or Ctrl-C ends the wait at once."""
    import asyncio

    for pause in _pauses(fd, timeout_s):
        await asyncio.sleep(pause)
    return try_lock(fd)


@contextlib.contextmanager
def locked(directory: str, *, timeout_s: float | None = None,
           what: str = "this swarm") -> Iterator[None]:
    """Hold `directory`/lock exclusively; the kernel frees it if the holder dies.

    The wait is `timeout_s`, else $SWARM_LAUNCH_LOCK_TIMEOUT, else 60 s. The stdlib's
    flock, not the filelock package: this is all we used of it, and importing it cost
    10 ms of every `up` (it pulls in decimal, pathlib and secrets).
    """
    timeout_s = lock_timeout_s() if timeout_s is None else timeout_s
    fd, lock_path = _open_lock_in(directory)
    try:
        if not wait_for_lock(fd, timeout_s):
            raise _not_freed(what, lock_path, timeout_s)
        with holding(lock_path):
            yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.asynccontextmanager
async def locked_async(directory: str, *, timeout_s: float | None = None,
                       what: str = "this swarm", command: str | None = None,
                       ) -> AsyncIterator[None]:
    """`locked` for a coroutine (`up`, `down`): its wait lets the event loop run, so a
    SIGTERM or SIGHUP ends it at once, as Ctrl-C does; a blocking wait held them off
    until the lock was free, forever without a timeout. `command` (`up`, `down`) names
    the run in its holder note, for `lock_holder`."""
    timeout_s = lock_timeout_s() if timeout_s is None else timeout_s
    fd, lock_path = _open_lock_in(directory)
    try:
        if not await wait_for_lock_async(fd, timeout_s):
            raise _not_freed(what, lock_path, timeout_s)
        with holding(lock_path, command):
            yield
    finally:
        os.close(fd)  # releases the lock


def _open_lock_in(directory: str) -> tuple[int, str]:
    """The lock file of `directory`, opened to be locked, and its path."""
    lock_path = os.path.join(directory, LOCK_FILE)
    try:
        return open_lock(lock_path), lock_path
    except OSError as exc:  # not a file we can lock (a directory), unreadable
        raise StoreError(f"cannot lock {lock_path}: {exc.strerror or exc}; "
                         "remove it if it is not a file") from None


def _not_freed(what: str, lock_path: str, timeout_s: float) -> LockTimeoutError:
    return LockTimeoutError(
        f"another swarm-launch run holds the lock of {what} "
        f"({describe_holder(lock_path)}) and did not finish within "
        f"{timeout_s:g}s; wait for it, or stop it and run again")


@contextlib.contextmanager
def holding(lock_path: str, command: str | None = None) -> Iterator[None]:
    """While the lock at `lock_path` is ours, a note beside it names us (and `command`) to
    a waiter that gives up (`describe_holder`) and to `lock_holder`. Only a hint: a full
    disk must not stop a `down`."""
    with contextlib.suppress(StoreError, OSError):
        _write_holder(lock_path, command)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path + ".holder")


def _write_holder(lock_path: str, command: str | None = None) -> None:
    holder: dict[str, object] = {"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.time()}
    if command:
        holder["command"] = command
    # Not durable: a hint for this lock's lifetime, which a machine crash ends anyway.
    atomic_write_json(lock_path + ".holder", holder, durable=False)


def describe_holder(lock_path: str) -> str:
    holder = read_json(lock_path + ".holder")
    if not isinstance(holder, dict) or not isinstance(holder.get("started"), int | float):
        return "holder unknown"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["started"]))
    command = f"{holder['command']}, " if isinstance(holder.get("command"), str) else ""
    return f"{command}pid {holder.get('pid')} on {holder.get('host')}, since {started}"


def lock_holder(directory: str) -> str | None:
    """Which run holds `directory`/lock now: None when none does; else the command its
    note names (`up`, `down`), or "" when no note can be trusted (not written yet, or
    left by a run that died, its lock now another's). Costs the lock's try alone when
    the lock is free."""
    if not held_by_another(directory):
        return None
    holder = read_json(os.path.join(directory, LOCK_FILE) + ".holder")
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int) \
            or holder.get("host") != socket.gethostname() or not _alive(holder["pid"]):
        return ""
    command = holder.get("command")
    return command if isinstance(command, str) else ""


def update_json(path: str, change: Callable[[Any | None], Any], *,
                timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Any:
    """Read-modify-write a shared JSON file under its own lock (safe across processes)."""
    fd = open_lock(path + ".lock")
    try:
        if not wait_for_lock(fd, timeout_s):
            raise LockTimeoutError(f"{path} stayed locked for {timeout_s:g}s")
        document = change(read_json(path))
        atomic_write_json(path, document)
        return document
    finally:
        os.close(fd)  # releases the lock
