"""Benchmark `swarm-launch up` against raw tmux and tmuxp, side by side, same machine, same run.

Run: .venv/bin/python benchmarks/bench_up.py [--repeat 5]
Every measurement uses its own tmux server (own socket under a private
TMUX_TMPDIR) and `sleep 1000` as the agent. Prints a markdown table.

Fair to both sides: the raw floors create windows of the size swarm-launch gives
its agents (220x50; the 80x24 rows show the size makes no measurable difference),
swarm-launch runs as installed (its console script, with compiled bytecode, as
`pip install` leaves it even where PYTHONDONTWRITEBYTECODE is set), and each sample
starts once the previous sample's processes are gone (`settle`): a killed server's
500 dying agents would otherwise slow whatever is measured next.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(os.path.dirname(sys.executable), "swarm-launch")
CLI = [SCRIPT] if os.path.exists(SCRIPT) else [sys.executable, "-m", "swarm_launch"]
SIZE = ("-x", "220", "-y", "50")  # tmux_script.SESSION_SIZE


def tmux(sock: str, *args: str, stdin: str | None = None) -> None:
    subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", *args], input=stdin, text=True,
                   check=True, capture_output=True)


def kill(sock: str) -> None:
    subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, check=False)


def raw_chained(sock: str, n: int, size: tuple[str, ...] = SIZE,
                log_dir: str | None = None) -> None:
    """The floor for 50: one tmux client invocation chaining every new-window.

    With `log_dir`, as in `raw_source_file`: each window also pipes its output to `cat`."""
    args = ["new-session", "-d", "-s", "raw", *size, "sleep 1000"]
    for i in range(n):
        args += [";", "new-window", "-d", "-t", f"=raw:{i + 1}", "-n", f"agent-{i}",
                 "sleep 1000"]
        if log_dir:
            args += [";", "pipe-pane", "-O", "-t", f"=raw:{i + 1}",
                     f"exec cat >> {log_dir}/{i}.log"]
    tmux(sock, *args)


def raw_source_file(sock: str, n: int, size: tuple[str, ...] = SIZE,
                    log_dir: str | None = None) -> None:
    """The floor for 500: one tmux invocation reading the commands from stdin.

    With `log_dir`, each window also gets `pipe-pane -O 'cat >> LOG'`: the least any
    launcher keeping a lossless log per agent can pay (one process per pane).
    """
    lines = [f"new-session -d -s raw {' '.join(size)} 'sleep 1000'"]
    for i in range(n):
        line = f"new-window -d -t '=raw:{i + 1}' -n agent-{i} 'sleep 1000'"
        if log_dir:
            line += f" ; pipe-pane -O -t '=raw:{i + 1}' 'exec cat >> {log_dir}/{i}.log'"
        lines.append(line)
    tmux(sock, "start-server", ";", "source-file", "-", stdin="\n".join(lines) + "\n")


def write_spec(directory: str, n: int, restart: str | None = None) -> str:
    name = f"bench{n}{'-' + restart if restart else ''}"
    path = os.path.join(directory, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"version: 1\nname: {name}\nagents:\n")
        for i in range(n):
            handle.write(f"  a{i}:\n    command: sleep 1000\n")
            if restart:
                handle.write(f"    restart: {restart}\n")
    return path


def swarm_up(sock: str, spec: str, writer: str = "auto") -> None:
    """`up` as installed; `writer` "perl" measures the writer used without a C compiler."""
    subprocess.run([*CLI, "-L", sock, "up", spec], check=True, capture_output=True,
                   env={**os.environ, "SWARM_LAUNCH_LOG_WRITER": writer})


def write_tmuxp(directory: str, n: int) -> str:
    path = os.path.join(directory, f"tmuxp{n}.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("session_name: tmuxp\nwindows:\n")
        for i in range(n):
            handle.write(f"  - window_name: agent-{i}\n    panes:\n      - sleep 1000\n")
    return path


def tmuxp_load(sock: str, config: str, shell: str = "/bin/sh") -> None:
    """tmuxp types each command into a shell: its cost depends on the shell's start-up."""
    tmuxp = shutil.which("tmuxp") or os.path.join(os.path.dirname(sys.executable), "tmuxp")
    subprocess.run([tmuxp, "load", "-d", "-y", "-L", sock, config], check=True,
                   capture_output=True, env={**os.environ, "SHELL": shell})


def leftovers() -> int:
    """Processes a killed server leaves dying for a moment: agents, log writers, tmux."""
    count = 0
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                argv = handle.read()
        except OSError:
            continue
        if (argv == b"sleep\x001000\x00" or b"logpipe" in argv or b"-L\x00bench-" in argv
                or b"supervise.py" in argv):
            count += 1
    return count


def settle(deadline_s: float = 20.0) -> None:
    """Wait until the previous sample's processes are gone: their exit must not be timed."""
    deadline = time.monotonic() + deadline_s
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)


Case = tuple[Callable[[str], None] | None, Callable[[str], None]]  # (untimed setup, body)


