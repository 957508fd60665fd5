"""Standard output that outlives its reader.

`swarm-launch up swarm.yaml | head -1`: the reader leaves after one line, and Python
raises BrokenPipeError at the next write, in the middle of the command (click then
exits 1). A command's exit code must say what it did, not whether anyone read all it
printed: so once the reader is gone, writes to stdout are dropped, the command runs to
its end with its own exit code, and the loops that run only to print (`logs -f`,
`up --watch`) ask `reader_gone()` and stop, as a Unix filter ends on SIGPIPE.
"""

from __future__ import annotations

import io
import os
import sys

_replaced: list[object] = []  # the stream replaced: collected, it would close fd 1


class ReaderGone(Exception):
    """Raised by a printing loop to end itself: nobody reads its output any more."""


def reader_gone() -> bool:
    return _DropWhenGone.reader_gone


class _DropWhenGone(io.RawIOBase):
    """fd 1, whose writes after EPIPE are dropped (reported as written)."""

    reader_gone = False  # one stdout per process: its state is the class's

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if not _DropWhenGone.reader_gone:
            try:
                return os.write(self._fd, data)
            except BrokenPipeError:
                _DropWhenGone.reader_gone = True
        return len(data)


def guard_stdout() -> None:
    """Give `sys.stdout` the behaviour above, keeping its encoding and buffering.

    Left as it is when it is not a file (a test's captured output)."""
    stream = sys.stdout
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    stream.flush()
    _replaced.append(stream)
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_DropWhenGone(fd)), encoding=stream.encoding,
        errors=stream.errors, line_buffering=bool(stream.line_buffering),
        write_through=getattr(stream, "write_through", False))
