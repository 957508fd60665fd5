"""The per-agent log writer: tmux `pipe-pane -O` feeds it every byte an agent writes.

Three programs do this job, byte for byte alike, because a swarm starts one per agent and
their start-up is most of what an agent costs `up`: `logpipe.c` (~0.3 ms to start),
compiled on first use when a C compiler is found (`native_writer`); else `logpipe.pl`
(Perl, ~2 ms) when a `perl` is found; else this one (Python, ~16 ms).
SWARM_LAUNCH_LOG_WRITER=perl or =python forces one.

It appends each chunk straight to the log (no buffering beyond one read), marks
every start with a line, rotates by renaming, and keeps a per-second time index
(`LOG.idx`: `EPOCH OFFSET` lines) so `logs --since` can seek without scanning.
It runs once per agent: stdlib only, and only `os`, `sys`, `signal`, `time`.

A failed write or open (a full disk, a removed directory) does not end it: it reads on, so
neither the agent nor tmux ever waits on it, drops and counts the output, retries on the
first input of a later second, and once the log takes writes again, first notes the loss
in it (`loss_marker`). Only EOF ends it.
"""

from __future__ import annotations

import os
import signal
import sys
import time

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs this process ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import FrameType

    from swarm_launch.model import LogSettings

READ_SIZE = 64 * 1024
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
USAGE = "usage: python -m swarm_launch.logpipe LOG_PATH --max-bytes N --keep K --agent ID --pane %N"


class LogWriter:
    """Appends to one log, rotating it past `max_bytes`; never truncates a file in place.

    `write` raises on an error; `start` and `output` never do (see the module's docstring).
    """

    def __init__(self, path: str, *, max_bytes: int, keep: int, agent_id: str = "?") -> None:
        self.path = path
        self.index_path = path + ".idx"
        self.max_bytes = max(1, max_bytes)
        self.keep = max(0, keep)
        self.agent_id = agent_id
        self.size = 0
        self._fd = self._idx = -1
        self._last_second = -1
        # While the log fails: the first error's text and second, the latest failure's
        # second, and the bytes of output dropped. `_written`: of the current data, so far.
        self.error: str | None = None
        self._since = self._failed_at = 0
        self.lost = 0
        self._written = 0
        try:
            self.open()
        except OSError as error:
            self._failed(error)

    def open(self) -> None:
        """(Re)open the log and its index, making the directory again if it has gone."""
        self.close()
        # If that fails, opening the log says what is wrong (the same text as logpipe.pl's).
        _quietly(os.makedirs, os.path.dirname(self.path) or ".", 0o700, True)
        self._fd = self._open(self.path)
        self._idx = self._open(self.index_path)
        self.size = os.fstat(self._fd).st_size
        self._last_second = -1

    @staticmethod
    def _open(path: str) -> int:
        # Never through a symlink: one in AI_SWARM_DIR would send the agent's output to
        # its target, wherever that is and whoever may read it there (ELOOP: a failure).
        fd = os.open(path, _APPEND_FLAGS, 0o600)
        # One made readable by others (a chmod, an older version) is the owner's to tighten
        # (never another user's file, root or not): else its rotated copies keep the mode.
        info = os.fstat(fd)
        if info.st_mode & 0o7777 != 0o600 and info.st_uid == os.geteuid():
            _quietly(os.fchmod, fd, 0o600)
        return fd

    def ends_with_newline(self) -> bool:
        if self.size == 0:
            return True
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return True  # as logpipe.pl
        try:
            return os.pread(fd, 1, self.size - 1) == b"\n"
        except OSError:
            return False
        finally:
            os.close(fd)

    def start(self, line: bytes) -> None:
        """Write the start marker `line` on a line of its own, unless the log is failing."""
        if self.error is None:
            self._write_line(line, reopen=False)

    def output(self, data: bytes) -> None:
        """Write the agent's `data`. While the log fails, it is dropped and counted; the first
        data in a later second than the latest failure retries: on success, the loss is
        noted first."""
        if self.error is not None:
            now = int(time.time())
            if now == self._failed_at or not self._write_line(
                    loss_marker(self.agent_id, self.lost, self.error, self._since, now),
                    reopen=True):
                self.lost += len(data)
                return
            self.error, self.lost = None, 0
        self._written = 0
        try:
            self.write(data)
        except OSError as error:
            self.lost += len(data) - self._written
            self._failed(error)

    def _write_line(self, line: bytes, *, reopen: bool) -> bool:
        try:
            if reopen:
                self.open()
            self.write(line if self.ends_with_newline() else b"\n" + line)
        except OSError as error:
            self._failed(error)
            return False
        return True

    def _failed(self, error: OSError) -> None:
        self.close()
        self._failed_at = int(time.time())
        if self.error is None:
            self.error, self._since = error.strerror or str(error), self._failed_at

    def write(self, data: bytes) -> None:
        """Append `data`, rotating between lines when it would pass `max_bytes`."""
        while data:
            room = self.max_bytes - self.size
            if len(data) <= room:
                self._append(data)
                return
            cut = data.rfind(b"\n", 0, max(room, 0)) + 1
            if cut == 0 and self.size == 0:
                cut = room  # one line longer than the whole cap: split it
            if cut:
                self._append(data[:cut])
                data = data[cut:]
            self.rotate()

    def _append(self, data: bytes) -> None:
        # The index line after the data: no entry for bytes that never reached the log.
        second, start = int(time.time()), self.size
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
            self.size += written
            self._written += written
        if second != self._last_second:
            self._last_second = second
            _write_all(self._idx, f"{second} {start}\n".encode())

    def rotate(self) -> None:
        """log -> log.1 -> ... -> log.K (the oldest dropped); then a fresh, empty log.

        Raises if the log could not be moved aside: writing on would rotate forever."""
        before = os.fstat(self._fd)  # still open: its inode cannot be reused meanwhile
        error = _shift(self.path, self.keep)
        _shift(self.path, self.keep, suffix=".idx")  # LOG.N.idx goes with LOG.N
        try:
            now = os.stat(self.path)
        except OSError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (before.st_dev, before.st_ino):
            raise error or OSError(17, os.strerror(17))  # EEXIST, as the other writers say
        self.open()

    def close(self) -> None:
        for fd in (self._fd, self._idx):
            if fd >= 0:
                _quietly(os.close, fd)
        self._fd = self._idx = -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _shift(path: str, keep: int, suffix: str = "") -> OSError | None:
    """Each rename (or unlink) that fails is skipped, as in logpipe.pl: e.g. one removed
    by someone (the fresh file is created anyway). Returns the error of moving (or
    removing) PATH+suffix itself, if that failed."""
    moves = [] if keep == 0 else [(f"{path}.{number}{suffix}", f"{path}.{number + 1}{suffix}")
                                  for number in range(keep - 1, 0, -1)]
    for older, newer in moves:
        if os.path.exists(older):
            _quietly(os.replace, older, newer)
    try:
        if keep == 0:
            os.unlink(path + suffix)
        else:
            os.rename(path + suffix, f"{path}.1{suffix}")
    except OSError as error:
        return error
    return None


