"""`swarm-launch logs`: agents' output with compose-style `agent | ` prefixes.

Reads AI_SWARM_DIR/<swarm>/logs/<agent>.log (and its rotated files); `--tail`
reads backwards, `--since` seeks through the time index, `-f` follows until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import click

from swarm_launch import logfiles, output
from swarm_launch.cli import Globals
from swarm_launch.desired import replica_ids
from swarm_launch.exceptions import UserError
from swarm_launch.model import SwarmSpec
from swarm_launch.store import data_dir

COLOURS = ("cyan", "yellow", "green", "magenta", "blue",
           "bright_cyan", "bright_yellow", "bright_green", "bright_magenta", "bright_blue")
POLL_INTERVAL_S = 0.1
BATCH_LINES = 2000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def run(globals_: Globals, *, spec: str, agents: Sequence[str], follow: bool,
        tail: int | None, since: str | None, raw: bool) -> int:
    from swarm_launch.interpolate import Unchecked
    from swarm_launch.spec import load_spec

    swarm = load_spec(spec, Unchecked(os.environ))  # names and ids only: no env needed
    logs_dir = os.path.join(data_dir(), swarm.name, "logs")
    selected = select_agents(swarm, agents, logged=_logged(logs_dir))
    since_epoch = None if since is None else parse_since(since, now=time.time())
    paths = {agent: os.path.join(logs_dir, f"{agent}.log") for agent in selected}
    for path in paths.values():
        problem = logfiles.not_a_log(path)
        if problem:
            raise UserError(problem)
    # Followers first: what they start after is exactly where the printed history ends.
    followers = {agent: logfiles.LogFollower(path) for agent, path in paths.items()} if follow \
        else {}
    for follower in followers.values():
        follower.back_to_line_start()
    if not any(logfiles.rotated_paths(path) for path in paths.values()):
        waiting = "; waiting for output (Ctrl-C to stop)" if follow else ""
        click.echo(f"no logs yet for swarm {swarm.name} (looked in {logs_dir}){waiting}",
                   err=True)
    printer = Printer(selected, colour=sys.stdout.isatty(), raw=raw)
    try:
        _history(printer, paths, followers if follow else None, tail, since_epoch)
    except output.ReaderGone:
        return 0  # `logs | head`: the reader has what it wanted
    except KeyboardInterrupt:
        if not follow:
            raise
        return 0  # Ctrl-C is how `logs -f` ends, even before it got to following
    if follow:
        # Following the whole swarm: agents that start later (an `up` meanwhile) too, and
        # those no longer in the spec that still have a log (kept by --no-prune, or gone):
        # from now, as their history is not the spec's (`logs` without -f leaves it out).
        discover = None
        if not agents:
            discover = _newcomers(logs_dir, printer)
            for agent in sorted(_logged(logs_dir) - set(followers)):
                followers[agent] = logfiles.LogFollower(os.path.join(logs_dir, f"{agent}.log"))
                printer.add(agent)
        # Ctrl-C is how one stops following; or the reader leaving (`logs -f | grep -m1`)
        with contextlib.suppress(KeyboardInterrupt, output.ReaderGone):
            asyncio.run(_follow(followers, printer, discover))
    return 0


def _newcomers(logs_dir: str, printer: Printer) -> Callable[
        [Collection[str]], dict[str, logfiles.LogFollower]]:
    """Followers, from their first byte, of the logs that appeared since we looked."""
    def discover(known: Collection[str]) -> dict[str, logfiles.LogFollower]:
        found = {agent: logfiles.LogFollower(os.path.join(logs_dir, f"{agent}.log"),
                                             from_start=True)
                 for agent in sorted(_logged(logs_dir) - set(known))}
        for agent in found:
            printer.add(agent)
        return found

    return discover


def _logged(logs_dir: str) -> set[str]:
    """Agents with a log, the spec's or not (removed from it, or kept by --no-prune)."""
    try:
        return {name[:-4] for name in os.listdir(logs_dir) if name.endswith(".log")}
    except OSError:
        return set()


