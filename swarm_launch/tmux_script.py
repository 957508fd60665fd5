"""Pure builders of the tmux command scripts fed to `tmux source-file -`, and their parsers.

Nothing here runs anything: `tmux_manager` sends these lines on stdin, so no value
(a secret env value, a long command) ever appears in a process's argv.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from swarm_launch import supervise
from swarm_launch.interpolate import TMUX_EOF
from swarm_launch.model import LogSettings, Readiness, RestartPolicy, SendSettings
from swarm_launch.observed import (
    LIST_PANES_FORMAT,
    OPT_AGENT,
    OPT_CLUSTER,
    OPT_HASH,
    OPT_PROMPT_DUE,
    OPT_STARTED,
    SEPARATOR,
    PaneState,
    parse_panes,
)

OPT_SUBMIT_KEY = supervise.OPT_SUBMIT_KEY
OPT_SUBMIT_DELAY_MS = supervise.OPT_SUBMIT_DELAY_MS
# Read when a pane is created (tmux < 3.7): set on the session before any agent window.
HISTORY_LIMIT = 100_000
SESSION_SIZE = ("220", "50")
# Markers printed by the script itself, so the caller learns what was really created.
CREATED = "+created"
DONE = "+done"
SESSION_OK = "+session"
# The observation format plus what `send` needs, read back from the pane's own tags.
LISTING_FORMAT = SEPARATOR.join(
    (LIST_PANES_FORMAT, "#{" + OPT_SUBMIT_KEY + "}", "#{" + OPT_SUBMIT_DELAY_MS + "}"))
# The placeholder window's program: idle, deaf to Ctrl-C (an ignored signal stays ignored
# across exec), says what it is, then is a bare `sleep`: no shell to type into, ~1 MB.
PLACEHOLDER_SCRIPT = ("trap '' INT; printf 'swarm-launch: swarm %s; its agents run in the other"
                      " windows.\\n' \"$0\"; exec sleep 2147483647")


@dataclass(frozen=True)
class AgentLaunch:
    """One agent to create: its pane's own process, env and tags."""

    agent_id: str
    command: str | tuple[str, ...]  # str: run by /bin/sh -c; tuple: exec'd as argv
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold API keys
    workdir: str | None = None
    config_hash: str = ""
    logs: LogSettings = field(default_factory=LogSettings)
    send: SendSettings = field(default_factory=SendSettings)
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    # The initial prompt and when to send it: kept on the pane (supervise.OPT_PROMPT) only
    # with a restart policy, so a restart sends it again.
    prompt: str | None = field(default=None, repr=False)
    ready: Readiness | None = None


@dataclass(frozen=True)
class WindowPlan:
    """An AgentLaunch placed at a free window index, with what tmux needs from outside."""

    launch: AgentLaunch
    index: int
    log_command: str  # a tmux format string (pipe-pane expands it): `#` already escaped
    started_at: float
    log_path: str = ""
    hook_command: str = ""  # `supervise.hook_command`: a format string, `#` escaped


def quote(word: str) -> str:
    """One tmux word, literal: single quotes stop `$`, `~`, `#{}` and `;` from being read.

    Two pieces leave the single quotes (adjacent pieces join into one word): a `'`
    as `\\'`, and a newline as `"\\n"`, because tmux 3.3 drops the whitespace that
    follows a literal newline inside single quotes (and a backslash before it).
    """
    return "'" + word.replace("'", "'\\''").replace("\n", "'\"\\n\"'") + "'"


def escape_format(text: str) -> str:
    """Text for an argument tmux format-expands (`-c`, `-n`, `-F`, pipe-pane): `#` doubled."""
    return text.replace("#", "##")


def line(*commands: Sequence[str]) -> str:
    """Commands joined by ` ; `: one tmux list, which stops at its first failing command."""
    return " ; ".join(" ".join(words) for words in commands)


def argv_for(command: str | tuple[str, ...]) -> tuple[str, ...]:
    """The pane's argv; always 2+ words, so tmux execs it instead of using default-shell.

    A string runs through /bin/sh (not the user's shell: bash start-up files race the
    agent). A one-word tuple would be read by tmux as a shell command; `exec "$0"`
    runs it as argv, keeping the same pid.
    """
    if isinstance(command, str):
        return ("/bin/sh", "-c", command)
    if not command:
        raise ValueError("an agent's command must not be empty")
    if len(command) == 1:
        return ("/bin/sh", "-c", 'exec "$0"', command[0])
    return command