def _quietly(operation: Callable[..., object], *args: object) -> None:
    try:  # noqa: SIM105 - contextlib.suppress would cost this process an import
        operation(*args)
    except OSError:
        pass


# Every line swarm-launch itself writes into an agent's log starts with this.
MARKER_PREFIX = "--- swarm-launch: "


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def marker(agent_id: str, pane: str, when: float | None = None) -> bytes:
    """The line written at each start, so a restart or replace is visible in the log."""
    stamp = _stamp(time.time() if when is None else when)
    return f"{MARKER_PREFIX}agent {agent_id} started {stamp} (pane {pane}) ---\n".encode()


def loss_marker(agent_id: str, lost: int, error: str, since: float, until: float) -> bytes:
    """The line written when the log takes writes again after `error` (the first one)."""
    return (f"{MARKER_PREFIX}agent {agent_id} log writing failed from {_stamp(since)} to "
            f"{_stamp(until)} ({error}); {lost} bytes lost ---\n").encode()


def pump(source: int, writer: LogWriter) -> None:
    """Copy `source` to the log until EOF; after SIGTERM/SIGHUP, until the pipe is drained."""
    while True:
        try:
            chunk = os.read(source, READ_SIZE)
        except BlockingIOError:
            return  # draining after a signal, and nothing is left
        if not chunk:
            return
        writer.output(chunk)


