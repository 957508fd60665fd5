"""The log writer process: lossless, appending, rotating, private; and its pipe-pane command."""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import termios
import time

import pytest

from swarm_launch import logpipe
from swarm_launch.model import LogSettings
from tests.helpers import wait_until

MARKER = re.compile(rb"^--- swarm-launch: agent (\S+) started \S+Z \(pane (\S+)\) ---$")
STAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


PYTHON_WRITER = logpipe.writer_argv("python")
PERL = shutil.which("perl")
CC = shutil.which("cc")
WRITERS = [
    pytest.param("python", id="python"),
    pytest.param("perl", id="perl",
                 marks=pytest.mark.skipif(PERL is None, reason="no perl on PATH")),
    pytest.param("c", id="c", marks=pytest.mark.skipif(CC is None, reason="no cc on PATH")),
]


@pytest.fixture(scope="session")
def c_writer(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The C writer, built once per test session as `up` builds it."""
    if CC is None:
        pytest.skip("no cc on PATH")
    built = logpipe.native_writer(str(tmp_path_factory.mktemp("writer-cache")))
    assert built is not None, "logpipe.c did not build"
    return [built]


def writer_named(name: str, request: pytest.FixtureRequest) -> list[str]:
    if name == "c":
        argv: list[str] = request.getfixturevalue("c_writer")
        return argv
    return PYTHON_WRITER if name == "python" else [PERL or "perl", logpipe.PERL_WRITER]


@pytest.fixture(params=WRITERS)
def writer(request: pytest.FixtureRequest) -> list[str]:
    """Each case runs against every writer program: they must write the same bytes."""
    return writer_named(request.param, request)


def run_logpipe(writer: list[str], log: pathlib.Path, data: bytes, *,
                max_bytes: int = 50 * 1024 * 1024, keep: int = 3, agent: str = "planner",
                pane: str = "%3") -> None:
    """Feed `data` through the real writer process, to its EOF."""
    command = [*writer, str(log), "--max-bytes", str(max_bytes), "--keep", str(keep),
               "--agent", agent, "--pane", pane]
    subprocess.run(command, input=data, check=True, timeout=60)


def numbered(count: int, start: int = 0) -> bytes:
    return b"".join(b"line %d\n" % i for i in range(start, start + count))


def without_markers(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if not MARKER.match(line)]


def test_200000_numbered_lines_arrive_whole_and_in_order(writer: list[str],
                                                         tmp_path: pathlib.Path) -> None:
    log = tmp_path / "logs" / "planner.log"
    run_logpipe(writer, log, numbered(200_000))
    lines = log.read_bytes().split(b"\n")
    assert MARKER.match(lines[0])
    assert lines[1:-1] == [b"line %d" % i for i in range(200_000)]
    assert lines[-1] == b""


def test_each_start_appends_a_marker_and_never_truncates(writer: list[str],
                                                         tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    run_logpipe(writer, log, b"first run\n", agent="coder-0", pane="%1")
    run_logpipe(writer, log, b"second run\n", agent="coder-0", pane="%7")
    lines = log.read_bytes().splitlines()
    assert [MARKER.match(line) is not None for line in lines] == [True, False, True, False]
    assert lines[1] == b"first run" and lines[3] == b"second run"
    assert MARKER.match(lines[2]).groups() == (b"coder-0", b"%7")  # type: ignore[union-attr]


def test_marker_starts_on_a_fresh_line_after_a_partial_one(writer: list[str],
                                                           tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    run_logpipe(writer, log, b"prompt> ")
    run_logpipe(writer, log, b"again\n")
    lines = log.read_bytes().split(b"\n")
    assert lines[1] == b"prompt> "
    assert MARKER.match(lines[2])


def test_rotation_keeps_k_files_and_loses_no_byte(writer: list[str],
                                                  tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    data = numbered(20_000)  # ~200 KB through a 16 KB cap: a dozen rotations
    run_logpipe(writer, log, data, max_bytes=16 * 1024, keep=3)
    files = [tmp_path / f"a.log.{n}" for n in (3, 2, 1)] + [log]
    assert sorted(p.name for p in tmp_path.glob("a.log*")) == [
        "a.log", "a.log.1", "a.log.1.idx", "a.log.2", "a.log.2.idx", "a.log.3", "a.log.3.idx",
        "a.log.idx"]
    assert all(p.stat().st_size <= 16 * 1024 for p in files)
    assert all(p.read_bytes().endswith(b"\n") for p in files[:-1])  # rotated between lines
    kept = b"".join(p.read_bytes() for p in files)
    assert kept == data[-len(kept):]  # the newest bytes, contiguous across every boundary


def test_rotation_within_one_run_is_lossless_across_the_boundary(writer: list[str],
                                                                 tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    data = numbered(5_000)  # ~49 KB through a 20 KB cap: two rotations
    run_logpipe(writer, log, data, max_bytes=20_000, keep=5)
    files = [tmp_path / f"a.log.{n}" for n in (2, 1)] + [log]
    assert not (tmp_path / "a.log.3").exists()
    assert without_markers(b"".join(p.read_bytes() for p in files)) == without_markers(data)


def test_keep_zero_keeps_no_old_file(writer: list[str], tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    run_logpipe(writer, log, numbered(5_000), max_bytes=4096, keep=0)
    assert not (tmp_path / "a.log.1").exists()
    assert log.stat().st_size <= 4096
    assert log.read_bytes().endswith(b"line 4999\n")


def test_files_are_0600_and_the_directory_0700(writer: list[str], tmp_path: pathlib.Path) -> None:
    log = tmp_path / "new" / "logs" / "a.log"
    run_logpipe(writer, log, numbered(3_000), max_bytes=8192, keep=2)
    assert (tmp_path / "new" / "logs").stat().st_mode & 0o777 == 0o700
    for path in (log.parent).iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path.name


def test_index_notes_where_each_run_starts(writer: list[str], tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    run_logpipe(writer, log, b"hello\n")
    run_logpipe(writer, log, b"again\n")
    entries = [line.split() for line in (tmp_path / "a.log.idx").read_text().splitlines()]
    second_start = log.read_bytes().index(b"--- swarm-launch", 1)
    assert [int(offset) for _, offset in entries] == [0, second_start]
    assert all(second.isdigit() for second, _ in entries)


def test_writer_splits_a_line_longer_than_the_cap(tmp_path: pathlib.Path) -> None:
    writer = logpipe.LogWriter(str(tmp_path / "a.log"), max_bytes=10, keep=5)
    writer.write(b"0123456789abcdefghij-tail\n")
    writer.close()
    parts = [(tmp_path / name).read_bytes() for name in ("a.log.2", "a.log.1", "a.log")]
    assert parts == [b"0123456789", b"abcdefghij", b"-tail\n"]


@pytest.mark.parametrize("other", [
    pytest.param("perl", marks=pytest.mark.skipif(PERL is None, reason="no perl on PATH")),
    pytest.param("c", marks=pytest.mark.skipif(CC is None, reason="no cc on PATH")),
])
def test_every_writer_writes_the_same_bytes_as_python(
        other: str, request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> None:
    data = b"no newline at the end> " + numbered(3_000) + "é\x00\xff\r\n".encode("latin-1")
    for name, argv in (("python", PYTHON_WRITER), (other, writer_named(other, request))):
        for run in range(2):  # the second start follows a partial line
            run_logpipe(argv, tmp_path / name / "a.log", data, max_bytes=9_000, keep=2,
                        agent="a", pane=f"%{run}")
    for suffix in ("", ".1", ".2"):
        python_bytes = (tmp_path / "python" / f"a.log{suffix}").read_bytes()
        other_bytes = (tmp_path / other / f"a.log{suffix}").read_bytes()
        stamps = re.compile(rb"started \S+Z")  # the seconds may differ, not the length
        assert stamps.sub(b"T", python_bytes) == stamps.sub(b"T", other_bytes), suffix
        offsets = [[line.split()[1] for line in (tmp_path / name / f"a.log{suffix}.idx")
                    .read_text().splitlines()] for name in ("python", other)]
        assert offsets[0] == offsets[1], suffix


def test_the_perl_writer_compiles_under_strict_and_warnings() -> None:
    if PERL is None:
        pytest.skip("no perl on PATH")
    checked = subprocess.run([PERL, "-Mstrict", "-w", "-c", logpipe.PERL_WRITER],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and "syntax OK" in checked.stderr, checked.stderr
    assert checked.stderr.strip().endswith("syntax OK")  # and not one warning


def test_the_c_writer_compiles_without_a_warning(tmp_path: pathlib.Path) -> None:
    if CC is None:
        pytest.skip("no cc on PATH")
    checked = subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-O2", "-o",
                              str(tmp_path / "w"), logpipe.C_WRITER],
                             capture_output=True, text=True, check=False)
    assert (checked.returncode, checked.stderr) == (0, "")


def test_perl_is_the_writer_when_found_and_python_otherwise(tmp_path: pathlib.Path) -> None:
    fake = tmp_path / "perl"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert logpipe.writer_argv("auto", str(tmp_path)) == [str(fake), logpipe.PERL_WRITER]
    assert logpipe.writer_argv("python", str(tmp_path))[1:] == ["-I", "-S", logpipe.__file__]
    assert logpipe.writer_argv("auto", str(tmp_path / "empty"))[0] == sys.executable
    # No C compiler on that path: Perl serves, and the cache holds no program.
    cache = tmp_path / "cache"
    assert logpipe.writer_argv("auto", str(tmp_path), cache_dir=str(cache)) == [
        str(fake), logpipe.PERL_WRITER]
    assert list(cache.iterdir()) == []


def fake_compiler(directory: pathlib.Path, script: str) -> pathlib.Path:
    """A `cc` that counts its runs in `runs` beside it, then runs `script`."""
    directory.mkdir(exist_ok=True)
    compiler = directory / "cc"
    compiler.write_text(f"#!/bin/sh\necho run >> {directory / 'runs'}\n{script}\n")
    compiler.chmod(0o755)
    return compiler


def runs_of(compiler: pathlib.Path) -> int:
    runs = compiler.parent / "runs"
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def test_the_c_writer_is_built_once_then_reused(tmp_path: pathlib.Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if CC is None:
        pytest.skip("no cc on PATH")
    compiler = fake_compiler(tmp_path / "bin", f'exec {CC} "$@"')
    monkeypatch.setenv("CC", str(compiler))
    cache = tmp_path / "cache"
    first = logpipe.writer_argv("auto", cache_dir=str(cache))
    assert logpipe.writer_argv("auto", cache_dir=str(cache)) == first
    assert runs_of(compiler) == 1
    [program] = first
    assert pathlib.Path(program).parent == cache and pathlib.Path(program).name.startswith(
        "logpipe-")
    assert cache.stat().st_mode & 0o777 == 0o700
    assert os.stat(program).st_mode & 0o777 == 0o700
    assert sorted(p.name for p in cache.iterdir()) == [pathlib.Path(program).name]
    assert logpipe.writer_argv("perl", cache_dir=str(cache))[1:] == [logpipe.PERL_WRITER]


def test_a_failed_build_falls_back_and_is_not_retried_for_a_day(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if PERL is None:
        pytest.skip("no perl on PATH")
    compiler = fake_compiler(tmp_path / "bin", "echo 'logpipe.c:1: error: no' >&2; exit 1")
    monkeypatch.setenv("CC", str(compiler))
    cache = tmp_path / "cache"
    for _ in range(2):
        assert logpipe.writer_argv("auto", cache_dir=str(cache)) == [PERL, logpipe.PERL_WRITER]
    assert runs_of(compiler) == 1
    [note] = cache.glob("logpipe-*.failed")
    assert "logpipe.c:1: error: no" in note.read_text()
    assert str(compiler) in note.read_text() and "when this file is removed" in note.read_text()
    a_day_ago = time.time() - logpipe.FAILED_BUILD_RETRY_S - 60
    os.utime(note, (a_day_ago, a_day_ago))
    logpipe.writer_argv("auto", cache_dir=str(cache))
    assert runs_of(compiler) == 2
    monkeypatch.setenv("CC", "cc")  # another compiler: another program, tried at once
    if CC is not None:
        assert logpipe.writer_argv("auto", cache_dir=str(cache))[0].startswith(str(cache))


def test_a_broken_cc_setting_never_stops_up(tmp_path: pathlib.Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "gcc '")  # unbalanced quote: shlex cannot split it
    assert logpipe.native_writer(str(tmp_path / "cache")) is None
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CC", "cc")
    assert logpipe.native_writer(str(tmp_path / "file")) is None  # not a directory


def test_a_cached_program_that_cannot_run_is_rebuilt(tmp_path: pathlib.Path) -> None:
    """An empty file left by a crash, or one that lost its exec bit: never used as is."""
    if CC is None:
        pytest.skip("no cc on PATH")
    cache = tmp_path / "cache"
    built = logpipe.native_writer(str(cache))
    assert built is not None
    def empty(path: pathlib.Path) -> None:
        path.write_bytes(b"")

    def not_executable(path: pathlib.Path) -> None:
        path.chmod(0o600)

    for spoil in (empty, not_executable):
        spoil(pathlib.Path(built))
        assert logpipe.native_writer(str(cache)) == built
        assert logpipe._is_usable(built)


def test_the_cache_is_absolute_and_under_ai_swarm_dir_by_default(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(logpipe.CACHE_ENV)
    assert logpipe.writer_cache(str(tmp_path)) == str(tmp_path / ".bin")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(logpipe.CACHE_ENV, "relative")
    assert logpipe.writer_cache("/elsewhere") == str(tmp_path / "relative")


def test_a_built_program_that_writes_no_log_is_not_used(tmp_path: pathlib.Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken toolchain: the build 'succeeds' with a program that loses the output."""
    compiler = fake_compiler(tmp_path / "bin",
                             'while [ "$1" != -o ]; do shift; done\n'
                             'printf "#!/bin/sh\\ncat >/dev/null\\n" > "$2"; chmod 755 "$2"')
    monkeypatch.setenv("CC", str(compiler))
    cache = tmp_path / "cache"
    assert logpipe.native_writer(str(cache)) is None
    assert runs_of(compiler) == 1
    [note] = cache.glob("logpipe-*.failed")
    assert "failed its check" in note.read_text()
    assert [p.name for p in cache.iterdir()] == [note.name]  # no half-built program left


def test_no_c_writer_under_a_directory_others_could_swap(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compiler = fake_compiler(tmp_path / "bin", "exit 1")
    monkeypatch.setenv("CC", str(compiler))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # not sticky: anyone may rename the cache away and plant another
    assert logpipe.native_writer(str(shared / "cache")) is None
    assert runs_of(compiler) == 0 and not (shared / "cache").exists()


def test_no_c_writer_from_a_cache_others_can_write(tmp_path: pathlib.Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    compiler = fake_compiler(tmp_path / "bin", "exit 1")
    monkeypatch.setenv("CC", str(compiler))
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    assert logpipe.native_writer(str(cache)) is None
    assert runs_of(compiler) == 0  # refused before building anything


def test_the_environment_can_force_the_python_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logpipe.WRITER_ENV, "python")
    assert logpipe.writer_argv()[1:] == ["-I", "-S", logpipe.__file__]
    assert logpipe.pipe_command("/l", LogSettings(), agent_id="a").startswith(
        f"LC_ALL=C exec {sys.executable} -I -S ")


@pytest.mark.parametrize("writer_name", ["auto", "python"])
def test_the_pipe_command_says_nothing_about_an_uninstalled_locale(
        writer_name: str, tmp_path: pathlib.Path) -> None:
    """tmux runs it with sh and the server's env, whose LANG may name a missing locale."""
    log = tmp_path / "a.log"
    command = logpipe.pipe_command(str(log), LogSettings(), agent_id="a",
                                   writer=logpipe.writer_argv(writer_name))
    done = subprocess.run(["/bin/sh", "-c", command.replace("#{pane_id}", "%1")],
                          input=b"hello\n", capture_output=True, timeout=30, check=False,
                          env={**os.environ, "LANG": "xx_XX.UTF-8", "LC_ALL": ""})
    assert (done.returncode, done.stderr) == (0, b"")
    assert log.read_bytes().endswith(b"---\nhello\n")


def test_pipe_command_quotes_for_sh_and_doubles_hashes_for_tmux(tmp_path: pathlib.Path) -> None:
    path = "/tmp/we#ird dir's $HOME ~/a#1.log"
    command = logpipe.pipe_command(path, LogSettings(max_bytes=1000, keep=2), agent_id="a#b",
                                   writer=PYTHON_WRITER)
    assert command.startswith("LC_ALL=C exec ")
    assert command.endswith(" '#{pane_id}'")
    expanded = command[:-len("'#{pane_id}'")].replace("##", "#") + "%5"  # what tmux does
    words = shlex.split(expanded[len("LC_ALL=C exec "):])
    assert os.path.isabs(words[0])
    assert words[1:3] == ["-I", "-S"]  # isolated, and no site import: it starts once per agent
    assert words[4:] == [path, "--max-bytes", "1000", "--keep", "2", "--agent", "a#b",
                         "--pane", "%5"]


@pytest.mark.parametrize("argv", [
    pytest.param([], id="no-path"),
    pytest.param(["--keep", "3"], id="option-first"),
    pytest.param(["a.log", "--keep"], id="missing-value"),
    pytest.param(["a.log", "--bogus", "1"], id="unknown-option"),
    pytest.param(["a.log", "--keep", "x"], id="not-a-number"),
])
def test_bad_arguments_print_usage(argv: list[str]) -> None:
    with pytest.raises(SystemExit, match="usage"):
        logpipe.main(argv)


def test_sigterm_writes_what_is_already_in_the_pipe_then_exits(
        writer: list[str], tmp_path: pathlib.Path) -> None:
    log = tmp_path / "a.log"
    process = subprocess.Popen([*writer, str(log), "--agent", "a", "--pane", "%1"],
                               stdin=subprocess.PIPE)
    assert process.stdin is not None
    try:
        wait_until(lambda: log.exists() and log.read_bytes().endswith(b"---\n"),
                   message="the start marker")
        process.send_signal(signal.SIGSTOP)  # so the data is still in the pipe at SIGTERM
        process.stdin.write(numbered(1000))
        process.stdin.flush()
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGCONT)
        assert process.wait(timeout=10) == 0
        assert without_markers(log.read_bytes()) == without_markers(numbered(1000))
    finally:
        process.kill()
        process.stdin.close()


def start_writer(writer: list[str], log: pathlib.Path, *, max_bytes: int = 50 * 1024 * 1024,
                 keep: int = 3, file_size_limit: int | None = None) -> subprocess.Popen[bytes]:
    """The writer, reading our pipe. `file_size_limit` (a multiple of 512): no write may
    make a file larger (EFBIG, as a full disk fails it; SIGXFSZ ignored, across the exec,
    so it does not kill). The shell execs the writer: `process.pid` is the writer's."""
    limit = [] if file_size_limit is None else [
        "/bin/sh", "-c", f"ulimit -f {file_size_limit // 512}; trap '' XFSZ; exec \"$@\"", "sh"]
    return subprocess.Popen([*limit, *writer, str(log), "--max-bytes", str(max_bytes), "--keep",
                             str(keep), "--agent", "a", "--pane", "%1"],
                            stdin=subprocess.PIPE, bufsize=0)


def feed(process: subprocess.Popen[bytes], data: bytes) -> None:
    """Write all of `data` to the writer's stdin; fail (not hang) if it stops reading."""
    assert process.stdin is not None
    fd = process.stdin.fileno()
    os.set_blocking(fd, False)
    rest = memoryview(data)

    def sent() -> bool:
        nonlocal rest
        with contextlib.suppress(BlockingIOError):
            rest = rest[os.write(fd, rest):]
        return not rest

    wait_until(sent, message=f"the writer to read {len(data)} bytes")


def wait_idle(process: subprocess.Popen[bytes]) -> float:
    """Wait until the writer has read all its input and sleeps in its next read; when."""
    assert process.stdin is not None
    fd = process.stdin.fileno()

    def idle() -> float | None:
        unread = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, unread)
        stat = pathlib.Path(f"/proc/{process.pid}/stat").read_text()
        return time.time() if unread[0] == 0 and stat.rsplit(")", 1)[1].split()[0] == "S" else None

    return wait_until(idle, message="the writer to wait for input")


