"""The restart policy, run by tmux itself: a pane's `pane-died` hook starts this script.

tmux keeps everything it needs in the pane's own options (set in the same line that
created the window): the policy, the counters and the respawn command (which carries
the agent's env, so no secret is ever in an argv or a file). This process decides,
waits out the backoff, and asks tmux to run the respawn command; it survives the
launcher's exit because tmux, not the launcher, started it. A pane killed or replaced
meanwhile makes it exit quietly.

It runs once per death of an agent (and once per batch of starts, to `watch` them): stdlib
only (`os`, `signal`, `sys`, `time`, `subprocess`),
and every tmux call is bounded by a timeout. It prints nothing (tmux would show it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

# Pane options (the first four are also read by every observation: see `observed`).
OPT_STARTED = "@swarm_started"
OPT_RESTARTS = "@swarm_restarts"
OPT_NEXT_RESTART = "@swarm_next_restart"
OPT_GAVE_UP = "@swarm_gave_up"
OPT_AGENT = "@swarm_agent"
# The whole policy in one option (each set-option costs tmux a pass over every window):
# "MODE MAX_RESTARTS INITIAL_S:MAX_S:FACTOR RESET_AFTER_S LOG_PATH", the log path last as
# it may hold spaces. `read_pane` splits it into:
OPT_POLICY = "@swarm_restart"  # observed.OPT_POLICY
OPT_POLICY_HELD = "@swarm_restart_held"  # the policy while a stop runs (`disarm_script`)
MODE, MAX_RESTARTS, BACKOFF, RESET_AFTER = "mode", "max_restarts", "backoff", "reset_after"
LOG = "log"
_POLICY_PARTS = (MODE, MAX_RESTARTS, BACKOFF, RESET_AFTER, LOG)
# Where panes made by earlier versions keep all but the mode (the policy in four options)
# or the log path (in its own option).
_LEGACY_POLICY = {MAX_RESTARTS: "@swarm_max_restarts", BACKOFF: "@swarm_backoff",
                  RESET_AFTER: "@swarm_reset_after", LOG: "@swarm_log"}
OPT_RESPAWN = "@swarm_respawn"  # tmux commands: respawn-pane (with -e env) ; pipe-pane
# The initial prompt and its readiness rule, sent again after each restart (pack_prompt).
OPT_PROMPT = "@swarm_prompt"
OPT_SUBMIT_KEY, OPT_SUBMIT_DELAY_MS = "@swarm_submit_key", "@swarm_submit_delay_ms"

CALL_TIMEOUT_S = 5.0
# How often a supervisor waiting out a backoff checks that its pane still awaits it.
PENDING_CHECK_S = 1.0
# After each start, watch the agent's process this long for a lost SIGCHLD (see `watch`).
WATCH_S = 10.0
WATCH_POLL_S = 0.1
ZOMBIE_GRACE_S = 0.3
SEPARATOR = "\x1f"
_FIELDS = ("pane_id", "pid", "pane_pid", "pane_dead", "pane_dead_status", "pane_dead_signal",
           OPT_AGENT, OPT_POLICY, OPT_STARTED, OPT_RESTARTS, OPT_PROMPT, OPT_SUBMIT_KEY,
           OPT_SUBMIT_DELAY_MS, *_LEGACY_POLICY.values())
USAGE = ("usage: supervise.py TMUX SOCKET_PATH PANE_ID died\n"
         "       supervise.py TMUX SOCKET_PATH SESSION_ID watch SERVER_PID")


class Tmux:
    """The tmux server that ran the hook, reached through its socket path."""

    def __init__(self, binary: str, socket: str) -> None:
        self.argv = [binary, "-S", socket]

    def run(self, *args: str, stdin: bytes | None = None) -> str | None:
        """stdout of one tmux client, or None if it failed (a vanished pane, a dead server)."""
        try:
            done = subprocess.run([*self.argv, *args], input=stdin, capture_output=True,
                                  timeout=CALL_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.decode("utf-8", "surrogateescape") if done.returncode == 0 else None


def read_pane(tmux: Tmux, pane: str,
              fields: tuple[str, ...] = _FIELDS) -> dict[str, str] | None:
    """The pane's state and restart options in one call; None if the pane is gone."""
    fields = ("pane_id", *fields)
    form = SEPARATOR.join("#{" + name + "}" for name in fields)
    out = tmux.run("display-message", "-p", "-t", pane, form)
    if out is None:
        return None
    values = dict(zip(fields, out.rstrip("\n").split(SEPARATOR), strict=False))
    policy = split_policy(values.get(OPT_POLICY, ""))
    for part, legacy in _LEGACY_POLICY.items():
        policy.setdefault(part, values.get(legacy, ""))
    values.update({part: value for part, value in policy.items() if value})
    return values if values.get("pane_id") == pane else None


