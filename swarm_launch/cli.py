"""The `swarm-launch` command line: parse, route to a command module, map errors to exit codes.

Command modules are imported only when their command runs, so `swarm-launch
--help` and `validate` never pay for libtmux or asyncio.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import click

from swarm_launch import errors, output


@dataclass(frozen=True)
class Globals:
    """Options given before the subcommand, like tmux's own -L / -S."""

    socket_name: str | None
    socket_path: str | None


def _run(ctx: click.Context, /, command: str, **kwargs: Any) -> None:
    with _asyncio_without_tls():
        module = importlib.import_module(f"swarm_launch.commands.{command}")
    code: int = module.run(ctx.find_object(Globals), **kwargs)
    ctx.exit(code)


@contextlib.contextmanager
def _asyncio_without_tls() -> Iterator[None]:
    """Import the commands (and so asyncio) with `ssl` unavailable, then available again.

    asyncio imports ssl for its TLS transports, which a launcher talking to tmux over a
    pipe never uses: ~5 ms (OpenSSL's libraries) of every command. asyncio is written to
    work without ssl (`try: import ssl except ImportError: ssl = None`); anything after
    this import, in this process, can still import ssl itself.
    """
    blocked = "ssl" not in sys.modules
    if blocked:
        sys.modules["ssl"] = None  # type: ignore[assignment]  # Python's "not importable"
    try:
        yield
    finally:
        if blocked and sys.modules.get("ssl", 0) is None:
            del sys.modules["ssl"]


