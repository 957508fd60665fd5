"""Standard output and error that outlive their reader.

`swarm-launch up swarm.yaml | head -1`: the reader leaves after one line, and Python
raises BrokenPipeError at the next write, in the middle of the command (click then
exits 1). A command's exit code must say what it did, not whether anyone read all it
printed: so once the reader is gone, writes to stdout are dropped, the command runs to
its end with its own exit code, and the loops that run only to print (`logs -f`,
`up --watch`) ask `reader_gone()` and stop, as a Unix filter ends on SIGPIPE. So are
writes to stderr (`down swarm.yaml 2>&1 | head -1`: a note after the reader left made
the completed `down` exit 1); its reader gone ends no loop: stdout may still be read.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import TextIO

_replaced: list[object] = []  # the streams replaced: collected, they would close fd 1, 2


class ReaderGone(Exception):
    """Raised by a printing loop to end itself: nobody reads its output any more."""


def reader_gone() -> bool:
    """Nobody reads stdout any more."""
    return any(raw.reader_gone for raw in _stdout)


class _DropWhenGone(io.RawIOBase):
    """A file descriptor whose writes after EPIPE are dropped (reported as written)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.reader_gone = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if not self.reader_gone:
            try:
                return os.write(self._fd, data)
            except BrokenPipeError:
                self.reader_gone = True
        return len(data)


_stdout: list[_DropWhenGone] = []  # stdout's, once guarded


def guard_output() -> None:
    """Give `sys.stdout` and `sys.stderr` the behaviour above, keeping their encoding and
    buffering. Each is left as it is when it is not a file (a test's captured output)."""
    stdout = _guarded(sys.stdout)
    if stdout is not None:
        sys.stdout, raw = stdout
        _stdout.append(raw)
    stderr = _guarded(sys.stderr)
    if stderr is not None:
        sys.stderr = stderr[0]


def _guarded(stream: TextIO) -> tuple[TextIO, _DropWhenGone] | None:
    """`stream` again, its writes after EPIPE dropped; None if it is not a file."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    with contextlib.suppress(OSError, ValueError):  # its reader gone already
        stream.flush()
    _replaced.append(stream)
    raw = _DropWhenGone(fd)
    writer: io.RawIOBase = raw
    return io.TextIOWrapper(
        io.BufferedWriter(writer), encoding=stream.encoding, errors=stream.errors,
        line_buffering=bool(stream.line_buffering),
        write_through=getattr(stream, "write_through", False)), raw
