"""Reading agent logs: the last lines without reading the whole file, `--since` through the
time index, following across rotation, and stripping terminal noise (stdlib only).

A log and its rotated predecessors (`LOG.K` ... `LOG.1`, `LOG`) read as one byte stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncGenerator, Callable, Collection, Iterator, Mapping

BLOCK_SIZE = 64 * 1024
FORWARD_BLOCK_SIZE = 1024 * 1024
MAX_READ_PER_POLL = 4 * 1024 * 1024
INDEX_SUFFIX = ".idx"

Segment = tuple[int, int, int]  # an open file's descriptor, start offset, end offset
# How long an unfinished line waits before a follow shows it anyway (`quiet_rest`).
QUIET_LINE_S = 1.0


def rotated_paths(path: str) -> list[str]:
    """The log's files that exist, oldest first: LOG.K, ..., LOG.1, LOG.

    Listed, not probed from 1 up: a rotation in progress renames the highest number first,
    so the numbers have a hole for a moment, and everything past it would be missed."""
    directory, base = os.path.split(path)
    numbers: list[int] = []
    try:
        with os.scandir(directory or ".") as entries:
            for entry in entries:
                suffix = entry.name[len(base) + 1:]
                if entry.name.startswith(base + ".") and suffix.isdigit() and suffix[0] != "0":
                    numbers.append(int(suffix))
    except OSError:
        pass
    current = [path] if os.path.exists(path) else []
    return [*(f"{path}.{n}" for n in sorted(numbers, reverse=True)), *current]


def not_a_log(path: str) -> str | None:
    """What is wrong when one of the log's files is no file a writer writes (a directory,
    a symlink, which the writers refuse, a device); None when all are files or absent."""
    for file in rotated_paths(path):
        kind = not_a_file(file)
        if kind is None:
            continue
        lost = ("its writer cannot open it: the agent's output is being dropped" if file == path
                else "swarm-launch reads no log but its own files")
        return f"{file} is {kind}, not a log: {lost}; remove it (or move it aside)"
    return None


def not_a_file(path: str) -> str | None:
    """What `path` is when it is there but no regular file (`a directory`, `a symbolic
    link`, ...): one lstat. None for a regular file, or none at all."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return ("a directory" if stat.S_ISDIR(mode) else
            "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file")


@contextlib.contextmanager
def segments(path: str, *, since_epoch: float | None = None,
             end: int | None = None) -> Iterator[list[Segment]]:
    """The byte ranges to read, oldest first, in files opened all at once and read by
    their descriptors: a rotation while they are read renames the files, and by name
    another file would be read with these offsets. `end` caps the current file (a
    follow's start)."""
    opened: list[int] = []
    try:
        result: list[Segment] = []
        for file in rotated_paths(path):
            try:
                fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # rotated past `keep` meanwhile
            opened.append(fd)
            size = os.fstat(fd).st_size
            if file == path and end is not None:
                size = min(size, end)
            start = 0 if since_epoch is None else since(file, since_epoch)
            if start < size:
                result.append((fd, start, size))
        yield result
    finally:
        for fd in opened:
            os.close(fd)


def tail_lines(path: str, n: int, *, since_epoch: float | None = None,
               end: int | None = None) -> list[bytes]:
    """The last `n` lines (without their newlines), reading backwards block by block."""
    if n <= 0:
        return []
    blocks: list[bytes] = []
    newlines = 0
    with segments(path, since_epoch=since_epoch, end=end) as parts:
        for block in _backwards(parts):
            blocks.append(block)
            newlines += block.count(b"\n")
            if newlines > n:
                break
    lines = b"".join(reversed(blocks)).split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines[-n:]


def _backwards(parts: list[Segment]) -> Iterator[bytes]:
    for fd, start, end in reversed(parts):
        position = end
        while position > start:
            size = min(BLOCK_SIZE, position - start)
            position -= size
            yield os.pread(fd, size, position)


def iter_lines(path: str, *, since_epoch: float | None = None,
               end: int | None = None) -> Iterator[bytes]:
    """Every line from the oldest rotated file on (or from `since_epoch`), in order."""
    partial = b""
    with segments(path, since_epoch=since_epoch, end=end) as parts:
        for fd, start, stop in parts:
            position = start
            while position < stop:
                block = os.pread(fd, min(FORWARD_BLOCK_SIZE, stop - position), position)
                if not block:
                    break
                position += len(block)
                *lines, partial = (partial + block).split(b"\n")
                yield from lines
    if partial:
        yield partial