def wait_for_a_retry(idle_at: float) -> None:
    """The writer retries on the first input in a later second than its latest failure (which
    was before `idle_at`). Perl's `time` may lag a clock tick: a 50 ms margin."""
    wait_until(lambda: time.time() >= int(idle_at) + 1.05, timeout=3, message="a new second")


def ends_with(path: pathlib.Path, data: bytes) -> bool:
    """Whether the log ends with `data`; a rotation renames LOG before the fresh one is
    made, so a look between the two finds none."""
    try:
        return path.read_bytes().endswith(data)
    except FileNotFoundError:
        return False


def stop(process: subprocess.Popen[bytes]) -> int:
    assert process.stdin is not None
    process.stdin.close()
    return process.wait(timeout=10)


def test_a_full_disk_drops_and_counts_output_then_notes_the_loss(
        writer: list[str], tmp_path: pathlib.Path) -> None:
    """Every writer writes exactly these bytes (time stamps aside)."""
    log = tmp_path / "a.log"
    log.write_bytes(b"x" * 4095 + b"\n")
    # At its size limit: every write to the log fails (EFBIG), for root too.
    process = start_writer(writer, log, file_size_limit=4096)
    try:
        lost = numbered(30_000)  # ~250 KB, four pipe buffers: it reads on while writes fail
        feed(process, lost)
        idle_at = wait_idle(process)
        assert process.poll() is None
        fresh = tmp_path / "fresh"
        fresh.write_bytes(b"partial")  # no newline: the note still gets a line of its own
        fresh.replace(log)  # space again: the retry reopens the log
        wait_for_a_retry(idle_at)
        after = b"after the disk was freed\n"
        feed(process, after)
        wait_until(lambda: log.read_bytes().endswith(after), message="the log to resume")
        assert process.poll() is None
        assert stop(process) == 0  # EOF still ends it normally
    finally:
        process.kill()  # after a failed check
        stop(process)
    content = log.read_bytes()
    assert STAMP.sub(b"T", content) == (
        b"partial\n--- swarm-launch: agent a log writing failed from T to T "
        b"(File too large); %d bytes lost ---\n" % len(lost) + after)
    since, until = STAMP.findall(content)
    assert since <= until
    first_entry = (tmp_path / "a.log.idx").read_text().splitlines()[0]
    assert first_entry.split()[1] == str(len(b"partial"))  # no entry for the lost bytes