# Agent and swarm ids of the Python API: what the spec allows (and replica suffixes), upper
# case too. Ids become file names (logs) and tmux names: no '/', no '..', no '.' or ':'
# (tmux rewrites them in session names), no leading '-' (read as an option).
API_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def check_id(kind: str, value: str) -> None:
    """Refuse an id unsafe as a file name or a tmux name (see API_ID_PATTERN)."""
    if not API_ID_PATTERN.fullmatch(value):
        raise ValueError(f"invalid {kind} id {value!r}: use letters, digits, '-' and '_', "
                         "starting with a letter or digit, at most 128 characters")


# A byte 0xff (`interpolate.TMUX_EOF`): tmux 3.3a reads its `source-file` input as signed
# chars, where 0xff is EOF, and silently parses the rest of the script as garbage (an
# agent with truncated args and no tags).


def check_launch(launch: AgentLaunch) -> None:
    """Refuse what tmux or the kernel cannot carry, before anything is created."""
    check_id("agent", launch.agent_id)
    _check_types(launch)
    for key, value in launch.env.items():
        if not key or "=" in key or "\x00" in key or "\x00" in value:
            raise ValueError(f"agent {launch.agent_id}: invalid env entry {key!r}")
    argv_for(launch.command)
    _check_carried(launch)


def _check_types(launch: AgentLaunch) -> None:
    """A TypeError naming the bad entry, rather than one from deep inside the spawn
    (`argument of type 'int' is not iterable`). Never an env value: it may be a secret."""
    agent, command = launch.agent_id, launch.command
    if isinstance(command, bytes | bytearray) or not isinstance(command, str | Sequence):
        raise TypeError(f"agent {agent}: its command is {type(command).__name__}: "
                        "give a str (run by sh) or a sequence of str (an argv)")
    for word in () if isinstance(command, str) else command:
        if not isinstance(word, str):
            raise TypeError(f"agent {agent}: its command word {word!r} is "
                            f"{type(word).__name__}, not str")
    for key, value in launch.env.items():
        if not isinstance(key, str):
            raise TypeError(f"agent {agent}: its env name {key!r} is {type(key).__name__}, "
                            "not str")
        if not isinstance(value, str):
            raise TypeError(f"agent {agent}: its env {key} is {type(value).__name__}, "
                            "not str")


def _check_carried(launch: AgentLaunch) -> None:
    """Refuse a 0xff byte (`TMUX_EOF`) anywhere the spawn script carries."""
    command = [launch.command] if isinstance(launch.command, str) else launch.command
    fields = {"command": command, "env": [*launch.env, *launch.env.values()],
              "workdir": [launch.workdir or ""], "prompt": [launch.prompt or ""]}
    for name, texts in fields.items():
        if any(TMUX_EOF in text for text in texts):
            raise ValueError(f"agent {launch.agent_id}: its {name} holds a byte 0xff, "
                             "which tmux cannot read (not UTF-8 text)")


# Names of variables that look like secrets (case-insensitive), and the exceptions.
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE", re.IGNORECASE)
NOT_SECRET = frozenset({"SSH_AUTH_SOCK"})


