"""Benchmark of the log half of issue 5; prints a markdown table of the figures.

    .venv/bin/python -m benchmarks.bench_logs [--idle-seconds 10]

(a) `swarm-launch logs --tail 100` of a 100 MB log (a whole CLI process; target < 0.5 s);
(b) CPU of following 20 idle logs (target < 2% of one core) and the latency from a
    write to the line being yielded at the default poll interval (target < 200 ms);
(c) throughput and losslessness of the real log writer processes (Python's, and Perl's
    when a perl is found) fed 200,000 numbered lines, and the same through a tmux
    pane's `pipe-pane` when tmux is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from swarm_launch import logfiles, logpipe
from swarm_launch.model import LogSettings

LINES = 200_000
SPEC = "version: 1\nname: bench\nagents:\n  big:\n    command: sleep 100\n"


def numbered(count: int) -> bytes:
    return b"".join(b"line %d\n" % i for i in range(count))


def bench_tail(root: pathlib.Path) -> list[tuple[str, str, str]]:
    swarm_dir = root / "swarm"
    logs_dir = swarm_dir / "bench" / "logs"
    logs_dir.mkdir(parents=True, mode=0o700)
    os.chmod(swarm_dir, 0o700)
    log = logs_dir / "big.log"
    line = b"%08d " + b"x" * 90 + b"\n"
    with log.open("wb") as handle:
        for block in range(1000):  # 1000 x 1000 lines of 100 bytes: 100 MB
            handle.write(b"".join(line % (block * 1000 + i) for i in range(1000)))
    (root / "swarm.yaml").write_text(SPEC)
    env = {**os.environ, "AI_SWARM_DIR": str(swarm_dir)}
    command = [sys.executable, "-m", "swarm_launch", "logs", str(root / "swarm.yaml"),
               "--tail", "100"]
    walls = []
    for _ in range(5):
        start = time.perf_counter()
        out = subprocess.run(command, env=env, capture_output=True, check=True).stdout
        walls.append(time.perf_counter() - start)
    assert out.splitlines()[-1].startswith(b"big | 00999999"), out[-200:]
    start = time.perf_counter()
    logfiles.tail_lines(str(log), 100)
    in_process = time.perf_counter() - start
    size = log.stat().st_size / 1e6
    return [
        (f"`logs --tail 100`, {size:.0f} MB log, whole CLI process (median of 5)",
         f"{statistics.median(walls) * 1000:.0f} ms", "< 500 ms"),
        ("`tail_lines(path, 100)` alone, same log", f"{in_process * 1000:.2f} ms", ""),
    ]


async def _idle_cpu(paths: list[str], seconds: float) -> float:
    followers = {path: logfiles.LogFollower(path) for path in paths}
    stream = logfiles.follow_many(followers)

    async def drain() -> None:
        async for _ in stream:
            raise AssertionError("an idle log yielded a line")

    task = asyncio.ensure_future(drain())
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    task.cancel()
    return cpu / wall


async def _latencies(path: str, samples: int) -> list[float]:
    """A consumer always waiting on the stream; writes at random moments."""
    stream = logfiles.follow(path)  # the default poll interval
    written: dict[str, float] = {}
    arrived: dict[str, float] = {}

    async def consume() -> None:
        async for line in stream:
            arrived[line] = time.perf_counter()

    consumer = asyncio.ensure_future(consume())
    for number in range(samples):
        await asyncio.sleep(random.uniform(0.05, 0.25))
        written[f"ping {number}"] = time.perf_counter()
        with open(path, "ab") as handle:
            handle.write(b"ping %d\n" % number)
    deadline = time.perf_counter() + 5
    while len(arrived) < samples and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    consumer.cancel()
    assert arrived.keys() == written.keys(), "a line never arrived"
    return [arrived[line] - written[line] for line in written]


def bench_follow(root: pathlib.Path, idle_seconds: float) -> list[tuple[str, str, str]]:
    paths = []
    for number in range(20):
        path = root / f"idle-{number}.log"
        path.write_bytes(b"some history\n" * 1000)
        paths.append(str(path))
    share = asyncio.run(_idle_cpu(paths, idle_seconds))
    latencies = asyncio.run(_latencies(paths[0], 30))
    return [
        (f"CPU following 20 idle logs for {idle_seconds:g} s (poll 0.1 s)",
         f"{share * 100:.2f}% of one core", "< 2%"),
        ("write -> line yielded, default poll interval (30 samples: median / max)",
         f"{statistics.median(latencies) * 1000:.0f} / {max(latencies) * 1000:.0f} ms",
         "< 200 ms"),
    ]


def _compare(log: pathlib.Path, expected: list[bytes]) -> str:
    lines = [line.removesuffix(b"\r") for line in log.read_bytes().split(b"\n")
             if line and not line.startswith(b"--- swarm-launch: agent ")]
    if lines == expected:
        return f"{len(lines):,} of {len(expected):,} lines, in order"
    pairs = enumerate(zip(lines, expected, strict=False))
    missing = next((i for i, (a, b) in pairs if a != b), min(len(lines), len(expected)))
    return f"LOSSY: {len(lines):,} lines; first difference at line {missing}"


def bench_logpipe(root: pathlib.Path) -> list[tuple[str, str, str]]:
    data = numbered(LINES)
    rows = []
    for name in ("python", "auto"):
        writer = logpipe.writer_argv(name)
        label = "Perl" if writer[-1].endswith(".pl") else "Python"
        if name == "auto" and label == "Python":
            continue  # no perl here: the Python row already says it all
        log = root / f"pipe-{name}" / "a.log"
        command = [*writer, str(log), "--max-bytes", str(LogSettings().max_bytes), "--keep", "3",
                   "--agent", "a", "--pane", "%0"]
        start = time.perf_counter()
        subprocess.run(command, input=data, check=True)
        wall = time.perf_counter() - start
        verdict = _compare(log, [line for line in data.split(b"\n") if line])
        rows += [
            (f"{label} log writer process: {LINES:,} lines ({len(data) / 1e6:.1f} MB) via stdin",
             f"{wall:.2f} s ({len(data) / 1e6 / wall:.0f} MB/s incl. start-up)", "lossless"),
            (f"{label} log writer process: lines compared", verdict, "all"),
        ]
    if shutil.which("tmux"):
        rows += bench_tmux(root)
    return rows


def bench_tmux(root: pathlib.Path) -> list[tuple[str, str, str]]:
    """`seq` printing as fast as it can in a real pane, recorded through pipe-pane."""
    socket = str(root / "tmux.sock")
    log = root / "tmux" / "seq.log"
    tmux = ["tmux", "-S", socket, "-f", "/dev/null"]
    done = root / "done"
    script = f"sleep 0.5; seq 1 {LINES}; touch {done}; sleep 100"
    subprocess.run([*tmux, "new-session", "-d", "-x", "200", "-y", "50", "-s", "bench",
                    "sh", "-c", script], check=True)
    try:
        pane = subprocess.run([*tmux, "display", "-p", "-t", "bench", "#{pane_id}"],
                              capture_output=True, text=True, check=True).stdout.strip()
        pipe = logpipe.pipe_command(str(log), LogSettings(), agent_id="seq")
        subprocess.run([*tmux, "pipe-pane", "-O", "-t", pane, pipe], check=True)
        start = time.perf_counter()
        deadline = start + 120
        while not done.exists() and time.perf_counter() < deadline:
            time.sleep(0.05)
        expected = [b"%d" % i for i in range(1, LINES + 1)]
        last = b"%d" % LINES
        while time.perf_counter() < deadline:  # until the writer has caught up
            if log.exists() and log.read_bytes().rstrip().endswith(last):
                break
            time.sleep(0.05)
        wall = time.perf_counter() - start
        return [(f"tmux pane `seq 1 {LINES}` -> pipe-pane -> the log writer `up` uses",
                 f"{_compare(log, expected)}; {wall:.2f} s", "lossless")]
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        root = pathlib.Path(tmp)
        rows += bench_tail(root)
        rows += bench_follow(root, args.idle_seconds)
        rows += bench_logpipe(root)
    print(f"\n{os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    print("| measure | result | target |")
    print("|---|---|---|")
    for measure, result, target in rows:
        print(f"| {measure} | {result} | {target} |")


if __name__ == "__main__":
    main()