def test_a_log_that_cannot_be_opened_at_a_rotation_does_not_end_the_writer(
        writer: list[str], tmp_path: pathlib.Path) -> None:
    log = tmp_path / "d" / "a.log"
    process = start_writer(writer, log, max_bytes=100_000, keep=1)
    try:
        head = numbered(100)
        feed(process, head)
        wait_until(lambda: log.exists() and log.read_bytes().endswith(head), message="head")
        (tmp_path / "d").rename(tmp_path / "old")  # the open log goes with it
        (tmp_path / "d").write_bytes(b"")  # reopening d/a.log: ENOTDIR, for root too
        rest = numbered(30_000, start=100)  # ~270 KB: past the cap, so a rotation
        feed(process, rest)
        idle_at = wait_idle(process)
        assert process.poll() is None
        (tmp_path / "d").unlink()  # the writer makes the directory again
        wait_for_a_retry(idle_at)
        after = b"after the directory came back\n"
        feed(process, after)
        wait_until(lambda: log.exists() and log.read_bytes().endswith(after),
                   message="the log to resume")
        assert stop(process) == 0
    finally:
        process.kill()
        stop(process)
    old = (tmp_path / "old" / "a.log").read_bytes()
    start_marker, kept = old.split(b"\n", 1)
    assert MARKER.match(start_marker) and len(old) <= 100_000
    assert (head + rest).startswith(kept)  # lossless up to the failed rotation
    lost = len(head + rest) - len(kept)
    assert STAMP.sub(b"T", log.read_bytes()) == (
        b"--- swarm-launch: agent a log writing failed from T to T (Not a directory); "
        b"%d bytes lost ---\n" % lost + after)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o700