def policy_value(mode: str, max_restarts: int, backoff: tuple[float, float, float],
                 reset_after_s: float, log_path: str) -> str:
    """The value of OPT_POLICY."""
    initial, most, factor = backoff
    return f"{mode} {max_restarts} {initial:g}:{most:g}:{factor:g} {reset_after_s:g} {log_path}"


def split_policy(value: str) -> dict[str, str]:
    """OPT_POLICY's parts by name; missing ones are left out (their defaults apply)."""
    # maxsplit: the last part, the log path, keeps its spaces.
    parts = value.split(maxsplit=len(_POLICY_PARTS) - 1)
    return dict(zip(_POLICY_PARTS, parts, strict=False))


def exit_code(state: dict[str, str]) -> int:
    """Shell-style: the exit status, or 128+N for a process killed by signal N."""
    if state.get("pane_dead_signal"):
        return 128 + int(state["pane_dead_signal"])
    return int(state.get("pane_dead_status") or 0)


def exit_words(state: dict[str, str]) -> str:
    """How the agent ended, in the words `plan` and `status` use."""
    if state.get("pane_dead_signal"):
        return f"was killed by signal {state['pane_dead_signal']}"
    return f"exited with code {exit_code(state)}"


def wants_restart(state: dict[str, str]) -> bool:
    mode = state.get(MODE, "")
    return state.get("pane_dead") == "1" and (
        mode == "always" or (mode == "on-failure" and exit_code(state) != 0))


def restarts_so_far(state: dict[str, str], now: float) -> int:
    """The counter, back to 0 when the agent had run stably for reset_after_s."""
    restarts = _number(state.get(OPT_RESTARTS), 0)
    started = _number(state.get(OPT_STARTED), now)
    if now - started >= _number(state.get(RESET_AFTER), float("inf")):
        return 0
    return int(restarts)


def backoff_delay(backoff: str, restarts: int) -> float:
    """min(max_s, initial_s * factor**restarts) from "initial_s:max_s:factor"."""
    initial, most, factor = (float(x) for x in backoff.split(":"))
    try:
        return float(min(most, initial * factor ** restarts))
    except OverflowError:
        return most


def append_log(path: str, text: str) -> None:
    """One line at the end of the agent's log (on a line of its own)."""
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        size = os.fstat(fd).st_size
        head = b"" if size == 0 or _last_byte(path, size) == b"\n" else b"\n"
        _index(path, size + len(head))
        os.write(fd, head + text.encode("utf-8", "surrogateescape") + b"\n")
    finally:
        os.close(fd)


def _index(path: str, offset: int) -> None:
    """A `SECOND OFFSET` line in the log's time index, as the log writer notes its own
    writes (logpipe.py), so `logs --since` finds this line too."""
    with contextlib.suppress(OSError):
        fd = os.open(path + ".idx", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, f"{int(time.time())} {offset}\n".encode())
        finally:
            os.close(fd)


def _last_byte(path: str, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, 1, size - 1)
    finally:
        os.close(fd)


def give_up(tmux: Tmux, pane: str, state: dict[str, str], restarts: int) -> None:
    """Leave the pane dead (it reads FAILED with its last exit code) and say why."""
    tmux.run("set-option", "-p", "-t", pane, OPT_GAVE_UP, "1", ";",
             "set-option", "-p", "-t", pane, OPT_RESTARTS, str(restarts), ";",
             "set-option", "-p", "-u", "-t", pane, OPT_NEXT_RESTART)
    append_log(state.get(LOG, ""),
               f"--- swarm-launch: agent {state.get(OPT_AGENT, '?')} {exit_words(state)}; "
               f"gave up after {restarts} restarts (max_restarts) ---")