def interleaved(cases: dict[str, Case], repeat: int) -> dict[str, float]:
    """Median wall time of each case, on a fresh server each time (`setup` runs untimed
    first). The cases take turns within every round, so a ratio compares samples taken
    moments apart: this VM's speed drifts over minutes."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(repeat):
        for name, (setup, body) in cases.items():
            sock = f"bench-{os.getpid()}-{i}-{time.monotonic_ns()}"
            settle()
            try:
                if setup:
                    setup(sock)
                start = time.perf_counter()
                body(sock)
                samples[name].append(time.perf_counter() - start)
            finally:
                kill(sock)
    return {name: statistics.median(values) for name, values in samples.items()}


def build_log_writer(data_dir: str) -> tuple[str, float, str]:
    """The first `up` on a machine (or after AI_SWARM_DIR is emptied) builds the C log
    writer once; measured here on its own, so every sample below is the steady state."""
    from swarm_launch import logpipe

    started = time.perf_counter()
    built = logpipe.native_writer(logpipe.writer_cache(data_dir))
    took = time.perf_counter() - started
    return ("first up only: building the C log writer", took,
            "built" if built else "no C compiler: the Perl writer serves")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-500", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="swarm-bench-")
    os.environ["AI_SWARM_DIR"] = os.path.join(work, "ai_swarm")
    os.environ["TMUX_TMPDIR"] = tempfile.mkdtemp(prefix="sb-")
    os.environ["SHELL"] = "/bin/sh"
    spec50, spec500 = write_spec(work, 50), write_spec(work, 500)
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "swarm_launch")],
                   check=True)
    rows: list[tuple[str, float, str]] = [build_log_writer(os.environ["AI_SWARM_DIR"])]

    policy50 = write_spec(work, 50, "on-failure")
    logs50 = tempfile.mkdtemp(prefix="raw-logs-", dir=work)
    fifty = interleaved({
        "raw50_small": (None, lambda s: raw_chained(s, 50, ())),
        "raw50": (None, lambda s: raw_chained(s, 50)),
        "piped50": (None, lambda s: raw_chained(s, 50, log_dir=logs50)),
        "up50": (None, lambda s: swarm_up(s, spec50)),
        "perl50": (None, lambda s: swarm_up(s, spec50, "perl")),
        "noop50": (lambda s: swarm_up(s, spec50), lambda s: swarm_up(s, spec50)),
        "restart50": (None, lambda s: swarm_up(s, policy50)),
    }, args.repeat)
    raw50_small, raw50, up50 = fifty["raw50_small"], fifty["raw50"], fifty["up50"]
    piped50 = fifty["piped50"]
    noop50, restart50 = fifty["noop50"], fifty["restart50"]
    bash = shutil.which("bash") or "/bin/sh"
    tmuxp = interleaved({
        "sh": (None, lambda s: tmuxp_load(s, write_tmuxp(work, 50))),
        "bash": (None, lambda s: tmuxp_load(s, write_tmuxp(work, 50), bash)),
    }, max(1, args.repeat // 2))
    tmuxp50, tmuxp50_bash = tmuxp["sh"], tmuxp["bash"]
    rows += [
        ("raw tmux, one chained call, 50 windows of 80x24", raw50_small, ""),
        ("raw tmux, one chained call, 50 windows of 220x50", raw50, "1.0x (floor)"),
        ("raw tmux, 50 windows of 220x50, each with pipe-pane to cat", piped50,
         f"{piped50 / raw50:.1f}x raw"),
        ("swarm-launch up, 50 agents from nothing", up50,
         f"{up50 / raw50:.1f}x raw, {up50 / piped50:.1f}x raw with pipe-pane"),
        ("swarm-launch up, 50 agents, Perl log writers (no C compiler)", fifty["perl50"],
         f"{fifty['perl50'] / raw50:.1f}x raw"),
        ("tmuxp load -d, 50 windows, SHELL=/bin/sh", tmuxp50,
         f"{tmuxp50 / up50:.1f}x slower than up"),
        ("tmuxp load -d, 50 windows, SHELL=bash", tmuxp50_bash,
         f"{tmuxp50_bash / up50:.1f}x slower than up"),
        ("swarm-launch up, no-op on 50 converged", noop50, "target < 0.3 s"),
        ("swarm-launch up, 50 agents with restart: on-failure", restart50,
         f"{restart50 / raw50:.1f}x raw"),
    ]
    if not args.skip_500:
        few = max(1, args.repeat // 2)
        logs = tempfile.mkdtemp(prefix="raw-logs-", dir=work)
        policy500 = write_spec(work, 500, "on-failure")
        big = interleaved({
            "raw500_small": (None, lambda s: raw_source_file(s, 500, ())),
            "raw500": (None, lambda s: raw_source_file(s, 500)),
            "piped500": (None, lambda s: raw_source_file(s, 500, log_dir=logs)),
            "up500": (None, lambda s: swarm_up(s, spec500)),
            "perl500": (None, lambda s: swarm_up(s, spec500, "perl")),
            "restart500": (None, lambda s: swarm_up(s, policy500)),
        }, few)
        raw500_small, raw500, piped500 = big["raw500_small"], big["raw500"], big["piped500"]
        up500, restart500 = big["up500"], big["restart500"]
        rows += [
            ("raw tmux, source-file, 500 windows of 80x24", raw500_small, ""),
            ("raw tmux, source-file, 500 windows of 220x50", raw500, "1.0x (floor)"),
            ("raw tmux, 500 windows of 220x50, each with pipe-pane to cat", piped500,
             f"{piped500 / raw500:.1f}x raw"),
            ("swarm-launch up, 500 agents from nothing", up500,
             f"{up500 / raw500:.1f}x raw, {up500 / piped500:.1f}x raw with pipe-pane"),
            ("swarm-launch up, 500 agents, Perl log writers (no C compiler)", big["perl500"],
             f"{big['perl500'] / raw500:.1f}x raw"),
            ("swarm-launch up, 500 agents with restart: on-failure", restart500,
             f"{restart500 / raw500:.1f}x raw"),
        ]
    version = subprocess.run(["tmux", "-V"], check=False, capture_output=True, text=True)
    print(f"median of {args.repeat} runs, {os.cpu_count()} cores, {version.stdout.strip()}\n")
    print("| measurement | wall time | ratio |\n|---|---|---|")
    for name, seconds, ratio in rows:
        print(f"| {name} | {seconds:.3f} s | {ratio} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
