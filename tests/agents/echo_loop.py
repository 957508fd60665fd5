"""A raw-mode line editor: each submission (Enter outside a bracketed paste) is appended
to OUT as one JSON line {"text": ...}. Raw mode: no 4096-byte canonical line limit.

Usage: echo_loop.py OUT. Writes {"ready": true} first, once the terminal is set up.
"""

from __future__ import annotations

import json
import os
import sys
import termios
import tty

PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"


def record(out: str, document: object) -> None:
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(document) + "\n")


def main(out: str) -> None:
    fd = sys.stdin.fileno()
    tty.setraw(fd, termios.TCSANOW)
    sys.stdout.write("\x1b[?2004h")  # ask for bracketed paste, as agent TUIs do
    sys.stdout.flush()
    record(out, {"ready": True})
    pending, text, in_paste = b"", b"", False
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        pending += chunk
        while pending:
            if pending.startswith(PASTE_START):
                in_paste, pending = True, pending[len(PASTE_START):]
            elif pending.startswith(PASTE_END):
                in_paste, pending = False, pending[len(PASTE_END):]
            elif pending.startswith(b"\x1b[") and len(pending) < len(PASTE_START):
                break  # maybe a marker cut in two: wait for more bytes
            elif pending[:1] == b"\r" and not in_paste:
                record(out, {"text": text.decode("utf-8", "replace")})
                text, pending = b"", pending[1:]
            else:
                text, pending = text + pending[:1], pending[1:]


if __name__ == "__main__":
    main(sys.argv[1])
