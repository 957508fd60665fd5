"""`${VAR}` interpolation of spec strings from the launcher's own environment.

Forms: `${VAR}` (error when unset), `${VAR:-default}` (default when unset or
empty), `${VAR:?message}` (error with `message` when unset or empty), `$$` for a
literal `$`. `$VAR` without braces is an error (write `${VAR}` or `$$VAR`); any
other `$` (before a space, a digit, the end...) stays literal. The default is
literal text, not interpolated again, and may not hold `${` (references do not nest).
Messages name variables, never their values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(
    rf"\$\$|\$\{{(?P<name>{NAME})(?:(?P<op>:-|:\?)(?P<arg>[^}}]*))?\}}"
    rf"|\$(?P<bare>{NAME})|\$\{{(?P<bad>[^}}]*)\}}?"
)


# What an unset variable reads as in an `Unchecked` environment.
# The byte 0xff as os.environ holds it (surrogateescape): tmux 3.3a reads it as the end
# of a `source-file` script (see tmux_script.check_launch).
TMUX_EOF = "\udcff"
UNSET = "\x01unset\x01"  # no NUL: it may reach a path (realpath refuses NUL)


class Unchecked(Mapping[str, str]):
    """The environment for commands about a running swarm (`status`, `down`, `logs`...):
    they need its agents and settings, not env values, so an unset variable reads as
    UNSET instead of failing (a secret exported only where `up` runs)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        return self._environ.get(name, UNSET)

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)


class InterpolationError(ValueError):
    """A reference that cannot be resolved; the message is safe to print."""


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """`text` with every reference replaced; raise InterpolationError on the first bad one."""
    return _TOKEN.sub(lambda match: _replace(match, environ), text)


def _replace(match: re.Match[str], environ: Mapping[str, str]) -> str:
    if match.group(0) == "$$":
        return "$"
    if match.group("bare"):
        bare = match.group("bare")
        raise InterpolationError(
            f"${bare} is not interpolated: write ${{{bare}}} to use the environment, "
            f"or $${bare} for a literal $"
        )
    name = match.group("name")
    if name is None:
        raise InterpolationError(
            f"{match.group(0)!r} is not a valid reference; "
            "use ${VAR}, ${VAR:-default} or ${VAR:?message} (write $$ for a literal $)"
        )
    op, arg = match.group("op"), match.group("arg")
    if arg and "${" in arg:  # `${X:-${Y}}`: the first `}` ends the reference, `}` is left over
        what = "default" if op == ":-" else "message"
        raise InterpolationError(
            f"references do not nest: the {what} of ${{{name}}} holds '${{'; "
            f"write a literal {what}"
        )
    return _resolve(name, op, arg, environ)


def _resolve(name: str, op: str | None, arg: str | None, environ: Mapping[str, str]) -> str:
    value = environ.get(name)
    if value is not None and TMUX_EOF in value and not isinstance(environ, Unchecked):
        # Other bytes that are not UTF-8 pass, as the agent's own (a Latin-1 file name);
        # commands about a running swarm (`down`) never need the value, so never refuse it.
        raise InterpolationError(f"${{{name}}} holds the byte 0xff, which tmux cannot pass "
                                 "to an agent (it reads it as the end of its input)")
    if value == UNSET:
        return (arg or "") if op == ":-" else UNSET
    if op == ":-":
        return value if value else (arg or "")
    if op == ":?" and not value:
        state = "is empty" if value == "" else "is not set in the environment"
        reason = arg or "export it before running swarm-launch"
        raise InterpolationError(f"${{{name}}} {state}: {reason}")
    if value is None:
        raise InterpolationError(
            f"${{{name}}} is not set in the environment (export it before running swarm-launch)"
        )
    return value

