"""TmuxSwarmManager: the one module that runs tmux, and the Python API over a swarm.

Every mutation is one `tmux source-file -` with its script on stdin (built by
`tmux_script`), observation is one `list-panes -s`; both go through `run_tmux`,
an asyncio subprocess with a timeout. libtmux objects are offered to callers
but never used on a hot path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import math
import os
import signal as signals
import stat
import subprocess
import sys
import time
import uuid
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from swarm_launch import logpipe, records, store, supervise
from swarm_launch.exceptions import (
    AgentNotFoundError,
    PaneDeadError,
    SessionCreationError,
    SessionNotFoundError,
    StoreError,
    TmuxNotFoundError,
    TmuxSwarmError,
    TmuxTimeoutError,
    UserError,
)
from swarm_launch.logfiles import QUIET_LINE_S, LogFollower, decode_line, not_a_file
from swarm_launch.model import SendSettings, StopSettings
from swarm_launch.observed import (
    LIST_PANES_FORMAT,
    OPT_PROMPT_DUE,
    OPT_READY,
    OPT_STARTED,
    AgentStatus,
    PaneState,
    owned_by,
    parse_panes,
)
from swarm_launch.sockets import no_socket_file, same_socket, server_listening, socket_of
from swarm_launch.tmux_script import (
    LISTING_FORMAT,
    PLACEHOLDER_SCRIPT,
    AgentLaunch,
    WindowPlan,
    assign_errors,
    check_id,
    check_launch,
    disarm_script,
    kill_panes_script,
    line,
    new_session_line,
    parse_listing,
    parse_spawn_output,
    parse_version,
    paste_args,
    paste_text,
    prompt_options_script,
    quote,
    rearm_script,
    secret_names,
    server_environment,
    session_settings,
    session_target,
    signal_number,
    submit_args,
    watch_line,
    window_line,
)

__all__ = ["AgentLaunch", "AgentPane", "AgentSpawnError", "AgentStream", "Broadcast",
           "BroadcastError", "InvalidAgentIdError", "TmuxSwarmManager", "observe_server",
           "run_tmux"]

log = logging.getLogger(__name__)

MIN_VERSION = (3, 2)
INSTALL_HINT = ("install tmux 3.2 or newer: `apt-get install tmux` (Debian/Ubuntu) "
                "or `brew install tmux` (macOS)")
# stderr of a tmux client whose server or session is not there: no socket file ("error
# connecting to PATH (No such file or directory)"), a socket nothing listens on (tmux 3.3a
# leaves a killed server's socket behind: "no server running on PATH"), no session. Any
# other connect error (a path too long, permission denied) is a server we cannot reach.
_GONE = ("no server running", "(No such file or directory)", "can't find session",
         "no such session", "session not found", "server exited unexpectedly",
         "can't find window", "no current target")
_REFUSED = "no server running on "
_POLL_S = 0.02
T = TypeVar("T")


def _gone(err: str) -> bool:
    """Whether tmux's stderr says nothing runs there (no server, no session), rather than
    that the server could not be reached."""
    return any(text in err for text in _GONE) and _refused_non_socket(err) is None


def _refused_non_socket(err: str) -> str | None:
    """tmux says "no server running on PATH" for any refused connect, also when PATH (a
    -S) is a directory or a regular file, where no server can ever listen: then what
    PATH is, to say so."""
    path = err.partition(_REFUSED)[2].split("\n")[0].strip()
    try:
        mode = os.stat(path).st_mode if path else None
    except OSError:
        return None
    if mode is None or stat.S_ISSOCK(mode):
        return None
    return f"{path} is {'a directory' if stat.S_ISDIR(mode) else 'not a socket'}"


def _unreachable(err: str) -> str:
    """tmux's message, with what the path is where tmux's own words would mislead."""
    what = _refused_non_socket(err)
    return f"{err.strip()} ({what})" if what else err.strip()


if TYPE_CHECKING:
    import libtmux  # imported when first used: it costs ~50 ms of every command's start-up

class TmuxResult(NamedTuple):
    rc: int
    out: str
    err: str


@dataclass(frozen=True)
class AgentPane:
    """A created agent. `pane` is a libtmux handle on its pane, as tmux shows it now."""

    agent_id: str
    pane_id: str
    window_id: str
    session_id: str
    # The manager's libtmux server, asked for only when `pane` is (not in repr/eq).
    server: Callable[[], libtmux.Server] = field(repr=False, compare=False)
    status: AgentStatus = AgentStatus.RUNNING

    @property
    def pane(self) -> libtmux.Pane:
        """Built on first use, so `up` and the CLI never import libtmux (~40 ms); each use
        asks tmux (a bare `libtmux.Pane` has every attribute None until refreshed)."""
        import libtmux

        return libtmux.Pane.from_pane_id(server=self.server(), pane_id=self.pane_id)


class Broadcast(NamedTuple):
    """Who a broadcast reached, and the agents it skipped because they have exited."""

    sent: tuple[str, ...]
    skipped: tuple[str, ...]


class AgentStream(AsyncIterator[str]):
    """An agent's new log lines, from `stream_agent_output`. It holds the log open from
    its creation: `aclose()` closes it, as does dropping the stream, iterated or not, or
    its end.

    Not an async generator: a cancelled `__anext__` (say, `asyncio.wait_for` timing out)
    would close one for good. Its state (the log position, lines read and not yet
    returned) lives here and changes only between awaits, so a cancellation loses no
    line and the next `__anext__` goes on where it stopped."""

    def __init__(self, follower: LogFollower, *, find: Callable[[], Awaitable[object]],
                 running: Callable[[], Awaitable[bool]], poll_interval: float) -> None:
        self._follower = follower
        self._find = find  # raises if the agent is not there
        self._running = running  # whether it runs, or a restart is to come
        self._poll_interval = poll_interval
        self._pending: collections.deque[str] = collections.deque()
        self._checked: float | None = None  # when it was last seen running; None: not yet
        self._ended = False
        self._close_log = weakref.finalize(self, follower.close)

    def __aiter__(self) -> AgentStream:
        return self

    async def __anext__(self) -> str:
        while not self._pending:
            if self._ended:
                raise StopAsyncIteration
            await self._read()
        return self._pending.popleft()

    async def _read(self) -> None:
        """Add what the log has to `_pending`; once nothing is left, wait a poll or end."""
        if self._checked is None:
            await self._find()
            self._checked = time.monotonic()
        self._take(self._follower.poll())
        if rest := self._follower.quiet_rest(QUIET_LINE_S):
            self._take([rest])
        if self._pending:
            return
        if time.monotonic() - self._checked >= 1.0:
            self._checked = time.monotonic()
            if not await self._running():
                self._take_the_rest()
                return
        if not self._follower.behind:
            await asyncio.sleep(self._poll_interval)

    def _take(self, lines: Iterable[bytes]) -> None:
        self._pending.extend(map(decode_line, lines))

    def _take_the_rest(self) -> None:
        """All the dead agent wrote, however much is left to read, and end."""
        while True:
            self._take(self._follower.poll())
            if not self._follower.behind:
                break
        if tail := self._follower.rest():  # its last line had no newline
            self._take([tail])
        self._ended = True
        self._close_log()

    async def aclose(self) -> None:
        self._ended = True
        self._pending.clear()
        self._close_log()


class InvalidAgentIdError(AgentNotFoundError, ValueError):
    """An agent id no agent can have: a ValueError, as the README promises for a bad id
    (and as spawning says it), and still the AgentNotFoundError it was before (a user
    error to the CLI, which says why)."""


def _some(names: Sequence[str], shown: int = 12) -> str:
    """`names` for a message, the first `shown` of a long list."""
    if len(names) <= shown:
        return ", ".join(names) or "none"
    return f"{', '.join(names[:shown])}, ... ({len(names)} in all)"


def _check_agent_id(agent_id: str) -> None:
    try:
        check_id("agent", agent_id)
    except ValueError as exc:
        raise InvalidAgentIdError(str(exc)) from None


class BroadcastError(TmuxSwarmError):
    """A broadcast that some agents did not get: who did (`sent`), who was skipped for
    having exited (`skipped`), and the error of each agent it failed for (`failures`)."""

    def __init__(self, message: str, *, sent: tuple[str, ...], skipped: tuple[str, ...],
                 failures: dict[str, UserError]) -> None:
        super().__init__(message)
        self.sent = sent
        self.skipped = skipped
        self.failures = failures


class AgentSpawnError(SessionCreationError):
    """Some agents (or the session) were not created: tmux's message per agent id."""

    def __init__(self, message: str, *, created: list[AgentPane],
                 failures: dict[str, str]) -> None:
        super().__init__(message)
        self.created = created
        self.failures = failures


