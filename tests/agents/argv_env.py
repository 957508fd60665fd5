"""Write this process's argv (after OUT), environment and cwd as JSON to OUT, then idle.

Usage: argv_env.py OUT [ARGS...]. The file appears atomically (written, then renamed).
"""

from __future__ import annotations

import json
import os
import sys
import time

out = sys.argv[1]
record = {"argv": sys.argv[2:], "env": dict(os.environ), "cwd": os.getcwd(), "pid": os.getpid()}
with open(out + ".tmp", "w", encoding="utf-8", errors="surrogateescape") as handle:
    json.dump(record, handle, ensure_ascii=True)
os.replace(out + ".tmp", out)
if os.environ.get("ARGV_ENV_EXIT") != "1":
    time.sleep(3600)