def server_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The env of our tmux clients: the caller's, minus variables named like secrets.

    A client that starts the server hands it its whole env, and the server hands that
    to every pane: agents must get secrets only through their spec's `env`.
    """
    hidden = set(secret_names(environ))
    return {name: value for name, value in environ.items() if name not in hidden}


def session_target(session: str) -> str:
    return quote(f"={session}:")


def window_target(session: str, index: int) -> str:
    return quote(f"={session}:{index}")


def new_session_line(session: str, cluster: str, *, start_dir: str | None,
                     placeholder: Sequence[str], hidden: Iterable[str] = ()) -> str:
    """Create the detached session with a placeholder window tagged as ours, at index 0.

    The placeholder keeps the session alive when no agent runs (replicas: 0). It sits
    at index 0 whatever the user's base-index, so agent windows can start at 1.
    """
    first = quote(f"={session}:^")
    create = ["new-session", "-d", "-s", quote(session), "-x", SESSION_SIZE[0],
              "-y", SESSION_SIZE[1], "-n", "swarm"]
    if start_dir:
        create += ["-c", quote(escape_format(start_dir))]
    move = f"move-window -s {first} -t {quote(f'={session}:0')}"
    return line(
        [*create, "--", *map(quote, placeholder)],
        ["set-option", "-p", "-t", first, "remain-on-exit", "on"],
        ["set-option", "-p", "-t", first, OPT_CLUSTER, quote(cluster)],
        *session_settings(session, hidden),
        ["if-shell", "-F", "-t", first, quote("#{window_index}"), quote(move)],
        ["display-message", "-p", quote(SESSION_OK)],
    )


# The user's global hooks that would act on our panes: one run after each `new-window`
# (a split there makes the tags and the log land on its pane instead of the agent's; a
# renumbering, on another window). An empty hook of the session's own shadows the global
# one. (Not `pane-died`: tmux looks that one up in a session it picks, not always ours.)
SHADOWED_HOOKS = ("after-new-window",)


def session_settings(session: str, hidden: Iterable[str] = ()) -> list[list[str]]:
    """Our session's own values for the user's global settings that break a swarm:
    the hooks above, `destroy-unattached` (it would destroy our detached session as
    soon as it is made), `history-limit` (read as each pane is made: `capture` needs the
    scrollback), and `hidden`, variables removed from its new processes' env (see
    `secret_names`). Set again before each batch of agents: the session may have been
    made by an earlier version, or by the user."""
    target = session_target(session)
    return [["set-option", "-t", target, "destroy-unattached", "off"],
            ["set-option", "-t", target, "history-limit", str(HISTORY_LIMIT)],
            *(["set-hook", "-t", target, hook, quote("")] for hook in SHADOWED_HOOKS),
            *(["set-environment", "-t", target, "-r", quote(name)] for name in hidden)]


def secret_names(environ: Mapping[str, str]) -> list[str]:
    """The names in `environ` that look like secrets. A server the user started from a
    shell that exported them hands them to every new pane: our session removes them
    (an agent whose spec names one gets it through `-e`, which comes after)."""
    return sorted(name for name in environ
                  if name not in NOT_SECRET and SECRET_NAME.search(name))


def window_line(session: str, cluster: str, plan: WindowPlan) -> str:
    """Create one agent window, tag its pane, start its log, all in one tmux list."""
    launch, target = plan.launch, window_target(session, plan.index)
    agent = launch.agent_id
    create = ["new-window", "-d", "-t", target, "-n", quote(escape_format(f"agent-{agent}")),
              "-P", "-F", quote(escape_format(f"{CREATED} {agent} ") +
                                "#{pane_id} #{window_id} #{session_id}")]
    for key, value in launch.env.items():
        create += ["-e", quote(f"{key}={value}")]
    if launch.workdir:
        create += ["-c", quote(escape_format(launch.workdir))]
    create += ["--", *map(quote, argv_for(launch.command))]
    tags = {OPT_CLUSTER: cluster, OPT_AGENT: agent, OPT_HASH: launch.config_hash,
            OPT_STARTED: f"{plan.started_at:.3f}", **send_tags(launch.send),
            **({OPT_PROMPT_DUE: "1"} if launch.prompt else {})}
    return line(
        create,
        # First, so a command that exits at once still leaves a readable dead pane.
        ["set-option", "-p", "-t", target, "remain-on-exit", "on"],
        *(["set-option", "-p", "-t", target, name, quote(value)]
          for name, value in tags.items()),
        ["pipe-pane", "-O", "-t", target, quote(plan.log_command)],
        *restart_commands(target, plan),
        ["display-message", "-p", quote(escape_format(f"{DONE} {agent}"))],
    )


def send_tags(send: SendSettings) -> dict[str, str]:
    """The send settings differing from the defaults (which `parse_listing` assumes).

    Each set-option costs tmux a pass over every window (options_push_changes): one more
    option on each of 500 agents costs ~0.07 s; defaults cost nothing.
    """
    defaults, tags = SendSettings(), {}
    if send.submit_key != defaults.submit_key:
        tags[OPT_SUBMIT_KEY] = send.submit_key
    if send.submit_delay_ms != defaults.submit_delay_ms:
        tags[OPT_SUBMIT_DELAY_MS] = str(send.submit_delay_ms)
    return tags


def restart_commands(target: str, plan: WindowPlan) -> list[list[str]]:
    """The restart policy, kept by tmux: pane options, the respawn command, the hook.

    Nothing for `never`. The respawn command is stored with `-F`, so tmux writes the
    new pane's id into it; everything else in it is escaped to stay literal.
    """
    policy = plan.launch.restart
    if policy.mode == "never" or not plan.hook_command:
        return []
    backoff = policy.backoff
    value = supervise.policy_value(policy.mode, policy.max_restarts,
                                   (backoff.initial_s, backoff.max_s, backoff.factor),
                                   policy.reset_after_s, plan.log_path)
    hook = line(["run-shell", "-b", quote(plan.hook_command)])
    launch = plan.launch
    packed = prompt_option(launch.prompt, launch.ready)
    prompt = [] if packed is None else [
        ["set-option", "-p", "-t", target, supervise.OPT_PROMPT, packed]]
    return [
        ["set-option", "-p", "-t", target, supervise.OPT_POLICY, quote(value)],
        ["set-option", "-p", "-F", "-t", target, supervise.OPT_RESPAWN,
         quote(respawn_command(plan))],
        *prompt,
        ["set-hook", "-p", "-t", target, "pane-died", quote(hook)],
    ]


def prompt_option(prompt: str | None, ready: Readiness | None) -> str | None:
    """What the supervisor of a restart reads to prompt it (`supervise.OPT_PROMPT`): the
    prompt and the readiness it waits for; None without a prompt."""
    if not prompt:
        return None
    return supervise.pack_prompt(prompt, (ready.pattern, ready.timeout_s) if ready else None)


def prompt_options_script(values: Mapping[str, str | None]) -> str:
    """Set (or, for None, remove) the prompt option of each pane id: a prompt or ready
    edited in the spec reaches the agent's next restart without a restart now."""
    return "".join(
        line(["set-option", "-p", "-t", quote(pane), supervise.OPT_PROMPT, quote(value)]
             if value is not None else
             ["set-option", "-p", "-u", "-t", quote(pane), supervise.OPT_PROMPT]) + "\n"
        for pane, value in values.items())