def _drain_on_signal(source: int) -> None:
    # tmux may signal us when the pane goes; what is already in the pipe still gets written.
    def handler(signum: int, frame: FrameType | None) -> None:
        os.set_blocking(source, False)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def parse_args(argv: list[str]) -> tuple[str, dict[str, str]]:
    if not argv or argv[0].startswith("--"):
        raise SystemExit(USAGE)
    options = {"--max-bytes": "52428800", "--keep": "3", "--agent": "?", "--pane": "?"}
    rest = argv[1:]
    while rest:
        if len(rest) < 2 or rest[0] not in options:
            raise SystemExit(USAGE)
        options[rest[0]] = rest[1]
        rest = rest[2:]
    return argv[0], options


def main(argv: list[str]) -> int:
    path, options = parse_args(argv)
    try:
        max_bytes, keep = int(options["--max-bytes"]), int(options["--keep"])
    except ValueError:
        raise SystemExit(USAGE) from None
    source = sys.stdin.fileno()
    _drain_on_signal(source)
    writer = LogWriter(path, max_bytes=max_bytes, keep=keep, agent_id=options["--agent"])
    try:
        writer.start(marker(options["--agent"], options["--pane"]))
        pump(source, writer)
    finally:
        writer.close()
    return 0


WRITER_ENV = "SWARM_LAUNCH_LOG_WRITER"  # "perl" or "python" forces one; anything else: auto
CACHE_ENV = "SWARM_LAUNCH_CACHE_DIR"  # where the C writer is built; default AI_SWARM_DIR/.bin
_HERE = os.path.dirname(os.path.abspath(__file__))
PERL_WRITER = os.path.join(_HERE, "logpipe.pl")
C_WRITER = os.path.join(_HERE, "logpipe.c")


def writer_cache(data_dir: str) -> str:
    """Where `up` builds the C writer: $SWARM_LAUNCH_CACHE_DIR, else AI_SWARM_DIR/.bin.
    Absolute: tmux runs the writer from the server's working directory."""
    return os.path.abspath(os.environ.get(CACHE_ENV) or os.path.join(data_dir, ".bin"))


def writer_argv(choice: str | None = None, search_path: str | None = None, *,
                cache_dir: str | None = None) -> list[str]:
    """The writer program by absolute paths: the C one if it is (or can be) built in
    `cache_dir`, else Perl's if a `perl` is on PATH, else Python's.

    Absolute, so it runs whatever the tmux server's PATH and current directory are;
    Python under `-I -S`: no PYTHONPATH, no user site, no site import.
    """
    choice = os.environ.get(WRITER_ENV, "auto") if choice is None else choice
    if choice not in ("perl", "python") and cache_dir is not None:
        native = native_writer(cache_dir, search_path)
        if native:
            return [native]
    import shutil  # only now: ~2 ms of every `up` with the C writer, which has no use for it

    perl = shutil.which("perl", path=search_path) if choice != "python" else None
    if perl and os.path.isfile(PERL_WRITER):
        return [os.path.abspath(perl), PERL_WRITER]
    return [os.path.abspath(sys.executable), "-I", "-S", os.path.abspath(__file__)]


FAILED_BUILD_RETRY_S = 24 * 3600  # a failure may pass (a compiler timing out under load)


def native_writer(cache_dir: str, search_path: str | None = None) -> str | None:
    """The C writer built for this machine, this `logpipe.c` and this compiler ($CC, else
    cc), building it on first use; None when it cannot be had (then Perl's serves).

    It lives in `cache_dir` (made 0700, refused if unsafe: it holds a program we run) as
    `logpipe-<hash>`. When the build fails, `<binary>.failed` says why, and no `up` tries
    again for a day, or until logpipe.c or $CC changes or that file is removed. Never
    raises: a log writer must not stop `up`.
    """
    try:
        binary = _native_path(os.path.abspath(cache_dir))
        if _is_usable(binary):
            return binary
        note = binary + ".failed"
        if os.path.lexists(note) and time.time() - os.lstat(note).st_mtime < FAILED_BUILD_RETRY_S:
            return None
        return _build(binary, search_path)
    except Exception:  # whatever went wrong, the Perl writer serves
        return None


def _native_path(cache_dir: str) -> str:
    import hashlib

    from swarm_launch import store

    with open(C_WRITER, "rb") as handle:
        source = handle.read()
    store.check_ancestors(cache_dir)  # it holds a program we run: as AI_SWARM_DIR is checked
    cache_dir = store.ensure_private_dir(cache_dir)
    identity = b"\0".join([source, " ".join(os.uname()).encode(),
                           (os.environ.get("CC") or "cc").encode()])
    return os.path.join(cache_dir, f"logpipe-{hashlib.sha256(identity).hexdigest()[:16]}")