def schedule(tmux: Tmux, pane: str, restarts: int, when: float) -> str | None:
    """Publish the pending restart (`status` shows it); its time is also our token."""
    token = f"{when:.6f}"
    done = tmux.run("set-option", "-p", "-t", pane, OPT_RESTARTS, str(restarts), ";",
                    "set-option", "-p", "-t", pane, OPT_NEXT_RESTART, token)
    return token if done is not None else None


def wait_out(tmux: Tmux, pane: str, token: str, delay: float) -> bool:
    """Sleep through the backoff, asking tmux each PENDING_CHECK_S whether the restart is
    still ours to make; False as soon as it is not (the pane was stopped, killed or
    replaced), so no process of ours outlives its pane by a whole backoff."""
    deadline = time.monotonic() + delay
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, PENDING_CHECK_S))
        if left > PENDING_CHECK_S and not pending(tmux, pane, token):
            return False
    return True


def pending(tmux: Tmux, pane: str, token: str) -> bool:
    """The pane still waits for the restart scheduled with `token` (a stop removes it)."""
    answer = tmux.run("display-message", "-p", "-t", pane,
                      "#{==:#{" + OPT_NEXT_RESTART + "}," + token + "}")
    return (answer or "").strip() == "1"


def respawn(tmux: Tmux, pane: str, token: str, restarts: int) -> str:
    """Respawn, in one tmux call, only if the pane is still this same dead pane with our
    token (a replace makes a new pane; a kill removes it; a newer death a new token) and
    its policy (a stop removes it first: `tmux_script.disarm_script`).

    Returns the instance's start time as written to OPT_STARTED: what names this start
    (`running` tells whether the pane still runs it)."""
    started = f"{time.time():.3f}"
    condition = ("#{&&:#{==:#{pane_id}," + pane + "},#{&&:#{pane_dead},#{&&:#{==:#{"
                 + OPT_NEXT_RESTART + "}," + token + "},#{!=:#{" + OPT_POLICY + "},}}}}")
    commands = (f"set-option -p -u -t {pane} {OPT_NEXT_RESTART} ; "
                f"set-option -p -t {pane} {OPT_RESTARTS} {restarts + 1} ; "
                f"set-option -p -t {pane} {OPT_STARTED} {started} ; "
                f"run-shell -C -t {pane} '#{{{OPT_RESPAWN}}}'")
    tmux.run("if-shell", "-F", "-t", pane, condition, commands)
    return started


def running(started: str) -> str:
    """A tmux format, true while the pane runs the instance that started at `started`
    (OPT_STARTED): not dead, and not restarted since by another supervisor."""
    return "#{&&:#{==:#{" + OPT_STARTED + "}," + started + "},#{!=:#{pane_dead},1}}"


def still_running(tmux: Tmux, pane: str, started: str) -> bool:
    return (tmux.run("display-message", "-p", "-t", pane, running(started)) or "").strip() == "1"


def pack_prompt(prompt: str, ready: tuple[str, float] | None) -> str:
    """OPT_PROMPT's value: base64 of JSON, so no text of the prompt or of its pattern can
    meet tmux's quoting, its formats, or read_pane's separator."""
    import base64
    import json

    document = {"prompt": prompt, "ready": list(ready) if ready else None}
    return base64.b64encode(json.dumps(document).encode()).decode()