def watch_line(session: str, watch_command: str) -> str:
    """Once after a batch with restart policies: one process watches all its new agents
    (`supervise.watch_session`), run on the session so tmux expands its id and pid."""
    return line(["run-shell", "-b", "-t", session_target(session), quote(watch_command)])


def respawn_command(plan: WindowPlan) -> str:
    """`respawn-pane` with the agent's env, workdir and argv, then a fresh log pipe (its
    start marker names the restart), as a format string whose only format is the pane id."""
    launch, pane = plan.launch, "#{pane_id}"
    words = [f"-e {quote(f'{key}={value}')}" for key, value in launch.env.items()]
    if launch.workdir:
        words.append(f"-c {quote(escape_format(launch.workdir))}")
    words += ["--", *map(quote, argv_for(launch.command))]
    return (f"respawn-pane -t {pane} " + escape_format(" ".join(words))
            + f" ; pipe-pane -O -t {pane} " + escape_format(quote(plan.log_command)))


# Bracketed paste's start and end: in the text itself, an end would close the paste early
# and deliver what follows (a Ctrl-C, say) as typed keys. Terminals strip both from a paste.
PASTE_MARKERS = ("\x1b[200~", "\x1b[201~")


def paste_text(message: str) -> bytes:
    """`message` as the bytes to paste, without bracketed-paste markers (removed until none
    is left: removing one may join the pieces of another)."""
    while any(marker in message for marker in PASTE_MARKERS):
        for marker in PASTE_MARKERS:
            message = message.replace(marker, "")
    return message.encode("utf-8", "surrogateescape")


def paste_args(buffer: str, pane_id: str) -> list[str]:
    """Load stdin into `buffer`, then paste it into the pane (bracketed when the program
    asked for that) and delete it. A buffer per send: buffers are server-wide."""
    return ["load-buffer", "-b", buffer, "-", ";",
            "paste-buffer", "-p", "-r", "-d", "-b", buffer, "-t", pane_id]


def submit_args(pane_id: str, key: str) -> list[str]:
    """Press `key` in the pane. A pane in a mode (someone scrolling back in copy-mode,
    a clock or a tree someone opened there) would take the key itself: leave every mode
    first (`copy-mode -q`: `send-keys -X cancel` leaves copy-mode only)."""
    return ["if-shell", "-F", "-t", pane_id, "#{pane_in_mode}",
            f"copy-mode -q -t {pane_id}", ";", "send-keys", "-t", pane_id, key]