async def run_tmux(argv: Sequence[str], *, stdin: bytes | None = None,
                   timeout_s: float) -> TmuxResult:
    """Run one tmux client without blocking the loop; kill it if it outlives `timeout_s`."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=server_environment(os.environ))
    try:
        out, err = await _within(proc.communicate(stdin), timeout_s)
    except BaseException as exc:  # timeout or cancellation: never leave the client behind
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        _close_pipes(proc)
        await _reaped(proc)
        if isinstance(exc, asyncio.TimeoutError):
            raise TmuxTimeoutError(
                f"tmux did not answer within {timeout_s:g}s ({_describe(argv)}); "
                "is the server stuck, or a pane not reading its input?") from None
        raise
    return TmuxResult(proc.returncode or 0, _decode(out), _decode(err))


async def _within(work: Coroutine[Any, Any, T], timeout_s: float) -> T:
    """`work`, or TimeoutError after `timeout_s`. On 3.11+ by `asyncio.timeout`: 3.11's
    `wait_for` can swallow a cancellation that lands as the work ends (CPython gh-86296),
    and a Ctrl-C or a caller's own timeout must not be lost in a tmux call."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout_s):
            return await work
    return await asyncio.wait_for(work, timeout_s)


KILLED_CLIENT_WAIT_S = 2.0  # how long a killed client's exit is waited for


async def _reaped(proc: asyncio.subprocess.Process) -> None:
    """Wait, briefly, for a killed client's exit to reach asyncio. Not `await proc.wait()`:
    asyncio's wait ends only once it has connected and closed every pipe of the client,
    and asyncio.run's final sweep, cancelling every task, may cancel its own task that
    connects them (CPython gh-125502, fixed after 3.12): that wait never ended, and the run
    hung in its clean-up. A wait given up leaves the client to asyncio's child watcher,
    which reaps it (SIGKILL cannot be ignored); cancelled, this returns at once."""
    waiting = asyncio.ensure_future(proc.wait())
    try:
        await asyncio.wait([waiting], timeout=KILLED_CLIENT_WAIT_S)
    finally:
        waiting.cancel()  # a wait given up must not outlive the run: nothing to await


def _close_pipes(proc: asyncio.subprocess.Process) -> None:
    """Close our ends of a killed client's pipes. The client hands its stdout and stderr
    to the server over the socket, and asyncio's wait (3.11) returns only once every pipe
    is closed: a stuck server (stopped, say) keeps them open, and the wait would never end.
    asyncio has no public handle on the transport that owns them."""
    transport = getattr(proc, "_transport", None)
    if isinstance(transport, asyncio.SubprocessTransport):
        transport.close()


def _process_secret_names(pid: str) -> list[str]:
    """`secret_names` of process `pid`'s environment (Linux's /proc); where that cannot be
    read, of ours: a server started from a shell like ours holds what it exported."""
    try:
        with open(f"/proc/{int(pid)}/environ", "rb") as handle:
            entries = handle.read().split(b"\0")
    except (OSError, ValueError):
        return secret_names(os.environ)
    return secret_names({os.fsdecode(entry.partition(b"=")[0]): "" for entry in entries
                         if entry})


def _run_tmux_sync(argv: Sequence[str], *, timeout_s: float) -> TmuxResult:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False,
                              env=server_environment(os.environ))
    except subprocess.TimeoutExpired:
        raise TmuxTimeoutError(
            f"tmux did not answer within {timeout_s:g}s ({_describe(argv)})") from None
    return TmuxResult(done.returncode, _decode(done.stdout), _decode(done.stderr))


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _describe(argv: Sequence[str]) -> str:
    """`tmux list-panes`: the command words only, without options, their values (a socket
    name, a target, a format) or anything a script sends on stdin."""
    words: list[str] = []
    skip = False
    for word in argv[1:]:
        if skip or word.startswith(("/", "-")):
            skip = word in ("-L", "-S", "-F", "-t", "-c", "-b", "-e", "-n")
            continue
        words.append(word)
    return "tmux " + " ".join(words[:4])


_versions: dict[str, tuple[int, int]] = {}
VERSION_CACHE = ".tmux-version.json"  # under AI_SWARM_DIR


def find_tmux() -> str:
    """The tmux binary on PATH, checked to be recent enough (cached per binary)."""
    path = on_path("tmux")
    if path is None:
        raise TmuxNotFoundError(f"tmux is not on PATH; {INSTALL_HINT}")
    if path not in _versions:
        _versions[path] = _remembered_version(path)
    if _versions[path] < MIN_VERSION:
        found = ".".join(map(str, _versions[path]))
        raise TmuxNotFoundError(f"{path} is tmux {found}; {INSTALL_HINT}")
    return path


def on_path(name: str, path: str | None = None) -> str | None:
    """`shutil.which(name, path=path)` for a bare name, without importing shutil (~2 ms
    of start-up: it pulls in bz2, lzma and fnmatch)."""
    search = os.environ.get("PATH", os.defpath) if path is None else path
    for directory in search.split(os.pathsep):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _remembered_version(path: str) -> tuple[int, int]:
    """`tmux -V` costs a process, ~3 ms of every command: its answer is remembered in
    AI_SWARM_DIR for the binary at `path` as it is now (an upgrade changes its inode,
    size or mtime, and so asks again). Only for a compiled tmux: a script (an asdf or mise
    shim, a wrapper) stays the same file while the tmux it runs changes."""
    try:
        info = os.stat(path)
        with open(path, "rb") as binary_file:
            native = binary_file.read(4) == b"\x7fELF"
        cache = os.path.join(store.data_dir(), VERSION_CACHE)
    except (OSError, StoreError):  # an unsafe AI_SWARM_DIR is refused later, clearly
        return _version_of(path)
    if not native or os.path.isdir(cache):  # a shim script may run another tmux each time
        return _version_of(path)
    binary = [path, info.st_ino, info.st_size, info.st_mtime_ns]
    known = store.read_json(cache)
    if isinstance(known, dict) and known.get("binary") == binary:
        version = known.get("version")
        if isinstance(version, list) and len(version) == 2 and all(
                isinstance(part, int) for part in version):
            return version[0], version[1]
    found = _version_of(path)
    with contextlib.suppress(StoreError, OSError):  # a cache: asked again next time
        store.atomic_write_json(cache, {"binary": binary, "version": list(found)})
    return found