def select_agents(swarm: SwarmSpec, requested: Sequence[str], *,
                  logged: Collection[str] = ()) -> list[str]:
    """Agent ids to show, in spec order unless named; a replicated id selects its replicas;
    an agent no longer in the spec can be named while its log is kept (`logged`)."""
    expanded = {name: [agent_id for agent_id, _ in replica_ids(agent)]
                for name, agent in swarm.agents.items()}
    every = [agent_id for ids in expanded.values() for agent_id in ids]
    if not requested:
        return every
    unknown = [name for name in requested
               if name not in expanded and name not in every and name not in logged]
    if unknown:
        known = ", ".join(_describe(name, ids) for name, ids in expanded.items())
        raise UserError(f"no agent {', '.join(map(repr, unknown))} in swarm {swarm.name}; "
                        f"its agents are: {known or 'none'}")
    chosen = [agent_id for name in requested for agent_id in expanded.get(name, [name])]
    return list(dict.fromkeys(chosen))


def _describe(name: str, ids: list[str]) -> str:
    if ids == [name]:
        return name
    if not ids:
        return f"{name} (replicas: 0)"
    return f"{name} ({ids[0]}..{ids[-1]})" if len(ids) > 1 else f"{name} ({ids[0]})"


def parse_since(text: str, *, now: float) -> float:
    """`10s`, `5m`, `2h`, `1d` before `now`, or an ISO 8601 time (local unless zoned)."""
    value = text.strip()
    duration = _DURATION.match(value)
    if duration:  # any age: a moment before the epoch is simply "from the beginning"
        return max(0.0, now - float(duration.group(1)) * _UNITS[duration.group(2)])
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"--since {text!r}: expected a duration (10s, 5m, 2h, 1d) or an "
                        f"ISO 8601 time (2026-11-24T10:00:00Z)") from None
    try:
        return max(0.0, moment.timestamp())  # a naive time is taken as local time
    except (OverflowError, OSError, ValueError):  # before what the platform can convert
        return 0.0


def _history(printer: Printer, paths: Mapping[str, str],
             followers: Mapping[str, logfiles.LogFollower] | None, tail: int | None,
             since_epoch: float | None) -> None:
    """What the logs hold already (up to where each follower starts, when following)."""
    for agent, path in paths.items():
        end = followers[agent].position if followers is not None else None
        if tail is None:
            printer.lines(agent, logfiles.iter_lines(path, since_epoch=since_epoch, end=end))
        else:
            printer.lines(agent, logfiles.tail_lines(path, tail, since_epoch=since_epoch,
                                                     end=end))


class Printer:
    """`agent | line` with the ids padded alike, coloured per agent on a terminal only."""

    def __init__(self, agents: Sequence[str], *, colour: bool, raw: bool) -> None:
        self.width = max((len(agent) for agent in agents), default=0)
        self.raw, self.colour = raw, colour
        self.prefixes: dict[str, str] = {}
        for agent in agents:
            self.add(agent)

    def add(self, agent: str) -> None:
        """One more agent (one that started while we follow), with the next colour."""
        colour = COLOURS[len(self.prefixes) % len(COLOURS)] if self.colour else None
        self.prefixes[agent] = _prefix(agent, max(self.width, len(agent)), colour)

    def text(self, agent: str, line: bytes | str) -> str | None:
        """The line to print, or None for one that was nothing but terminal noise."""
        text = logfiles.decode_line(line) if isinstance(line, bytes) else line
        if not self.raw:
            clean = logfiles.strip_terminal_noise(text)
            if text and not clean:
                return None
            text = clean
        rows = text.split("\n")
        if len(rows) > 1:  # cursor moves read as line breaks (a TUI's screen): each row is
            # the agent's, and rows the moves left blank are only noise
            rows = [row for row in rows if row.strip()] or [""]
        return "\n".join(self.prefixes[agent] + row for row in rows)

    def lines(self, agent: str, lines: Iterable[bytes | str]) -> None:
        batch: list[str] = []
        for line in lines:
            text = self.text(agent, line)
            if text is not None:
                batch.append(text)
            if len(batch) >= BATCH_LINES:
                _echo(batch)
                batch = []
        _echo(batch)


def _prefix(agent: str, width: int, colour: str | None) -> str:
    prefix = f"{agent:<{width}} |"
    return (click.style(prefix, fg=colour) if colour else prefix) + " "


def _echo(texts: list[str]) -> None:
    if texts:
        # color=True: colour was decided above; --raw output keeps the agent's own escapes.
        click.echo("\n".join(texts), color=True)
    if output.reader_gone():
        raise output.ReaderGone


async def _follow(followers: dict[str, logfiles.LogFollower], printer: Printer,
                  discover: Callable[[Collection[str]], dict[str, logfiles.LogFollower]]
                  | None) -> None:
    async for agent, line in logfiles.follow_many(followers, poll_interval=POLL_INTERVAL_S,
                                                  discover=discover):
        printer.lines(agent, [line])