def unpack_prompt(value: str) -> tuple[str, tuple[str, float] | None] | None:
    import base64
    import json

    try:
        document = json.loads(base64.b64decode(value))
        ready = document.get("ready")
        return str(document["prompt"]), (str(ready[0]), float(ready[1])) if ready else None
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def resend_prompt(tmux: Tmux, pane: str, state: dict[str, str], start: int,
                  restart: int, *, started: str) -> None:
    """After a restart: the initial prompt, once the agent is ready again (its pattern in
    its output since `start`, or without one, any output or 3 s of quiet), as `up` sends it.

    Only to the instance this supervisor started (`started`): one that died meanwhile
    gets none (the next supervisor prompts its own restart), and the paste is made in the
    same tmux call that checks it, so it never reaches a newer instance."""
    unpacked = unpack_prompt(state.get(OPT_PROMPT, ""))
    if unpacked is None:
        return
    prompt, ready = unpacked
    log = state.get(LOG, "")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import asyncio

    from swarm_launch.model import SendSettings
    from swarm_launch.readiness import PROMPT_QUIET_S, wait_for_output
    from swarm_launch.tmux_script import submit_args

    async def gone() -> bool:
        return not still_running(tmux, pane, started)

    pattern, timeout_s = ready if ready else (None, PROMPT_QUIET_S)
    ok = asyncio.run(wait_for_output(log, pattern, start=start, timeout_s=timeout_s,
                                     gone=gone))
    if not still_running(tmux, pane, started):
        return  # died, or restarted by another supervisor, which prompts it
    agent = state.get(OPT_AGENT, "?")
    if ready and not ok:
        append_log(log, f"--- swarm-launch: agent {agent} initial prompt not sent after "
                        f"restart {restart}: not ready within {timeout_s:g}s ---")
        return
    name, defaults = f"swarm-prompt-{os.getpid()}", SendSettings()
    if prompt and not paste_if_running(tmux, pane, started, name, prompt):
        return
    time.sleep(_number(state.get(OPT_SUBMIT_DELAY_MS), defaults.submit_delay_ms) / 1000)
    if still_running(tmux, pane, started):
        tmux.run(*submit_args(pane, state.get(OPT_SUBMIT_KEY) or defaults.submit_key))


def paste_if_running(tmux: Tmux, pane: str, started: str, buffer: str, text: str) -> bool:
    """Paste `text` (bracketed if the program asked) only while the pane runs the instance
    `started`, checked by tmux in the same call; the buffer is deleted either way."""
    paste = f"paste-buffer -p -r -d -b {buffer} -t {pane}"
    out = tmux.run("load-buffer", "-b", buffer, "-", ";",
                   "if-shell", "-F", "-t", pane, running(started), paste,
                   f"delete-buffer -b {buffer}", ";",
                   "display-message", "-p", "-t", pane, running(started),
                   stdin=text.encode("utf-8", "surrogateescape"))
    if out is None:
        tmux.run("delete-buffer", "-b", buffer)
    return (out or "").strip() == "1"


def supervise(tmux: Tmux, pane: str) -> None:
    state = read_pane(tmux, pane)
    if state is None or not wants_restart(state):
        return
    now = time.time()
    restarts = restarts_so_far(state, now)
    if restarts >= int(_number(state.get(MAX_RESTARTS), 0)):
        give_up(tmux, pane, state, restarts)
        return
    delay = backoff_delay(state.get(BACKOFF) or "1:60:2", restarts)
    append_log(state.get(LOG, ""),
               f"--- swarm-launch: agent {state.get(OPT_AGENT, '?')} {exit_words(state)}; "
               f"restart {restarts + 1} in {delay:g}s ---")
    token = schedule(tmux, pane, restarts, now + delay)
    if token is None:
        return
    old_pid = int(state["pane_pid"]) if state.get("pane_pid", "").isdigit() else 0
    end_leftovers(old_pid, signal.SIGTERM)  # the backoff is their time to end gracefully
    if not wait_out(tmux, pane, token, delay):
        return
    end_leftovers(old_pid, signal.SIGKILL)
    log_size = _size(state.get(LOG, ""))
    instance = respawn(tmux, pane, token, restarts)
    started = read_pane(tmux, pane, ("pane_pid", "pane_dead", OPT_STARTED))
    if started is None or started.get(OPT_STARTED) != instance:
        return  # not respawned by us: replaced, stopped, or restarted by another
    if state.get("pid") and (started.get("pane_pid") or "").isdigit():
        import threading

        # Watching for a lost SIGCHLD and waiting to prompt take their time side by side.
        watcher = threading.Thread(target=watch,
                                   args=(int(state["pid"]), {int(started["pane_pid"])}))
        watcher.start()
        if state.get(OPT_PROMPT) and started.get("pane_dead") == "0":
            resend_prompt(tmux, pane, state, log_size, restarts + 1, started=instance)
        watcher.join()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def watch_session(tmux: Tmux, session: str, server_pid: int) -> None:
    """After a batch of spawns: watch every agent of `session` with a restart policy that
    started within WATCH_S. One process per batch, not one per agent."""
    fields = ("pane_pid", OPT_POLICY, OPT_STARTED)
    out = tmux.run("list-panes", "-s", "-t", session, "-F",
                   SEPARATOR.join("#{" + name + "}" for name in fields))
    if out is None:
        return
    now, pids = time.time(), set()
    for text in out.splitlines():
        pid, policy, started = [*text.split(SEPARATOR), "", ""][:3]
        restarts = split_policy(policy).get(MODE, "never") != "never"
        if pid.isdigit() and restarts and now - _number(started, 0) < WATCH_S:
            pids.add(int(pid))
    watch(server_pid, pids)