def test_a_log_that_cannot_be_rotated_is_a_failure_not_a_busy_loop(
        writer: list[str], tmp_path: pathlib.Path) -> None:
    """With LOG.1 a non-empty directory, renaming LOG fails (as for root too): the writer
    must not rotate again and again, but drop and count like any failed write."""
    log = tmp_path / "a.log"
    (tmp_path / "a.log.1").mkdir()
    (tmp_path / "a.log.1" / "x").write_text("")
    process = start_writer(writer, log, max_bytes=4096, keep=1)
    try:
        feed(process, numbered(1000))  # ~7 KB: past the cap
        idle_at = wait_idle(process)  # asleep in its next read: not spinning
        (tmp_path / "a.log.1" / "x").unlink()
        (tmp_path / "a.log.1").rmdir()
        wait_for_a_retry(idle_at)
        after = b"after the way was clear\n"
        feed(process, after)
        wait_until(lambda: ends_with(log, after), message="the log to resume")
        assert stop(process) == 0
    finally:
        process.kill()
        stop(process)
    content = log.read_bytes()
    assert STAMP.sub(b"T", content).startswith(
        b"--- swarm-launch: agent a log writing failed from T to T (Is a directory); ")
    assert content.endswith(after)


def test_the_pipe_command_unsets_only_names_sh_can_hold() -> None:
    """A name sh cannot hold would make `unset` fail, and that ends dash: no log at all."""
    assert logpipe.shell_unset(["GH_TOKEN", "MY-KEY", "A_KEY", "GH_TOKEN"]) == \
        "unset A_KEY GH_TOKEN; "
    assert logpipe.shell_unset(["MY-KEY"]) == ""
    command = logpipe.pipe_command("/x/a.log", LogSettings(), agent_id="a", writer=["w"],
                                   unset=["MY-KEY", "A_KEY"])
    assert command.startswith("unset A_KEY; LC_ALL=C exec w /x/a.log ")