def _is_usable(path: str) -> bool:
    """Ours alone, not empty, and executable here (`access` sees a noexec mount)."""
    import stat

    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_size > 0
            and info.st_mode & 0o022 == 0 and os.access(path, os.X_OK))


def _build(binary: str, search_path: str | None) -> str | None:
    """Compile to a temporary name, check the program writes a log, then rename it in
    place: a concurrent `up` sees the finished program or none."""
    import shlex
    import shutil
    import subprocess

    compiler = shlex.split(os.environ.get("CC") or "cc")
    found = shutil.which(compiler[0], path=search_path) if compiler else None
    if not found:
        return None
    compiler[0] = found
    partial = f"{binary}.{os.getpid()}.tmp"
    try:
        built = subprocess.run([*compiler, "-O2", "-o", partial, C_WRITER],
                               capture_output=True, timeout=120, check=False)
        if built.returncode:
            problem = built.stderr.decode(errors="replace").strip() or f"exit {built.returncode}"
        else:
            problem = _smoke_test(partial)
        if not problem:
            _durable(partial)
            os.replace(partial, binary)
            return binary
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = str(exc)
    finally:
        _quietly(os.unlink, partial)  # gone already when it was renamed
    _note_failure(binary, problem)
    return None


def _durable(program: str) -> None:
    """0700 and on disk before the rename: a crash must not leave an empty program."""
    os.chmod(program, 0o700)
    fd = os.open(program, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _smoke_test(program: str) -> str:
    """'' if `program` writes its start marker and its input to a log; else what it did."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        log = os.path.join(scratch, "check.log")
        ran = subprocess.run([program, log, "--agent", "check", "--pane", "%0"],
                             input=b"ok\n", capture_output=True, timeout=30, check=False)
        try:
            with open(log, "rb") as handle:
                written = handle.read()
        except OSError as exc:
            written = str(exc).encode()
    if ran.returncode == 0 and written.endswith(b" ---\nok\n"):
        return ""
    return f"the built writer failed its check (exit {ran.returncode}): {written[-200:]!r}"


def _note_failure(binary: str, problem: str) -> None:
    import contextlib
    import tempfile

    with contextlib.suppress(OSError):
        fd, partial = tempfile.mkstemp(dir=os.path.dirname(binary))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"building {C_WRITER} with {os.environ.get('CC') or 'cc'} failed; "
                         "the Perl or Python writer serves instead. swarm-launch tries again "
                         "a day later, or when this file is removed.\n"
                         f"{problem}\n")
        os.replace(partial, binary + ".failed")


def pipe_command(log_path: str, settings: LogSettings, *, agent_id: str,
                 pane_id_format: str = "#{pane_id}", writer: list[str] | None = None,
                 unset: Iterable[str] = ()) -> str:
    """The shell command to give `pipe-pane -O`: tmux format-expands it, then runs it with sh.

    Every `#` is doubled except in `pane_id_format`, which tmux expands to the pane id.
    `writer` (from `writer_argv`, looked up once per batch by callers that have many).
    `unset`: variables the writer must not inherit. tmux starts it with the environment of
    the server *process* (the session's `set-environment -r` does not apply to pipe-pane),
    so a server started from a shell that exported keys would hand it every one of them;
    the shell that execs the writer drops them first, at no cost of a process.
    """
    import shlex

    words = [*(writer or writer_argv()), log_path,
             "--max-bytes", str(settings.max_bytes), "--keep", str(settings.keep),
             "--agent", agent_id, "--pane"]
    quoted = " ".join(shlex.quote(word).replace("#", "##") for word in words)
    # LC_ALL=C: it writes bytes, and Perl warns on stderr about a locale (LANG) that is not
    # installed, and starts ~0.2 ms faster without one.
    return f"{shell_unset(unset)}LC_ALL=C exec {quoted} {shlex.quote(pane_id_format)}"


def shell_unset(names: Iterable[str]) -> str:
    """`unset A B; ` for sh, or "". Only names sh can hold: on any other `unset` fails,
    and a failing special builtin ends the shell (dash); sh passes such names on to no
    program anyway."""
    valid = sorted({name for name in names if name.isascii() and name.isidentifier()})
    return f"unset {' '.join(valid)}; " if valid else ""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