def watch(server_pid: int, pids: set[int], duration_s: float = WATCH_S) -> None:
    """Nudge tmux (SIGCHLD) if an agent's process stays a zombie: tmux 3.3 can miss the
    SIGCHLD of a child that exits quickly, leaving its pane dead without an exit status
    and without its pane-died hook. A nudge makes it reap, so the hook runs."""
    deadline = time.monotonic() + duration_s
    zombie_since: dict[int, float] = {}
    pending = {pid for pid in pids if pid > 0}
    while pending and time.monotonic() < deadline:
        now = time.monotonic()
        for pid in list(pending):
            state = _process_state(pid)
            if state is None:
                pending.discard(pid)  # reaped: tmux saw the exit
            elif state == "Z" and now - zombie_since.setdefault(pid, now) >= ZOMBIE_GRACE_S:
                _nudge(server_pid)
                zombie_since[pid] = now
        time.sleep(WATCH_POLL_S)


def end_leftovers(leader: int, sig: int) -> None:
    """Signal what the dead instance left running in its process group and session (a
    child that ignored SIGHUP): the new instance must not run beside it, and `down`,
    which finds an agent's processes from its pane's current pid, would never see it.

    Only while no running process holds the leader's pid: while the group or session has
    members the kernel does not reuse it, so those members are the agent's."""
    if leader <= 1 or _process_state(leader) not in (None, "Z"):
        return
    for name in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat_fields(int(name))
        if fields and leader in (fields[2], fields[3]) and fields[0] not in ("Z", "X"):
            with contextlib.suppress(OSError):
                os.kill(int(name), sig)


def _stat_fields(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, process group, session) of `pid`, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    state, ppid, group, session = stat[stat.rfind(b")") + 2:].split()[:4]
    return state.decode(), int(ppid), int(group), int(session)


def _process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:][:1].decode()


def _nudge(server_pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(server_pid, signal.SIGCHLD)


def _number(text: str | None, default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        return default


def hook_command(tmux_binary: str, *, watch_only: bool = False,
                 path: str | None = None) -> str:
    """The shell command for `run-shell -b` (a tmux format string): in the pane-died hook,
    or (`watch_only`) once after a batch of spawns, run on the session, to watch them.

    tmux expands the socket (shell-quoted by `q:`), the pane and pids; every other `#`
    is doubled. Absolute paths and `python -I -S`: no dependence on the server's env.
    `path`: the launcher's PATH. tmux gives a new pane the PATH of the client that asks
    for it (over any `-e PATH`): the first start had the launcher's, so a restart, asked
    for by this process's client, must too, not the server's (older than a venv, ~/bin).
    """
    import shlex

    words = [os.path.abspath(sys.executable), "-I", "-S", os.path.abspath(__file__), tmux_binary]
    quoted = " ".join(shlex.quote(word).replace("#", "##") for word in words)
    mode = "#{q:session_id} watch #{pid}" if watch_only else "#{hook_pane} died"
    assign = "" if path is None else "PATH=" + shlex.quote(path).replace("#", "##") + " "
    return f"{assign}exec {quoted} #{{q:socket_path}} {mode} </dev/null >/dev/null 2>&1"


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[3] == "died":
        supervise(Tmux(argv[0], argv[1]), argv[2])
    elif len(argv) == 5 and argv[3] == "watch" and argv[4].isdigit():
        watch_session(Tmux(argv[0], argv[1]), argv[2], int(argv[4]))
    else:
        raise SystemExit(USAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
