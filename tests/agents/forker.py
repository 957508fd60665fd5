"""A process tree that resists SIGTERM: a child in the same group ignoring it, and a
grandchild that left both the group and the session (setsid) and ignores it too.

Usage: forker.py OUT. Writes {"pids": [parent, child, grandchild]} to OUT once all run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def idle_forever() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while True:
        time.sleep(3600)


def main(out: str) -> None:
    read_end, write_end = os.pipe()
    if os.fork() == 0:  # child: same process group, ignores TERM
        if os.fork() == 0:  # grandchild: its own session
            os.setsid()
            os.write(write_end, f"{os.getpid()}\n".encode())
            idle_forever()
        os.write(write_end, f"{os.getpid()}\n".encode())
        idle_forever()
    pids = [os.getpid()]
    with os.fdopen(read_end) as reader:
        pids += [int(reader.readline()) for _ in range(2)]
    with open(out + ".tmp", "w") as handle:
        json.dump({"pids": pids}, handle)
    os.replace(out + ".tmp", out)
    time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1])