def since(path: str, epoch: float) -> int:
    """The offset in `path` of the first byte written at or after `epoch` (its second).

    The writer notes `SECOND OFFSET` on the first write of each second, so the bytes
    between two entries were written in the first entry's second; the index is
    binary-searched, the log itself never scanned. No index: 0 (everything).
    """
    size = os.path.getsize(path)
    try:
        fd = os.open(path + INDEX_SUFFIX, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        entry = _first_entry_at_or_after(fd, int(epoch))
    finally:
        os.close(fd)
    return size if entry is None else min(entry, size)


def _first_entry_at_or_after(fd: int, second: int) -> int | None:
    low, high = 0, os.fstat(fd).st_size
    while low < high:
        middle = (low + high) // 2
        entry = _entry_from(fd, middle)
        if entry is None or entry[0] >= second:
            high = middle
        else:
            low = middle + 1
    entry = _entry_from(fd, low)
    return None if entry is None else entry[1]


def _entry_from(fd: int, position: int) -> tuple[int, int] | None:
    """The first well-formed `SECOND OFFSET` line starting at or after `position`."""
    if position > 0:
        position -= 1  # so a line starting exactly at `position` is found after its "\n"
        head = os.pread(fd, 256, position)
        skip = head.find(b"\n")
        if skip < 0:
            return None
        position += skip + 1
    while True:
        chunk = os.pread(fd, 256, position)
        line, found, _ = chunk.partition(b"\n")
        if not found:
            return None  # end of the index (or a torn last line)
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
            return int(fields[0]), int(fields[1])
        position += len(line) + 1


_ESCAPES = re.compile(
    r"\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"  # OSC (titles, hyperlinks) to BEL or ST
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC to ST
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, bracketed paste
    r"|\x1b[ -/]*[0-~]"  # other escapes: charset (ESC ( B), keypad (ESC =), save (ESC 7)
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Cursor forward (CSI n C): TUIs draw the gaps between words with it instead of spaces.
_CURSOR_FORWARD = re.compile(r"(?:\x1b\[|\x9b)(\d{0,3})C")


# Cursor moves that TUIs (curses, full-screen agents) draw with instead of newlines and
# spaces: to a row (CUP, VPA), up or down (CUU, CUD, CNL, CPL, IND, NEL, RI), to a column
# (CHA, HPA). And the newline, to know the row.
_MOVES = re.compile(r"(?:\x1b\[|\x9b)(\d*)(?:;\d*)?([HfdABEFG`])|\x1b([DEM])|\n")


def _moves_as_text(text: str) -> str:
    """Each cursor move as a reader sees its effect: text placed on another row starts a
    new line, text placed further along the same row follows after a space. (A redraw
    of the same row is then one more line, as a carriage return's would be.)"""
    if "\x1b" not in text and "\x9b" not in text:
        return text
    pieces: list[str] = []
    row: int | None = None  # the cursor's row, while known
    tail = "\n"  # the last character a reader sees so far (other escapes are not seen)
    last = 0
    for move in _MOVES.finditer(text):
        before = text[last:move.start()]
        pieces.append(before)
        if visible := _ESCAPES.sub("", before):
            tail = visible[-1]
        last = move.end()
        final = move.group(2)
        if move.group(0) == "\n":
            gap, row = "\n", None if row is None else row + 1
        elif final in ("H", "f", "d"):
            target = int(move.group(1) or 1)
            gap, row = (" " if target == row else "\n"), target
        elif final in ("G", "`"):
            gap = " "
        else:
            gap, row = "\n", None
        # A real newline always; a move adds a break or a space only where none is.
        if move.group(0) == "\n" or (tail != "\n" and not (gap == tail == " ")):
            pieces.append(gap)
            tail = gap
    pieces.append(text[last:])
    return "".join(pieces)


def strip_terminal_noise(text: str) -> str:
    """Text as a reader wants it: no escapes, cursor moves as line breaks and spaces,
    redraws collapsed to their last rewrite, backspaces applied, no control characters
    but tab and newline."""
    text = _CURSOR_FORWARD.sub(lambda m: " " * int(m.group(1) or 1), text)
    text = _moves_as_text(text)
    text = _ESCAPES.sub("", text).replace("\r\n", "\n")
    return "\n".join(_clean_line(line) for line in text.split("\n"))


def _clean_line(line: str) -> str:
    if "\r" in line:
        rewrites = [part for part in line.split("\r") if part]
        line = rewrites[-1] if rewrites else ""
    if "\b" in line:
        kept: list[str] = []
        for char in line:
            if char != "\b":
                kept.append(char)
            elif kept:
                kept.pop()
        line = "".join(kept)
    return _CONTROLS.sub("", line)


def decode_line(line: bytes) -> str:
    """A log line as text: UTF-8 (bad bytes replaced), a CRLF's CR dropped."""
    return line.decode("utf-8", errors="replace").removesuffix("\r")


Identity = tuple[int, int]  # st_dev, st_ino: a file, whatever its name is now


def _identity(info: os.stat_result) -> Identity:
    return info.st_dev, info.st_ino


def _open_existing(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


class LogFollower:
    """What gets appended to one log, across rotation and truncation, losslessly.

    Idle, a poll costs one stat and no read. A log that does not exist yet is
    followed from its first byte once it appears. However many rotations happen
    between two polls, every file rotated in since is read, as long as it is kept.
    """

    def __init__(self, path: str, *, from_start: bool = False) -> None:
        self.path = path
        self.position = 0
        self.behind = False
        self._fd: int | None = None  # the file being read
        self._newer: list[int] = []  # files written after it, oldest first, opened already
        self._identity: Identity | None = None  # the newest file opened (LOG when it was)
        self._partial = b""
        self._partial_since = 0.0  # when the unfinished line last grew (monotonic)
        self._fd = _open_existing(path)
        if self._fd is not None:
            info = os.fstat(self._fd)
            self._identity = _identity(info)
            self.position = 0 if from_start else info.st_size

    def poll(self) -> list[bytes]:
        """Complete lines appended since the last poll (without their newlines).

        At most MAX_READ_PER_POLL bytes are read; `behind` says whether more is waiting.
        """
        try:
            info: os.stat_result | None = os.stat(self.path)
        except FileNotFoundError:
            info = None  # removed, or between a rotation's rename and its fresh file
        if info is not None and _identity(info) != self._identity:
            self._newer += self._open_newer()  # rotated (once or more), or just appeared
        budget = MAX_READ_PER_POLL
        chunks: list[bytes] = []
        while self._newer and budget > 0:
            # A file with a newer one is finished (the writer moved on): read it to its end.
            chunk = self._read(budget)
            chunks.append(chunk)
            budget -= len(chunk)
            if budget > 0:
                self._next_file()
        self.behind = budget <= 0
        if not self.behind:
            chunks.append(self._read_newest(info, budget))
        return self._lines(b"".join(chunks))

    def _open_newer(self) -> list[int]:
        """Open what was written since the newest file we have, oldest first."""
        if self._identity is None:
            opened = [fd for fd in [_open_existing(self.path)] if fd is not None]
        else:
            opened = self._rotated_in_since()
        if opened:
            self._identity = _identity(os.fstat(opened[-1]))
        return opened

    def _rotated_in_since(self) -> list[int]:
        """The files newer than ours: rotation renamed ours to some LOG.k, so they are
        LOG.(k-1) ... LOG.1, LOG. Found by identity, not name; each is opened before it is
        looked at, so a rotation meanwhile cannot swap one file for another under us.
        """
        found: list[tuple[int, os.stat_result]] = []  # newest first
        for fd in self._open_newest_first():
            info = os.fstat(fd)
            if _identity(info) == self._identity:
                os.close(fd)  # ours: everything newer is found
                return [opened for opened, _ in reversed(found)]
            if any(_identity(seen) == _identity(info) for _, seen in found):
                os.close(fd)  # met again under its next name: rotated while we looked
                continue
            found.append((fd, info))
        return self._written_after_ours(found)

    def _open_newest_first(self) -> Iterator[int]:
        """LOG, LOG.1, LOG.2, ... opened one at a time, until two numbers in a row are
        missing: a rotation in progress leaves one hole (the name it has just renamed)."""
        number, missing = 0, 0
        while missing < 2:
            fd = _open_existing(self.path if number == 0 else f"{self.path}.{number}")
            number += 1
            missing = missing + 1 if fd is None else 0
            if fd is not None:
                yield fd

    def _written_after_ours(self, found: list[tuple[int, os.stat_result]]) -> list[int]:
        """Ours is gone: rotated past `keep` (a gap nobody can fill), or `keep` is 0.

        What survives is read oldest first, but only what was written since ours was:
        rotated files left over from a larger `keep` (older than ours) are not news.
        """
        newest = self._newer[-1] if self._newer else self._fd
        since = 0 if newest is None else os.fstat(newest).st_mtime_ns
        kept: list[int] = []
        for fd, info in reversed(found):
            if info.st_mtime_ns >= since:
                kept.append(fd)
            else:
                os.close(fd)
        return kept

    def _next_file(self) -> None:
        """Done with the current file: go on with the next newer one, from its start."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = self._newer.pop(0)
        self.position = 0

    def _read_newest(self, info: os.stat_result | None, budget: int) -> bytes:
        """What the newest file gained (from its start if it was truncated in place)."""
        if self._fd is None:
            return b""
        if info is not None and _identity(info) == self._identity:
            size = info.st_size  # it is LOG: the stat already made tells its size
        else:
            size = os.fstat(self._fd).st_size  # LOG is missing: finish this one
        if size < self.position:
            self.position = 0  # truncated in place
        data = self._read(min(size - self.position, budget)) if size > self.position else b""
        self.behind = size > self.position
        return data

    def _read(self, count: int) -> bytes:
        chunks: list[bytes] = []
        while self._fd is not None and count > 0:
            chunk = os.pread(self._fd, min(count, FORWARD_BLOCK_SIZE), self.position)
            if not chunk:
                break
            chunks.append(chunk)
            self.position += len(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    def _lines(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        *lines, self._partial = (self._partial + data).split(b"\n")
        self._partial_since = time.monotonic()
        return lines

    def quiet_rest(self, quiet_s: float) -> bytes:
        """The unfinished last line, once it has not grown for `quiet_s` (then it is
        taken: what follows it comes as a line of its own). A prompt waiting for input,
        or a full-screen program, which places text by cursor moves and may never write
        a newline, would otherwise show nothing."""
        if self._partial and time.monotonic() - self._partial_since >= quiet_s:
            return self.rest()
        return b""

    def back_to_line_start(self, max_scan: int = 1024 * 1024) -> None:
        """Start at the beginning of the unfinished last line instead of in its middle
        (so a line, or a character, is never cut in two between history and follow);
        kept as is if no line starts within `max_scan` bytes back."""
        if self._fd is None or self.position == 0:
            return
        start = max(0, self.position - max_scan)
        cut = os.pread(self._fd, self.position - start, start).rfind(b"\n")
        if cut >= 0:
            self.position = start + cut + 1
        elif start == 0:
            self.position = 0

    @property
    def pending(self) -> bytes:
        """The unfinished last line read so far, left in place."""
        return self._partial

    def seek(self, position: int) -> None:
        """Read on from `position` of the file opened (its start if it is shorter: it was
        rotated or truncated since `position` was taken)."""
        if self._fd is not None:
            self.position = position if position <= os.fstat(self._fd).st_size else 0

    def rest(self) -> bytes:
        """The unfinished last line read so far (an agent that exited mid-line), once."""
        rest, self._partial = self._partial, b""
        return rest

    def close(self) -> None:
        for fd in [self._fd, *self._newer]:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = None
        self._newer = []


def follow(path: str, *, poll_interval: float = 0.1,
           from_start: bool = False) -> AsyncGenerator[str, None]:
    """New complete lines of one log as text, forever; latency at most `poll_interval`.

    Not an `async def`: "new" means from this call, not from the first iteration,
    so nothing written in between is missed.
    """
    follower = LogFollower(path, from_start=from_start)
    return _texts(follow_many({path: follower}, poll_interval=poll_interval))


async def _texts(pairs: AsyncGenerator[tuple[str, str], None]) -> AsyncGenerator[str, None]:
    try:
        async for _, line in pairs:
            yield line
    finally:
        await pairs.aclose()


async def follow_many(followers: Mapping[str, LogFollower], *, poll_interval: float = 0.1,
                      discover: Callable[[Collection[str]], Mapping[str, LogFollower]]
                      | None = None,
                      discover_every_s: float = 1.0) -> AsyncGenerator[tuple[str, str], None]:
    """`(key, line)` from several logs, interleaved as they arrive; one loop polls them all.

    `discover(keys followed)`, called about every `discover_every_s`, returns more logs to
    follow (say, of agents started after the follow began)."""
    followed = dict(followers)
    looked = time.monotonic()
    try:
        while True:
            behind = False
            for key, follower in list(followed.items()):
                for line in follower.poll():
                    yield key, decode_line(line)
                if rest := follower.quiet_rest(QUIET_LINE_S):
                    yield key, decode_line(rest)
                behind = behind or follower.behind
            if discover is not None and time.monotonic() - looked >= discover_every_s:
                looked = time.monotonic()
                followed.update(discover(followed.keys()))
            if not behind:
                await asyncio.sleep(poll_interval)
    finally:
        for follower in followed.values():
            follower.close()