def _version_of(path: str) -> tuple[int, int]:
    try:
        out = subprocess.run([path, "-V"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TmuxNotFoundError(f"cannot run {path} -V ({exc}); {INSTALL_HINT}") from exc
    return parse_version(out)


def _socket_args(socket_name: str | None, socket_path: str | None) -> list[str]:
    return ["-S", socket_path] if socket_path else ["-L", socket_name] if socket_name else []


async def observe_server(*, socket_name: str | None = None, socket_path: str | None = None,
                         timeout_s: float = 10.0) -> tuple[PaneState, ...]:
    """Every pane of a whole server (all sessions) in one `list-panes -a`; () if no server."""
    socket = _socket_args(socket_name, socket_path)
    result = await run_tmux([find_tmux(), *socket, "list-panes", "-a", "-F", LIST_PANES_FORMAT],
                            timeout_s=timeout_s)
    if result.rc != 0:
        if _gone(result.err):
            return ()
        raise TmuxSwarmError(f"list-panes -a: tmux said: {_unreachable(result.err)}")
    return parse_panes(result.out)


def _proc_table() -> dict[int, tuple[int, int, int, bytes]]:
    """Every process, zombies too: pid -> (ppid, process group, session, state + start time).

    The start time (clock ticks since boot) tells a process from a later one that reused
    its pid."""
    table: dict[int, tuple[int, int, int, bytes]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (entry := _proc_entry(int(name))) is not None:
            table[int(name)] = entry
    return table


def _proc_entry(pid: int) -> tuple[int, int, int, bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    return (int(fields[1]), int(fields[2]), int(fields[3]), fields[0] + b" " + fields[19])


def _running(entry: tuple[int, int, int, bytes]) -> bool:
    return entry[3][:1] not in (b"Z", b"X")


def _start_times(pids: Collection[int]) -> dict[int, bytes]:
    """Each pid's start time now, to recognise the same process in a later scan (read for
    these pids only: the scans that follow read all of /proc)."""
    entries = {pid: _proc_entry(pid) for pid in pids}
    return {pid: entry[3].split()[1] for pid, entry in entries.items() if entry is not None}


def _members(live: Collection[int], dead: Collection[int],
             starts: Mapping[int, bytes]) -> set[int]:
    """The processes of panes led by `live` pids (and by `dead` ones, whose pane process
    exited): their groups, their sessions, and every descendant (a child that left
    both with setsid is still a child).

    A pid names a process only until it is reaped: then the kernel may give it to any
    new process (with pid_max 32768, a busy test suite wraps in about a minute), which
    may lead a session of its own (a tmux server, another swarm's pane). So a live
    leader counts only while its pid still names the process seen in `starts` (zombie
    or not), or while no process holds it; a dead leader's pid, while no running process
    holds it. Only a process with that pid can create a group or session of that id,
    and the pid is not reused while they have members: members found then are leftovers
    of the agent, never an unrelated process that reused the pid.
    """
    table = _proc_table()

    def ours(pid: int) -> bool:
        entry = table.get(pid)
        if entry is None:
            return True
        if pid in live:
            return entry[3].split()[1] == starts.get(pid)
        return not _running(entry)  # a dead pane's own unreaped zombie

    leaders = {pid for pid in {*live, *dead} if ours(pid)}
    running = {pid: entry for pid, entry in table.items() if _running(entry)}
    found = {pid for pid, (_, pgid, sid, _) in running.items()
             if pgid in leaders or sid in leaders}
    found |= {pid for pid in leaders if pid in running}
    grew = True
    while grew:
        more = {pid for pid, (ppid, *_) in running.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    found.discard(os.getpid())  # a master agent killing its own pane's group lives on
    return found


def _alive(pids: Collection[int]) -> set[int]:
    table = _proc_table()
    return {pid for pid in pids if pid in table and _running(table[pid])}


def _signal(pids: Collection[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def _terminate(live: set[int], dead: set[int], sig: int | None,
                     timeout_s: float) -> None:
    """`sig` to every member, wait for them up to `timeout_s`, then SIGKILL the rest."""
    starts = _start_times(live)  # the processes the observation named, pinned
    if sig is not None:
        doomed = _members(live, dead, starts)
        _signal(doomed, sig)
        deadline = time.monotonic() + timeout_s
        while _alive(doomed) and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
    # Scan again: a process may have forked while we waited (and a leader's pid may
    # have been reused meanwhile: `starts` tells).
    doomed = _members(live, dead, starts)
    _signal(doomed, signals.SIGKILL)
    deadline = time.monotonic() + 5.0
    while _alive(doomed) and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)


async def _to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result, `work` run to its end even when the caller is cancelled meanwhile
    (the cancellation is raised once it is done): for what tmux has begun and we must
    see through, or what it did would be left half recorded."""
    task = asyncio.ensure_future(work)
    interrupted: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            interrupted = exc
    result = task.result()  # its own error first: it says more than the cancellation
    if interrupted is not None:
        raise interrupted
    return result


def _unrunnable(launch: AgentLaunch) -> str | None:
    """Why an argv command cannot be exec'd, if it plainly cannot: tmux's child would just
    exit 1 and leave nothing in the pane or the log to say why. (A string command runs
    under sh, which says "not found" itself.) The PATH searched is the agent's, else
    ours, which the tmux server inherits when we start it."""
    if isinstance(launch.command, str):
        return None
    program = launch.command[0]
    if "/" not in program:
        path = launch.env.get("PATH", os.environ.get("PATH", os.defpath))
        if on_path(program, path) is None:
            return f"command not found: {program} (not on PATH)"
        return None
    if not os.path.isabs(program) and not launch.workdir:
        return None  # relative to a directory we cannot be sure of
    where = os.path.join(launch.workdir or "", program)
    if not os.path.isfile(where):
        return f"command not found: {program}"
    if not os.access(where, os.X_OK):
        return f"command not executable: {program}"
    return None


def _overridden(stop: StopSettings, signal: str | None, timeout_s: float | None
                ) -> StopSettings:
    """`stop` with what the caller gave instead, checked before anything is stopped."""
    if signal is not None:
        signal_number(signal)
    # NaN compares false with everything: it passed `< 0` and then waited as 0 would.
    if timeout_s is not None and not (timeout_s >= 0 and math.isfinite(timeout_s)):
        raise ValueError(f"timeout_s must be a finite number, 0 or more, not {timeout_s!r}")
    return StopSettings(stop.signal if signal is None else signal,
                        stop.timeout_s if timeout_s is None else timeout_s)


def _not_a_log_file(path: str) -> str | None:
    """Why the writer could not append to `path` (a directory, a symlink), if so: one
    lstat (`logfiles.not_a_log` also looks at the rotated files, which `logs` reads)."""
    kind = not_a_file(path)
    return None if kind is None else f"its log {path} is {kind}: remove it (or move it aside)"


def _unreaped(pane: PaneState) -> bool:
    return pane.dead and pane.exit_status is None and pane.exit_signal is None


def _signal_server(pid_query: TmuxResult) -> None:
    """SIGCHLD to the server whose `#{pid}` was queried: it reaps its exited children."""
    with contextlib.suppress(ValueError, OSError):
        os.kill(int(pid_query.out.strip()), signals.SIGCHLD)


class TmuxSwarmManager:
    """One swarm (`cluster_id`) in its tmux session `swarm-{cluster_id}`."""

    def __init__(self, cluster_id: str, base_dir: str | None = None,
                 socket_path: str | None = None, socket_name: str | None = None, *,
                 call_timeout_s: float = 10.0) -> None:
        check_id("swarm", cluster_id)
        self.cluster_id = cluster_id
        self.base_dir = base_dir
        self.socket_path = socket_path
        self.socket_name = socket_name
        self.call_timeout_s = call_timeout_s
        self.data_dir = store.data_dir()
        self.session_name = f"swarm-{cluster_id}"

    @functools.cached_property
    def server(self) -> libtmux.Server:
        """A libtmux handle on this swarm's server, for callers who want libtmux objects."""
        import libtmux

        return libtmux.Server(socket_name=self.socket_name, socket_path=self.socket_path)

    # -- running tmux -------------------------------------------------------

    def _argv(self, args: Sequence[str]) -> list[str]:
        return [find_tmux(), *_socket_args(self.socket_name, self.socket_path), *args]

    async def _tmux(self, *args: str, stdin: bytes | None = None,
                    timeout_s: float | None = None) -> TmuxResult:
        return await run_tmux(self._argv(args), stdin=stdin,
                              timeout_s=timeout_s or self.call_timeout_s)

    def _tmux_sync(self, *args: str) -> TmuxResult:
        return _run_tmux_sync(self._argv(args), timeout_s=self.call_timeout_s)

    def _failure(self, result: TmuxResult, what: str) -> TmuxSwarmError:
        message = result.err.strip() or f"exit status {result.rc}"
        if _gone(message):
            return SessionNotFoundError(
                f"tmux session {self.session_name} is gone ({message}); start the swarm again")
        if "can't find pane" in message or "no such pane" in message:
            return AgentNotFoundError(f"{what}: the agent's pane is gone ({message})")
        return TmuxSwarmError(f"{what}: tmux said: {_unreachable(message)}")

    # -- observing ----------------------------------------------------------

    async def _listing(self) -> tuple[tuple[PaneState, SendSettings], ...]:
        listing = await self._query_listing()
        if any(_unreaped(pane) for pane, _ in listing):
            # tmux 3.3 can miss the SIGCHLD of a child that exits fast: its pane reads
            # dead without an exit status until the server is nudged into reaping it.
            await self._nudge_server()
            listing = await self._query_listing()
        return listing

    async def _query_listing(self) -> tuple[tuple[PaneState, SendSettings], ...]:
        if no_socket_file(self.socket_label()):  # no server there: no tmux client to ask
            return ()
        result = await self._tmux("list-panes", "-s", "-t", f"={self.session_name}:",
                                  "-F", LISTING_FORMAT)
        return self._parse_listing(result)

    async def _nudge_server(self) -> None:
        _signal_server(await self._tmux("display-message", "-p", "#{pid}"))

    def _parse_listing(self, result: TmuxResult) -> tuple[tuple[PaneState, SendSettings], ...]:
        if result.rc != 0:
            if _gone(result.err):
                return ()
            raise self._failure(result, "list-panes")
        return parse_listing(result.out)

    async def observe(self) -> tuple[PaneState, ...]:
        """Every pane of the session, ours or not; () when the session or server is gone."""
        return tuple(pane for pane, _ in await self._listing())

    def _observe_sync(self) -> tuple[PaneState, ...]:
        """`observe` for the synchronous API: the same nudge as `_listing`."""
        panes = self._query_panes_sync()
        if any(_unreaped(pane) for pane in panes):
            _signal_server(self._tmux_sync("display-message", "-p", "#{pid}"))
            panes = self._query_panes_sync()
        return panes

    def _query_panes_sync(self) -> tuple[PaneState, ...]:
        result = self._tmux_sync("list-panes", "-s", "-t", f"={self.session_name}:",
                                 "-F", LISTING_FORMAT)
        return tuple(pane for pane, _ in self._parse_listing(result))

    async def _agent(self, agent_id: str) -> tuple[PaneState, SendSettings]:
        _check_agent_id(agent_id)
        listing = await self._listing()
        if not listing:
            raise SessionNotFoundError(
                f"tmux session {self.session_name} does not exist; start the swarm first")
        for pane, settings in listing:
            if pane.cluster == self.cluster_id and pane.agent_id == agent_id:
                return pane, settings
        known = list(dict.fromkeys(pane.agent_id for pane, _ in listing  # window order
                                   if pane.cluster == self.cluster_id and pane.agent_id))
        raise AgentNotFoundError(f"no agent {agent_id!r} in swarm {self.cluster_id!r}; "
                                 f"its agents are: {_some(known)}")

    # -- creating -----------------------------------------------------------

    async def start(self) -> None:
        """Pre-flight, then create the detached session, or adopt it if it exists."""
        find_tmux()
        panes = await self.observe()
        if not panes:
            script = self._session_line(secret_names(os.environ)) + "\n"
            result = await self._tmux("start-server", ";", "source-file", "-",
                                      stdin=script.encode())
            if not parse_spawn_output(result.out).session_ok and \
                    "duplicate session" not in result.err:
                raise AgentSpawnError(
                    f"tmux could not create session {self.session_name}: "
                    f"{result.err.strip()}", created=[], failures={})
        agents = {a: p.pane_id for a, p in owned_by(panes, self.cluster_id).items()}
        await asyncio.to_thread(self._track, lambda _: agents)

    def _session_line(self, hidden: Sequence[str] = (), unset: Iterable[str] = ()) -> str:
        if self.base_dir and not os.path.isdir(self.base_dir):
            # tmux would silently start the session in another directory.
            raise SessionCreationError(f"cannot create session {self.session_name}: "
                                       f"base_dir {self.base_dir} is not a directory")
        # new-session starts the placeholder before the session's `set-environment -r`
        # lines run: it drops the names itself (`hidden`, and the server's `unset`).
        script = logpipe.shell_unset([*hidden, *unset]) + PLACEHOLDER_SCRIPT
        placeholder = ("/bin/sh", "-c", script, self.cluster_id)
        return new_session_line(self.session_name, self.cluster_id,
                                start_dir=self.base_dir, placeholder=placeholder,
                                hidden=hidden)

    async def spawn_agent(self, agent_id: str, command: str | Sequence[str],
                          env: Mapping[str, str] | None = None) -> AgentPane:
        """One agent in its own window `agent-{agent_id}`; see `spawn_agents`. Its env is
        the server's, then SWARM_AGENT_ID and SWARM_NAME (its id and the swarm's), then
        `env`, which wins."""
        # bytes as given, for `check_launch` to refuse (a tuple of ints would puzzle it).
        argv = command if isinstance(command, str | bytes) else tuple(command)
        launch = AgentLaunch(agent_id, argv, env=dict(env or {}), workdir=self.base_dir)
        return (await self.spawn_agents([launch]))[0]

    async def spawn_agents(self, launches: Sequence[AgentLaunch]) -> list[AgentPane]:
        """All `launches` in one tmux invocation, after one list-panes; the session too if
        it is missing.

        An agent that cannot start (id in use, workdir missing, refused by tmux) does not
        hold the others back: they start, and AgentSpawnError names it with its reason.
        Cancelled (or timed out by `asyncio.wait_for`) once tmux has the script, the spawn
        still completes: tmux runs a script it received whatever we do, so the spawn waits
        for its answer (at most `call_timeout_s`), records the agents it created as
        `list_agents()` shows them, then raises the cancellation; to undo, kill them.
        Spawns into one swarm take turns, across tasks and processes (`_spawn_turn`): each
        picks window indexes and checks ids on an observation no other spawn can outdate."""
        for launch in launches:
            check_launch(launch)
        launches = [self._identified(launch) for launch in launches]
        # Outside the turn and the loop: the first use builds the C writer (~0.15 s).
        writer = await asyncio.to_thread(logpipe.writer_argv,
                                         cache_dir=logpipe.writer_cache(self.data_dir))
        async with self._spawn_turn():
            return await self._spawn(launches, writer)

    def _identified(self, launch: AgentLaunch) -> AgentLaunch:
        """`launch` with SWARM_AGENT_ID and SWARM_NAME in its env, as `up` gives every
        agent; a value the caller gave for either wins."""
        identity = {"SWARM_AGENT_ID": launch.agent_id, "SWARM_NAME": self.cluster_id}
        return dataclasses.replace(launch, env={**identity, **launch.env})

    async def _spawn(self, launches: Sequence[AgentLaunch],
                     writer: list[str]) -> list[AgentPane]:
        panes = await self.observe()
        failures = self._refusals(launches, panes)
        launching = [launch for launch in launches if launch.agent_id not in failures]
        created: list[AgentPane] = []
        session_error = ""
        if launching:
            script = self._spawn_script(launching, panes, writer,
                                        await self._server_secret_names(panes))
            created, refused, session_error = await _to_the_end(
                self._run_spawn_script(launching, script, creating_session=not panes))
            failures.update(refused)
        if failures or session_error:
            summary = "; ".join(f"{agent}: {text}" for agent, text in failures.items())
            raise AgentSpawnError(
                f"{len(failures)} of {len(launches)} agents not created"
                + (f" (session: {session_error})" if session_error else "")
                + (f": {summary}" if summary else ""), created=created, failures=failures)
        return created

    async def _run_spawn_script(self, launches: Sequence[AgentLaunch], script: str, *,
                                creating_session: bool
                                ) -> tuple[list[AgentPane], dict[str, str], str]:
        """Run `script`, then record the agents it created (see `_created`)."""
        result = await self._tmux("start-server", ";", "source-file", "-",
                                  stdin=script.encode("utf-8", "surrogateescape"),
                                  timeout_s=self.call_timeout_s + 0.05 * len(launches))
        created, refused, session_error = self._created(launches, result,
                                                        creating_session=creating_session)
        await self._remove_half_made(launches, result)
        await asyncio.to_thread(self._track, lambda agents: {
            **agents, **{a.agent_id: a.pane_id for a in created}})
        return created, refused, session_error

    async def _remove_half_made(self, launches: Sequence[AgentLaunch],
                                result: TmuxResult) -> None:
        """Kill the panes tmux created on script lines it did not finish (no DONE marker):
        untagged or half tagged, no swarm would ever see or stop them."""
        output = parse_spawn_output(result.out)
        half_made = [output.created[launch.agent_id][0] for launch in launches
                     if launch.agent_id in output.created and launch.agent_id not in output.done]
        if half_made:
            await self._tmux("source-file", "-", stdin=kill_panes_script(half_made).encode())

    def _spawn_turn(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._turn("spawn.lock", f"spawn into swarm {self.cluster_id}")

    @contextlib.asynccontextmanager
    async def _turn(self, lock_name: str, what: str) -> AsyncIterator[None]:
        """An flock on AI_SWARM_DIR/<swarm>/`lock_name`, polled without blocking the loop.

        Each open of the lock file is its own flock: two managers of one swarm in one
        process (one thread) exclude each other too."""
        lock_path = os.path.join(store.swarm_dir(self.cluster_id, self.data_dir), lock_name)
        fd = store.open_lock(lock_path)
        try:
            wait = store.lock_timeout_s()
            deadline = time.monotonic() + wait if wait >= 0 else float("inf")
            while not store.try_lock(fd):
                if time.monotonic() > deadline:
                    raise TmuxSwarmError(
                        f"another {what} ({store.describe_holder(lock_path)}) did not finish "
                        f"within {wait:g}s") from None
                await asyncio.sleep(_POLL_S)
            with store.holding(lock_path):
                yield
        finally:
            os.close(fd)  # releases the lock

    def _refusals(self, launches: Sequence[AgentLaunch],
                  panes: Sequence[PaneState]) -> dict[str, str]:
        """The launches that must not start, with why; checked before tmux is asked."""
        ids = [launch.agent_id for launch in launches]
        owned = owned_by(panes, self.cluster_id)
        taken = set(owned) & set(ids)
        taken |= {agent for agent in ids if ids.count(agent) > 1}
        failures = dict.fromkeys(sorted(taken), "agent id already in use")
        # Its pane stays, dead, to be read: the id is free once the pane is gone.
        failures.update({agent: f"agent {agent} has exited (exit code {owned[agent].exit_code}) "
                                "but its pane remains; kill_agent removes it first"
                         for agent in sorted(taken) if agent in owned and owned[agent].dead})
        # tmux would silently start such an agent in another directory.
        failures.update({launch.agent_id: f"workdir {launch.workdir} is not a directory"
                         for launch in launches
                         if launch.workdir and not os.path.isdir(launch.workdir)})
        # Its writer would refuse it, and the agent would run with its output dropped.
        failures.update({launch.agent_id: problem for launch in launches
                         if launch.agent_id not in failures
                         and (problem := _not_a_log_file(self.log_path(launch.agent_id)))})
        for launch in launches:
            problem = None if launch.agent_id in failures else _unrunnable(launch)
            if problem:
                failures[launch.agent_id] = problem
        return failures

    async def _server_secret_names(self, panes: Sequence[PaneState]) -> list[str]:
        """The secret-looking names in the tmux server process's own environment, which
        every `pipe-pane` child (a log writer) inherits: the session's environment does
        not apply to it. None in a server we are about to start (`server_environment`).
        The server is the parent of each pane's process: one of the session's names it
        without another tmux call (a spawn costs one look and one script)."""
        for pane in panes:
            entry = None if pane.dead or not pane.pid else _proc_entry(pane.pid)
            if entry is not None:
                return _process_secret_names(str(entry[0]))
        if not server_listening(self.socket_label()):
            return []
        result = await self._tmux("display-message", "-p", "#{pid}")
        return _process_secret_names(result.out.strip()) if result.rc == 0 else []

    def _spawn_script(self, launches: Sequence[AgentLaunch], panes: Sequence[PaneState],
                      writer: list[str], server_secrets: Sequence[str] = ()) -> str:
        # Free indexes above every window (the placeholder is 0 in a new session).
        first = max((p.window_index for p in panes), default=0) + 1
        # Ours and the server's: a key only the server has would reach every agent too.
        hidden = sorted({*secret_names(os.environ), *server_secrets})
        lines = [line(*session_settings(self.session_name, hidden)) if panes
                 else self._session_line(hidden, server_secrets)]
        now = time.time()
        hook = supervise.hook_command(find_tmux(), path=os.environ.get("PATH"))
        for offset, launch in enumerate(launches):
            log_path = self.log_path(launch.agent_id)
            log_command = logpipe.pipe_command(log_path, launch.logs, agent_id=launch.agent_id,
                                               writer=writer, unset=server_secrets)
            plan = WindowPlan(launch, first + offset, log_command, now,
                              log_path=log_path, hook_command=hook)
            lines.append(window_line(self.session_name, self.cluster_id, plan))
        if any(launch.restart.mode != "never" for launch in launches):
            watch = supervise.hook_command(find_tmux(), watch_only=True)
            lines.append(watch_line(self.session_name, watch))
        self._logs_dir()
        return "".join(text + "\n" for text in lines)

    def _created(self, launches: Sequence[AgentLaunch], result: TmuxResult, *,
                 creating_session: bool) -> tuple[list[AgentPane], dict[str, str], str]:
        """The agents tmux created, its message for each one it refused, and the
        session's error (empty when the session exists)."""
        output = parse_spawn_output(result.out)
        created = [self._agent_pane(launch.agent_id, *output.created[launch.agent_id])
                   for launch in launches if launch.agent_id in output.done]
        failed = [launch.agent_id for launch in launches if launch.agent_id not in output.done]
        session_failed = creating_session and not output.session_ok
        session_error, failures = assign_errors(failed, result.err,
                                                session_failed=session_failed)
        if "duplicate session" in session_error:
            session_error = ""  # another process created it first: fine
        for agent in failed:
            if agent in output.created:  # see `_remove_half_made`
                failures[agent] = (f"tmux created its window but stopped before the end of "
                                   f"its script line ({failures[agent]}); the window is removed")
        return created, failures, session_error

    def _agent_pane(self, agent_id: str, pane_id: str, window_id: str,
                    session_id: str) -> AgentPane:
        return AgentPane(agent_id, pane_id, window_id, session_id, lambda: self.server)

    # -- stopping -----------------------------------------------------------

    async def kill_agent(self, agent_id: str, graceful: bool = True, *,
                         stop_signal: str | None = None,
                         timeout_s: float | None = None) -> None:
        """Stop one agent, then close its window. Graceful: `stop_signal` to its process
        tree, up to `timeout_s` for it to exit, then SIGKILL; not graceful: SIGKILL at once.

        Each left None is the agent's own: its spec's `stop:` for an agent `up` started
        (as recorded in the swarm's state.json), else SIGTERM and 10 s."""
        pane, _ = await self._agent(agent_id)
        stop = _overridden(self._stop_settings([pane])[pane.pane_id], stop_signal, timeout_s)
        await self.kill_panes([pane.pane_id], graceful=graceful, signal=stop.signal,
                              timeout_s=stop.timeout_s)

    def _stop_settings(self, panes: Sequence[PaneState]) -> dict[str, StopSettings]:
        """How each pane's agent is stopped, by pane id: as `up` recorded it when it started
        the agent in that pane (a pane id tmux gave another agent since is not it) on this
        server (pane ids start at %0 on every server), else the defaults. The records, not
        a pane option: one more option per agent would cost every `up` of 500 agents
        ~0.07 s (see `tmux_script.send_tags`)."""
        state = records.load_state(self.cluster_id)
        server = records.recorded_server(self.cluster_id, state)
        if server is None or not same_socket(server.socket, self.socket_label()):
            state = {}
        stops = records.recorded_stops(state)
        started = {agent: entry.get("pane_id") for agent, entry in state.get("agents", {}).items()}
        return {pane.pane_id: stops[pane.agent_id] if pane.agent_id in stops
                and started.get(pane.agent_id) == pane.pane_id else StopSettings()
                for pane in panes}

    async def kill_panes(self, pane_ids: Sequence[str], *, graceful: bool = True,
                         signal: str = "TERM", timeout_s: float = 10.0) -> None:
        """Stop many panes of this swarm at once; panes not tagged as ours are left alone."""
        ours = {p.pane_id: p for p in await self.observe() if p.cluster == self.cluster_id}
        targets = [ours[pane_id] for pane_id in pane_ids if pane_id in ours]
        if len(targets) < len(pane_ids):
            log.warning("not killing panes outside swarm %s: %s", self.cluster_id,
                        sorted(set(pane_ids) - set(ours)))
        if not targets:
            return
        supervised = [p for p in targets if p.supervised]
        disarming = asyncio.ensure_future(self._disarmed(targets))
        try:
            targets = await asyncio.shield(disarming)
            live = {p.pid for p in targets if p.pid and not p.dead}
            dead = {p.pid for p in targets if p.pid and p.dead}
            await _terminate(live, dead, signal_number(signal) if graceful else None,
                             timeout_s)
        except asyncio.CancelledError:  # Ctrl-C, a wait_for: the stop is called off
            await _to_the_end(self._called_off(disarming, supervised))
            raise
        script = kill_panes_script(p.pane_id for p in targets)
        result = await self._tmux("source-file", "-", stdin=script.encode())
        # A window that vanished meanwhile is fine; any other refusal leaves a pane behind.
        errors = [e for e in result.err.splitlines() if e.strip() and "can't find" not in e]
        gone = {p.agent_id for p in targets}
        await asyncio.to_thread(self._track, lambda agents: {
            a: pane for a, pane in agents.items() if a not in gone})
        if errors:
            raise TmuxSwarmError(f"kill-pane: tmux said: {'; '.join(errors)}")

    async def _disarmed(self, targets: list[PaneState]) -> list[PaneState]:
        """`targets` with their restart policies removed, as tmux shows them now: a policy
        would restart an agent that the stop made exit, in a process the stop never saw
        (the sibling's graceful wait is long enough), and that survives the pane's kill."""
        supervised = [p.pane_id for p in targets if p.supervised]
        if not supervised:
            return targets
        # And the panes as they are after it, in the same call: one restarted meanwhile
        # has a new pid.
        listing = line(["list-panes", "-s", "-t", session_target(self.session_name),
                        "-F", quote(LIST_PANES_FORMAT)])
        script = disarm_script(supervised) + listing + "\n"
        result = await self._tmux("source-file", "-", stdin=script.encode())
        now = {p.pane_id: p for p in parse_panes(result.out)}
        return [now.get(p.pane_id, p) for p in targets]

    async def set_restart_prompts(self, values: Mapping[str, str | None]) -> None:
        """Rewrite, per pane id, the prompt its supervisor sends after a restart (the
        value of `tmux_script.prompt_option`; None: none), all in one tmux call."""
        if not values:
            return
        result = await self._tmux("source-file", "-",
                                  stdin=prompt_options_script(values).encode())
        errors = [e for e in result.err.splitlines() if e.strip() and "can't find" not in e]
        if errors:  # a pane that vanished meanwhile needs no prompt
            raise TmuxSwarmError(f"set-option: tmux said: {'; '.join(errors)}")

    async def _called_off(self, disarming: asyncio.Future[list[PaneState]],
                          supervised: Sequence[PaneState]) -> None:
        """A stop cancelled: let the disarm under way finish (the policies it holds aside
        are what `_rearm` gives back), then give them back."""
        with contextlib.suppress(Exception):
            await disarming
        await self._rearm(supervised)

    async def rearm(self, disarmed: Sequence[PaneState]) -> None:
        """Give back the restart policies a stop held aside and never gave back (killed
        before it could): `up` finds such panes running unsupervised and re-arms them."""
        await self._rearm(disarmed)

    async def _rearm(self, disarmed: Sequence[PaneState]) -> None:
        """Give back their restart policies to panes a called-off stop disarmed: one still
        running would otherwise run on unsupervised, never restarted again."""
        if not disarmed:
            return
        hook = supervise.hook_command(find_tmux(), path=os.environ.get("PATH"))
        script = rearm_script((p.pane_id for p in disarmed), hook)
        await self._tmux("source-file", "-", stdin=script.encode())

    async def shutdown(self, graceful: bool = True, *, stop_signal: str | None = None,
                       timeout_s: float | None = None) -> None:
        """Stop every agent of this swarm, each as `kill_agent` would (its own stop
        settings, unless `stop_signal` or `timeout_s` overrides them for all; SIGTERM and
        10 s by default), all at once; then close the session unless foreign panes remain."""
        panes = await self.observe()
        agents = [p for p in panes if p.cluster == self.cluster_id and p.agent_id]
        groups: dict[StopSettings, list[str]] = {}
        for pane_id, stop in self._stop_settings(agents).items():
            groups.setdefault(_overridden(stop, stop_signal, timeout_s), []).append(pane_id)
        await asyncio.gather(*(
            self.kill_panes(pane_ids, graceful=graceful, signal=stop.signal,
                            timeout_s=stop.timeout_s) for stop, pane_ids in groups.items()))
        rest = await self.observe()
        if rest and all(p.cluster == self.cluster_id for p in rest):
            result = await self._tmux("kill-session", "-t", f"={self.session_name}")
            if result.rc != 0 and not _gone(result.err):
                raise self._failure(result, "kill-session")
        elif rest:
            log.info("session %s kept: it holds windows of others", self.session_name)
        await asyncio.to_thread(self._track, lambda _: None)

    # -- talking to agents --------------------------------------------------

    async def send_to_agent(self, agent_id: str, message: str) -> None:
        """Paste `message` literally into the agent, then press its submit key.

        Bracketed-paste markers (ESC [200~, ESC [201~) in `message` are removed, as a
        terminal removes them from a paste: an end marker would end the paste early, and
        what follows it would reach the agent as typed keys."""
        pane, settings = await self._agent(agent_id)
        await self._send(pane, settings, message)

    async def broadcast(self, message: str,
                        only: str | Collection[str] | None = None) -> Broadcast:
        """Send to every running agent, or to exactly `only` (all must exist and run;
        none, for an empty `only`; a str is one agent id, not a collection of letters).

        Says who got it, and which agents were skipped because they have exited. Sends
        that fail do not stop the others: BroadcastError then says who got it, and why
        each other one did not. `message` goes as `send_to_agent` sends it (without
        bracketed-paste markers)."""
        if isinstance(only, str):
            only = (only,)
        if only is not None and not only:
            return Broadcast(sent=(), skipped=())
        for agent_id in only or ():
            _check_agent_id(agent_id)
        listing = await self._listing()
        if not listing:
            raise SessionNotFoundError(
                f"tmux session {self.session_name} does not exist; start the swarm first")
        owned = {p.agent_id: (p, s) for p, s in listing
                 if p.cluster == self.cluster_id and p.agent_id}
        if only is not None:
            missing = sorted(set(only) - set(owned))
            if missing:
                raise AgentNotFoundError(f"no agent {', '.join(missing)} in {self.cluster_id}")
            owned = {a: owned[a] for a in only}
            dead = sorted(a for a, (p, _) in owned.items() if p.dead)
            if dead:
                who = f"agents {', '.join(dead)} have" if len(dead) > 1 else f"agent {dead[0]} has"
                raise PaneDeadError(f"{who} exited; nothing was sent")
        targets = [(p, s) for p, s in owned.values() if not p.dead]
        if not targets:
            raise PaneDeadError(f"no agent of swarm {self.cluster_id} is running; "
                                "nothing was sent")
        results = await asyncio.gather(*(self._send(p, s, message) for p, s in targets),
                                       return_exceptions=True)
        failures: dict[str, UserError] = {}
        for (pane, _), result in zip(targets, results, strict=True):
            if isinstance(result, UserError):
                failures[pane.agent_id] = result
            elif isinstance(result, BaseException):  # a bug, or an interrupt: as it is
                raise result
        sent = tuple(sorted(p.agent_id for p, _ in targets if p.agent_id not in failures))
        skipped = tuple(sorted(a for a, (p, _) in owned.items() if p.dead))
        if failures:
            why = "; ".join(f"{agent}: {error}" for agent, error in sorted(failures.items()))
            raise BroadcastError(
                f"sent to {len(sent)} of {len(targets)} agents"
                f"{' (' + ', '.join(sent) + ')' if sent else ''}; not sent to {why}",
                sent=sent, skipped=skipped, failures=failures)
        return Broadcast(sent=sent, skipped=skipped)

    async def _send(self, pane: PaneState, settings: SendSettings, message: str) -> None:
        if pane.dead:
            raise PaneDeadError(f"agent {pane.agent_id} has exited "
                                f"(exit code {pane.exit_code}); nothing was sent")
        # One send at a time per agent, across processes: two pastes before their two
        # submit keys would make one message of two.
        async with self._turn(f"send-{pane.agent_id}.lock", f"send to {pane.agent_id}"):
            await self._paste_and_submit(pane, settings, message)

    async def _paste_and_submit(self, pane: PaneState, settings: SendSettings,
                                message: str) -> None:
        if text := paste_text(message):
            # A unique buffer per send: buffers are server-wide, concurrent sends must not swap.
            name = f"swarm-send-{uuid.uuid4().hex}"
            result = await self._tmux(*paste_args(name, pane.pane_id), stdin=text)
            if result.rc != 0:
                await self._tmux("delete-buffer", "-b", name)
                raise self._failure(result, f"send to {pane.agent_id}")
        # Agents read fast input as a paste and would swallow an Enter sent with it.
        await asyncio.sleep(settings.submit_delay_ms / 1000)
        result = await self._tmux(*submit_args(pane.pane_id, settings.submit_key))
        if result.rc != 0:
            raise self._failure(result, f"submit to {pane.agent_id}")

    async def capture_agent_output(self, agent_id: str, *, lines: int | None = None,
                                   ansi: bool = False) -> str:
        """The agent's screen and scrollback, wrapped lines joined, trailing blanks cut."""
        pane, _ = await self._agent(agent_id)
        args = ["capture-pane", "-p", "-J", "-S", "-", "-t", pane.pane_id]
        result = await self._tmux(*args, *(["-e"] if ansi else []))
        if result.rc != 0:
            raise self._failure(result, f"capture {agent_id}")
        text_lines = result.out.rstrip("\n").split("\n")
        if pane.dead and text_lines and text_lines[-1].startswith("Pane is dead"):
            text_lines.pop()  # tmux's remain-on-exit notice, not the agent's output
        while text_lines and not text_lines[-1].strip():
            text_lines.pop()
        if lines is not None:
            text_lines = text_lines[-lines:] if lines > 0 else []
        return "\n".join(text_lines) + ("\n" if text_lines else "")

    def stream_agent_output(self, agent_id: str,
                            poll_interval: float = 0.1) -> AgentStream:
        """New lines of the agent's log from this call on; ends once the agent is dead for
        good (exited without a restart to come: no policy, one that does not restart this
        exit, or one that gave up) or gone. Its restarts do not end it. The log, and so the
        stream, holds swarm-launch's own lines too, each starting with `--- swarm-launch: `:
        `--- swarm-launch: agent ... started ...` at each start, and what its restart
        policy did and why.

        Not an `async def`: the log position is taken now, so a reply that arrives
        between this call and the first iteration (say, to a send) is not missed.
        """
        _check_agent_id(agent_id)
        if not poll_interval > 0:  # 0 would poll the log in a busy loop (NaN: never sleep)
            raise ValueError(f"poll_interval must be more than 0, not {poll_interval!r}")
        follower = LogFollower(self.log_path(agent_id))
        return AgentStream(follower, find=functools.partial(self._agent, agent_id),
                           running=functools.partial(self._running_or_restarting, agent_id),
                           poll_interval=poll_interval)

    async def prompt_delivered(self, agent_id: str) -> None:
        """Note on the agent's pane that its initial prompt was sent (OPT_PROMPT_DUE goes):
        no later `up` owes it any more."""
        with contextlib.suppress(TmuxSwarmError):
            pane, _ = await self._agent(agent_id)
            await self._tmux("set-option", "-p", "-u", "-t", pane.pane_id, OPT_PROMPT_DUE)

    async def mark_ready(self, agent_id: str) -> None:
        """Note on the agent's pane that its ready pattern showed since its latest start
        (OPT_READY takes that start's @swarm_started, copied by tmux in the same call)."""
        with contextlib.suppress(TmuxSwarmError):
            pane, _ = await self._agent(agent_id)
            await self._tmux("set-option", "-p", "-F", "-t", pane.pane_id, OPT_READY,
                             "#{" + OPT_STARTED + "}")

    async def _running_or_restarting(self, agent_id: str) -> bool:
        try:
            pane, _ = await self._agent(agent_id)
        except (AgentNotFoundError, SessionNotFoundError):
            return False
        if not pane.dead:
            return True
        if not pane.supervised or pane.gave_up:
            return False
        if pane.next_restart_at is not None:
            from swarm_launch.plan import RESTART_OVERDUE_S  # the rule `up` goes by

            return time.time() - pane.next_restart_at <= RESTART_OVERDUE_S
        # Dead, and no restart scheduled yet: its pane-died hook may be about to schedule
        # one (it takes a moment to start), if the policy restarts this exit.
        return await self._policy_restarts(pane)

    async def _policy_restarts(self, pane: PaneState) -> bool:
        """Whether the pane's restart policy restarts the exit it shows, as its pane-died
        hook decides it (`supervise.wants_restart`)."""
        result = await self._tmux("display-message", "-p", "-t", pane.pane_id,
                                  "#{" + supervise.OPT_POLICY + "}")
        if result.rc != 0:
            return False  # the pane is gone
        state = {"pane_dead": "1", "pane_dead_status": str(pane.exit_status or ""),
                 "pane_dead_signal": str(pane.exit_signal or ""),
                 **supervise.split_policy(result.out.strip())}
        return supervise.wants_restart(state)

    # -- reading state ------------------------------------------------------

    def list_agents(self) -> list[str]:
        """Ids of this swarm's agents, live from tmux (dead panes included)."""
        return sorted(owned_by(self._observe_sync(), self.cluster_id))

    def get_session_info(self) -> dict[str, Any]:
        panes = self._observe_sync()
        agents = owned_by(panes, self.cluster_id)
        return {
            "cluster_id": self.cluster_id,
            "session_name": self.session_name,
            "session_id": panes[0].session_id if panes else None,
            "socket": self.socket_label(),
            "data_dir": self.data_dir,
            "agents": {agent: {"pane_id": p.pane_id, "window_id": p.window_id,
                               "pid": p.pid, "status": p.status.value,
                               "exit_code": p.exit_code}
                       for agent, p in sorted(agents.items())},
        }

    def log_path(self, agent_id: str) -> str:
        check_id("agent", agent_id)  # a file name under data_dir, never a path out of it
        return os.path.join(self.data_dir, self.cluster_id, "logs", f"{agent_id}.log")

    def _logs_dir(self) -> str:
        return store.ensure_private_dir(os.path.join(self.data_dir, self.cluster_id, "logs"))

    def socket_label(self) -> str:
        """The server's socket path, for records and messages."""
        return socket_of(self.socket_name, self.socket_path)

    # -- attaching a person ----------------------------------------------------

    async def attach_argv(self, agent_id: str | None, *, inside: str | None) -> list[str]:
        """The tmux command line that shows a person this swarm (at `agent_id`'s window).

        `inside` is the caller's $TMUX: a client of this same server is switched
        over; any other terminal attaches (a nested attach unsets $TMUX first).
        """
        target = f"={self.session_name}:"
        if agent_id is not None:
            target = (await self._agent(agent_id))[0].pane_id
        elif not await self.observe():
            raise SessionNotFoundError(f"swarm {self.cluster_id} is not running; run `up` first")
        socket = (await self._tmux("display-message", "-p", "#{socket_path}")).out.strip()
        if inside and inside.split(",")[0] == socket:
            return self._argv(["switch-client", "-t", target])
        return self._argv(["select-window", "-t", target, ";",
                           "attach-session", "-t", f"={self.session_name}"])

    # -- swarm_sessions.json --------------------------------------------------

    def _track(self, change: Callable[[dict[str, str]], dict[str, str] | None]) -> None:
        """Update this session's entry (None removes it), locked across processes."""
        key = f"{self.socket_label()}#{self.session_name}"

        def update(document: Any) -> Any:
            document = document if isinstance(document, dict) else {}
            if not isinstance(document.get("sessions"), dict):  # damaged: tmux is the truth
                document["sessions"] = {}
            sessions = document["sessions"]
            entry = sessions.get(key)
            recorded = entry.get("agents") if isinstance(entry, dict) else None
            agents = change(dict(recorded) if isinstance(recorded, dict) else {})
            if agents is None:
                sessions.pop(key, None)
            else:
                sessions[key] = {"cluster_id": self.cluster_id, "session": self.session_name,
                                 "socket": self.socket_label(), "data_dir": self.data_dir,
                                 "agents": agents, "updated": time.time()}
            return document

        try:
            store.update_json(os.path.join(self.data_dir, store.SESSIONS_FILE), update)
        except (StoreError, OSError) as exc:  # a full disk must not stop a stop midway
            log.warning("%s", exc)

    def retrack(self, agents: Mapping[str, str]) -> None:
        """Make this session's entry list `agents` (id -> pane id) if it does not: a run
        killed after tmux created them, before it recorded them, left the swarm out of
        swarm_sessions.json. A read when the entry is right (`up`'s no-op path)."""
        document = store.read_json(os.path.join(self.data_dir, store.SESSIONS_FILE))
        sessions = document.get("sessions") if isinstance(document, dict) else None
        entry = sessions.get(f"{self.socket_label()}#{self.session_name}") \
            if isinstance(sessions, dict) else None
        if not isinstance(entry, dict) or entry.get("agents") != dict(agents):
            self._track(lambda _: dict(agents))
