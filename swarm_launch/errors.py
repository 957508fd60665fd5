"""Map every outcome of a CLI run to swarm-launch's exit codes.

0 success; 1 a user-facing error (one `error: ...` line); 2 usage (click's);
3 a bug (the traceback goes to a log file, its path is printed); 130 Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

import click

from swarm_launch.exceptions import SpecError, UserError

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_BUG = 3
EXIT_INTERRUPTED = 130
ERROR_LOG = "swarm-launch-errors.log"


class _Warnings(logging.Handler):
    """Our modules' warnings as `warning: ...` lines on stderr, as errors are `error: ...`,
    each said once per run (a record that cannot be written is tried more than once)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text not in self.said:
            self.said.add(text)
            click.echo(f"warning: {text}", err=True)


def _say_warnings() -> _Warnings:
    """Route swarm_launch's warnings through one fresh `_Warnings` for this run."""
    logger = logging.getLogger("swarm_launch")
    for handler in [h for h in logger.handlers if isinstance(h, _Warnings)]:
        logger.removeHandler(handler)
    handler = _Warnings()
    logger.addHandler(handler)
    return handler


def run_with_exit_codes(body: Callable[[], object], *, usage_code: int = EXIT_USAGE) -> int:
    _say_warnings()
    try:
        result = body()
    except SpecError as exc:
        click.echo(exc.report(), err=True)
        return EXIT_USER_ERROR
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_USER_ERROR
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:  # click's name for a Ctrl-C inside a command
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return usage_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception:
        import traceback  # deferred, as `tempfile` below: only a bug needs them

        path = _log_traceback(traceback.format_exc())
        click.echo(f"error: unexpected failure (a bug in swarm-launch); details in {path}",
                   err=True)
        return EXIT_BUG
    return result if isinstance(result, int) else 0


def _log_traceback(text: str) -> str:
    """Append the traceback to AI_SWARM_DIR's error log, or a private temp file."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    entry = f"--- {stamp} pid {os.getpid()} argv[0] {os.path.basename(sys.argv[0])}\n{text}\n"
    try:
        from swarm_launch.store import data_dir

        path = os.path.join(data_dir(), ERROR_LOG)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except Exception:
        import tempfile

        fd, path = tempfile.mkstemp(prefix="swarm-launch-error-", suffix=".log")
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(entry)
    return path