def disarm_script(pane_ids: Iterable[str]) -> str:
    """Before stopping panes with a restart policy: nothing may start in them any more.
    No hook for the death to come, no pending restart (its token), and no policy, which a
    supervisor already deciding checks as it respawns (`supervise.respawn`); the policy is
    held aside, for `rearm_script` if the stop is called off. One line per pane, as in
    `kill_panes_script`."""
    return "".join(line(["set-hook", "-u", "-p", "-t", quote(pane), "pane-died"],
                        ["set-option", "-p", "-F", "-t", quote(pane), supervise.OPT_POLICY_HELD,
                         quote("#{" + supervise.OPT_POLICY + "}")],
                        ["set-option", "-p", "-u", "-t", quote(pane), supervise.OPT_POLICY],
                        ["set-option", "-p", "-u", "-t", quote(pane),
                         supervise.OPT_NEXT_RESTART]) + "\n" for pane in pane_ids)


def rearm_script(pane_ids: Iterable[str], hook_command: str) -> str:
    """Undo `disarm_script` on panes a called-off stop left running: the policy back from
    where it was held, and the `pane-died` hook (`hook_command`, as at spawn)."""
    hook = line(["run-shell", "-b", quote(hook_command)])
    return "".join(line(["set-option", "-p", "-F", "-t", quote(pane), supervise.OPT_POLICY,
                         quote("#{" + supervise.OPT_POLICY_HELD + "}")],
                        ["set-option", "-p", "-u", "-t", quote(pane), supervise.OPT_POLICY_HELD],
                        ["set-hook", "-p", "-t", quote(pane), "pane-died", quote(hook)])
                   + "\n" for pane in pane_ids)


def kill_panes_script(pane_ids: Iterable[str]) -> str:
    """One line per pane, so a pane that vanished meanwhile does not spare the others.

    `kill-pane`, not `kill-window`: a user may have split a pane of their own into an
    agent's window, or joined an agent into a window of theirs. An agent alone in its
    window takes the window with it."""
    return "".join(line(["kill-pane", "-t", quote(pane)]) + "\n" for pane in pane_ids)


@dataclass(frozen=True)
class SpawnOutput:
    """What a spawn script printed: created panes, finished lines, session created."""

    created: dict[str, tuple[str, str, str]]  # agent id -> (pane id, window id, session id)
    done: frozenset[str]
    session_ok: bool


def parse_spawn_output(stdout: str) -> SpawnOutput:
    created: dict[str, tuple[str, str, str]] = {}
    done: set[str] = set()
    session_ok = False
    for text in stdout.splitlines():
        if text.startswith(CREATED + " "):
            agent, pane, window, session = text[len(CREATED) + 1:].rsplit(" ", 3)
            created[agent] = (pane, window, session)
        elif text.startswith(DONE + " "):
            done.add(text[len(DONE) + 1:])
        elif text == SESSION_OK:
            session_ok = True
    return SpawnOutput(created, frozenset(done), session_ok)


def assign_errors(failed: Sequence[str], stderr: str, *,
                  session_failed: bool) -> tuple[str, dict[str, str]]:
    """Match tmux's error lines to the failed script lines (tmux prints them in order).

    Returns the session line's error ("" if it did not fail) and agent id -> message.
    """
    errors = [e.strip() for e in stderr.splitlines() if e.strip()]
    session_error = errors.pop(0) if session_failed and errors else ""
    if len(errors) != len(failed):
        # Counts differ (a line printed two errors): give each agent all of them.
        joined = "; ".join(errors) or session_error or "tmux reported no error"
        return session_error, dict.fromkeys(failed, joined)
    return session_error, dict(zip(failed, errors, strict=True))


def parse_listing(text: str) -> tuple[tuple[PaneState, SendSettings], ...]:
    """Parse `list-panes -F LISTING_FORMAT`: each pane with its send settings."""
    listing = []
    for text_line in text.splitlines():
        if not text_line.strip():
            continue
        base, key, delay = text_line.rsplit(SEPARATOR, 2)
        defaults = SendSettings()
        settings = SendSettings(submit_key=key or defaults.submit_key,
                                submit_delay_ms=int(delay) if delay.isdigit()
                                else defaults.submit_delay_ms)
        listing.append((parse_panes(base)[0], settings))
    return tuple(listing)


def parse_version(text: str) -> tuple[int, int]:
    """(major, minor) of `tmux -V` output; builds without a number are the newest."""
    match = re.search(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else (99, 0)


def signal_number(name: str) -> int:
    """`TERM`, `SIGTERM` or `15` as a signal number."""
    text = name.upper().removeprefix("SIG")
    if text.isdigit():
        return int(text)
    try:
        return int(signal.Signals["SIG" + text])
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None
