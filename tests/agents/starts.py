"""Append one JSON line (start time, pid, chosen env vars) to OUT, then exit with CODE.

Usage: starts.py OUT CODE [VAR...]. The restart tests count and time starts by it.
"""

from __future__ import annotations

import json
import os
import sys
import time

out, code, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
record = {"t": time.time(), "pid": os.getpid(), "env": {n: os.environ.get(n) for n in names}}
with open(out, "a", encoding="utf-8") as handle:
    handle.write(json.dumps(record) + "\n")
print(f"started, exiting {code}", flush=True)
sys.exit(code)