@pytest.mark.parametrize("linked", ["a.log", "a.log.idx"])
def test_a_symlink_in_place_of_a_log_file_is_refused_and_the_loss_noted(
        writer: list[str], tmp_path: pathlib.Path, linked: str) -> None:
    """A symlink in the logs directory must not send the agent's output to its target
    (another file, maybe readable by others; or a new one, when it dangles)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_bytes(b"not yours\n")
    (tmp_path / linked).symlink_to(outside / "kept")
    (tmp_path / "dangling.log").symlink_to(outside / "new")
    run_logpipe(writer, tmp_path / "dangling.log", b"dropped\n")
    log = tmp_path / "a.log"
    process = start_writer(writer, log)
    try:
        feed(process, b"dropped\n")
        idle_at = wait_idle(process)
        (tmp_path / linked).unlink()
        wait_for_a_retry(idle_at)
        feed(process, b"after\n")
        wait_until(lambda: ends_with(log, b"after\n"), message="the log to resume")
        assert stop(process) == 0
    finally:
        process.kill()
        stop(process)
    assert sorted(p.name for p in outside.iterdir()) == ["kept"]
    assert (outside / "kept").read_bytes() == b"not yours\n"
    assert STAMP.sub(b"T", log.read_bytes()).endswith(
        b"--- swarm-launch: agent a log writing failed from T to T "
        b"(Too many levels of symbolic links); 8 bytes lost ---\nafter\n")


def test_a_log_made_readable_by_others_is_0600_again_and_so_are_its_rotations(
        writer: list[str], tmp_path: pathlib.Path) -> None:
    log = tmp_path / "logs" / "a.log"
    run_logpipe(writer, log, b"first\n")
    for path in log.parent.iterdir():
        path.chmod(0o644)
    run_logpipe(writer, log, numbered(600), max_bytes=4096, keep=2)  # one rotation
    modes = {path.name: path.stat().st_mode & 0o777 for path in log.parent.iterdir()}
    assert sorted(modes) == ["a.log", "a.log.1", "a.log.1.idx", "a.log.idx"]
    assert modes == dict.fromkeys(modes, 0o600)