spec_argument = click.argument("spec", type=click.Path(dir_okay=True, path_type=str))
json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
replace_option = click.option(
    "--replace", "replace", multiple=True, metavar="AGENT",
    help="Replace AGENT even if in sync (an agent id, or a spec entry: all its replicas); "
         "repeatable.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="swarm-launch")
@click.option("-L", "--socket-name", help="tmux server socket name (overrides the spec).")
@click.option("-S", "--socket-path", help="tmux server socket path (overrides the spec).")
@click.pass_context
def cli(ctx: click.Context, /, socket_name: str | None, socket_path: str | None) -> None:
    """Declarative launcher for swarms of AI agents in tmux."""
    # An empty value (`-L "$UNSET"`) would silently mean "not given": the spec's server.
    if socket_name == "":
        raise click.UsageError("-L/--socket-name needs a socket name, not ''")
    if socket_path == "":
        raise click.UsageError("-S/--socket-path needs a socket path, not ''")
    if socket_name and socket_path:
        raise click.UsageError("give -L/--socket-name or -S/--socket-path, not both")
    # Absolute, as recorded: a later `down --name` may run from another directory.
    ctx.obj = Globals(socket_name=socket_name,
                      socket_path=os.path.abspath(socket_path) if socket_path else None)


@cli.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.pass_context
def validate(ctx: click.Context, /, specs: tuple[str, ...]) -> None:
    """Check spec files; report every error as FILE:LINE:COL: $.path: message."""
    _run(ctx, "validate", specs=specs)


@cli.command()
@click.pass_context
def schema(ctx: click.Context) -> None:
    """Print the JSON Schema of swarm specs."""
    _run(ctx, "schema")


@cli.command()
@spec_argument
@json_option
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 0 when in sync, 2 when changes are pending, 1 on error.")
@click.option("--no-prune", is_flag=True, help="Keep agents that are no longer in the spec.")
@replace_option
@click.pass_context
def plan(ctx: click.Context, /, **kwargs: Any) -> None:
    """Show what `up` would do, with reasons; change nothing."""
    _run(ctx, "plan", **kwargs)


@cli.command()
@spec_argument
@click.option("--no-prune", is_flag=True, help="Keep agents that are no longer in the spec.")
@click.option("--dry-run", is_flag=True, help="Show the plan; change nothing.")
@json_option
@click.option("--wait", is_flag=True, help="Return once every agent is ready.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Seconds --wait may take, in all.")
@click.option("--watch", is_flag=True, help="Stay in the foreground; re-apply on each spec change.")
@replace_option
@click.pass_context
def up(ctx: click.Context, /, **kwargs: Any) -> None:
    """Make tmux match the spec: create, replace and remove agents."""
    if kwargs["timeout"] is not None and not kwargs["wait"]:
        raise click.UsageError("--timeout bounds --wait: give both, or neither")
    if kwargs["dry_run"] and kwargs["wait"]:
        raise click.UsageError("--dry-run starts nothing: there is nothing to --wait for")
    if kwargs["watch"] and (kwargs["as_json"] or kwargs["wait"] or kwargs["dry_run"]):
        raise click.UsageError("--watch prints as it goes: it takes no --json, --wait "
                               "or --dry-run")
    _run(ctx, "up", **kwargs)


@cli.command()
@click.argument("spec", required=False, type=click.Path(path_type=str))
@click.option("--name", help="The swarm's name, instead of a spec file.")
@click.pass_context
def down(ctx: click.Context, /, **kwargs: Any) -> None:
    """Stop every agent of the swarm, then its session if nothing foreign is left."""
    _run(ctx, "down", **kwargs)


@cli.command()
@click.argument("spec", required=False, type=click.Path(path_type=str))
@click.option("--name", help="The swarm's name, instead of a spec file.")
@json_option
@click.pass_context
def status(ctx: click.Context, /, **kwargs: Any) -> None:
    """Per agent: pane, pid, status, exit code, uptime, and sync with the spec."""
    _run(ctx, "status", **kwargs)


@cli.command(name="ls")
@json_option
@click.pass_context
def ls_(ctx: click.Context, /, **kwargs: Any) -> None:
    """List the swarms known to AI_SWARM_DIR and the tmux server."""
    _run(ctx, "ls", **kwargs)


@cli.command()
@spec_argument
@click.argument("agents", nargs=-1)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until Ctrl-C.")
@click.option("--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines.")
@click.option("--since", default=None, help="Only output after TIME (e.g. 10m, 2h, an ISO date).")
@click.option("--raw", is_flag=True, help="Keep ANSI escapes and terminal control bytes.")
@click.pass_context
def logs(ctx: click.Context, /, **kwargs: Any) -> None:
    """Print the output of one, several or all agents."""
    _run(ctx, "logs", **kwargs)


@cli.command()
@spec_argument
@click.argument("agent")
@click.option("--lines", type=click.IntRange(min=1), default=None, help="Only the last N lines.")
@click.option("--ansi", is_flag=True, help="Keep colours and attributes.")
@click.pass_context
def capture(ctx: click.Context, /, **kwargs: Any) -> None:
    """Print an agent's screen with its scrollback."""
    _run(ctx, "capture", **kwargs)


@cli.command()
@spec_argument
@click.argument("agent")
@click.argument("text", required=False)
@click.pass_context
def send(ctx: click.Context, /, **kwargs: Any) -> None:
    """Send TEXT (or stdin) to an agent and submit it."""
    _run(ctx, "send", **kwargs)


@cli.command()
@spec_argument
@click.argument("text", required=False)
@click.option("--only", default=None, help="Comma-separated agent ids to send to.")
@click.pass_context
def broadcast(ctx: click.Context, /, **kwargs: Any) -> None:
    """Send TEXT (or stdin) to every agent (or --only some) and submit it."""
    _run(ctx, "broadcast", **kwargs)


@cli.command()
@spec_argument
@click.argument("agent", required=False)
@click.pass_context
def attach(ctx: click.Context, /, **kwargs: Any) -> None:
    """Attach to the swarm's session, at AGENT's window."""
    _run(ctx, "attach", **kwargs)


def run(argv: Sequence[str]) -> int:
    """Run the CLI on `argv` and turn every outcome into an exit code."""
    # Under --detailed-exitcode, 2 means "changes pending": a CI job must not read a usage
    # error (a mistyped option) as drift, so any error is 1 there, as in terraform.
    usage = errors.EXIT_USER_ERROR if "--detailed-exitcode" in argv else errors.EXIT_USAGE
    return errors.run_with_exit_codes(
        lambda: cli.main(args=list(argv), standalone_mode=False), usage_code=usage)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    # Start-up allocates some 100k objects and frees few: at the default threshold (700)
    # the collector runs ~150 times for nothing, ~8 ms of a 50-agent `up`. A long run
    # (`up --watch`, `logs -f`) still collects, every 100k allocations.
    import gc

    gc.set_threshold(100_000, 50, 50)
    output.guard_output()
    exit_now(run(sys.argv[1:] if argv is None else argv))


def exit_now(code: int) -> NoReturn:
    """Exit without the interpreter's teardown, ~13 ms of every command spent freeing some
    200 modules one by one. Nothing is lost: every file we write is closed by now, and
    the standard streams and the error log's handler are flushed here; we register no
    atexit handler, and a thread left running (none should) is not waited for."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone (EPIPE), closed
            stream.flush()
    os._exit(code)
