"""Exit codes of the CLI as a whole: usage 2, user error 1, bug 3 with a log, Ctrl-C 130."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import libtmux
import pytest

from swarm_launch import errors
from swarm_launch.exceptions import UserError
from tests.helpers import invoke


def test_help_exits_zero() -> None:
    result = invoke("--help")
    assert result.code == 0
    assert "validate" in result.out


def test_unknown_command_is_a_usage_error() -> None:
    assert invoke("frobnicate").code == 2


def test_both_sockets_is_a_usage_error() -> None:
    assert invoke("-L", "a", "-S", "/tmp/b", "ls").code == 2


def test_user_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    def fail() -> None:
        raise UserError("the thing is wrong; do this instead")

    assert errors.run_with_exit_codes(fail) == 1
    assert capsys.readouterr().err == "error: the thing is wrong; do this instead\n"


def test_bug_exits_3_and_logs_traceback(
    capsys: pytest.CaptureFixture[str], isolated_environment: pathlib.Path
) -> None:
    def crash() -> None:
        raise ZeroDivisionError("boom")

    assert errors.run_with_exit_codes(crash) == 3
    err = capsys.readouterr().err
    log_path = os.path.join(str(isolated_environment), errors.ERROR_LOG)
    assert log_path in err
    assert "Traceback" not in err
    with open(log_path, encoding="utf-8") as handle:
        assert "ZeroDivisionError: boom" in handle.read()
    assert os.stat(log_path).st_mode & 0o777 == 0o600


def test_ctrl_c_exits_130() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    assert errors.run_with_exit_codes(interrupted) == 130


def test_cli_start_up_does_not_import_libtmux_or_jsonschema_for_help() -> None:
    import subprocess
    import sys

    code = ("import sys; from swarm_launch import cli; "
            "print(sorted(m for m in ('libtmux', 'jsonschema', 'asyncio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("args", "says"), [
    (["--timeout", "5"], "--timeout bounds --wait"),
    (["--wait", "--timeout", "-1"], "-1"),
    (["--watch", "--json"], "--watch prints as it goes"),
    (["--watch", "--wait"], "--watch prints as it goes"),
])
def test_up_options_that_cannot_go_together_are_usage_errors(
        tmp_path: pathlib.Path, args: list[str], says: str) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\nname: u\nagents:\n  a: {command: sleep 60}\n")
    result = invoke("up", str(spec), *args)
    assert result.code == 2 and says in result.err


def _console(*args: str, stdout: int = subprocess.PIPE, stderr: int = subprocess.PIPE,
             unbuffered: bool = False) -> subprocess.Popen[bytes]:
    """The CLI as a process; `unbuffered`: every line written at once (PYTHONUNBUFFERED),
    so a reader gone is met in the middle of the command, not at its final flush."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1" if unbuffered else ""}
    return subprocess.Popen([sys.executable, "-m", "swarm_launch", *args], stdout=stdout,
                            stderr=stderr, env=env)


def test_the_exit_skipping_teardown_still_delivers_all_output_and_the_exit_code(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path
) -> None:
    """The console entry leaves through os._exit: its buffered output must be flushed."""
    plan = _console("-L", f"none-{os.getpid()}", "plan", _big_spec(tmp_path), "--json",
                    "--detailed-exitcode")
    out, err = plan.communicate(timeout=60)
    assert plan.returncode == 2, err  # changes pending: every agent is missing
    assert len(out) > 64 * 1024  # more than a pipe holds: written while being read
    assert len(json.loads(out)["actions"]) == 800
    bad = _console("validate", str(tmp_path / "missing.yaml"))
    out, err = bad.communicate(timeout=60)
    assert (bad.returncode, out) == (1, b"")
    assert b"no such file" in err


def _with_no_reader(*args: str) -> tuple[int, bytes]:
    """Run the CLI with stdout a pipe nobody reads (`| head -0`): exit code, stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        cli = _console(*args, stdout=write_end, unbuffered=True)
    finally:
        os.close(write_end)
    _, err = cli.communicate(timeout=60)
    return cli.returncode, err


@pytest.mark.parametrize(("args", "code"), [([], 0), (["--detailed-exitcode"], 2)])
def test_a_reader_that_goes_away_early_changes_no_exit_code(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path, args: list[str], code: int
) -> None:
    """The exit code is the command's own (click turned the EPIPE into 1)."""
    assert _with_no_reader("-L", f"none-{os.getpid()}", "plan", _big_spec(tmp_path), "--json",
                           *args) == (code, b"")  # no "Exception ignored ... BrokenPipeError"


@pytest.mark.parametrize("watch", [[], ["--watch"]])
def test_up_whose_reader_goes_away_still_applies_and_records_everything(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path, server: libtmux.Server,
    watch: list[str]
) -> None:
    """Its exit code says what it did; `--watch` ends, as it has nobody to tell."""
    spec = tmp_path / "s.yaml"
    spec.write_text("version: 1\nname: gone\nagents:\n  a: {command: sleep 60, replicas: 3}\n"
                    "  b: {command: sleep 60, depends_on: [a]}\n")
    assert _with_no_reader("-L", str(server.socket_name), "up", str(spec), *watch) == (0, b"")
    result = invoke("-L", str(server.socket_name), "status", str(spec), "--json")
    agents = json.loads(result.out)["agents"]
    assert [(a["id"], a["status"], a["sync"]) for a in agents] == [
        (agent, "running", "in-sync") for agent in ("a-0", "a-1", "a-2", "b")]
    invoke("-L", str(server.socket_name), "down", str(spec))


def test_a_reader_of_stderr_that_goes_away_changes_no_exit_code(
    tmp_path: pathlib.Path, isolated_environment: pathlib.Path, server: libtmux.Server
) -> None:
    """`plan B.yaml 2>&1 | head -0`: its note on stderr met the reader gone, and the
    plan, done, exited 1 (only stdout dropped its writes then)."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    for spec in (first, second):
        spec.write_text("version: 1\nname: two\nagents:\n  a: {command: sleep 60}\n")
    assert invoke("-L", str(server.socket_name), "up", str(first)).code == 0
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        plan = _console("-L", str(server.socket_name), "plan", str(second),
                        stdout=write_end, stderr=write_end)
    finally:
        os.close(write_end)
    assert plan.wait(timeout=60) == 0
    assert "was last applied from" in invoke("-L", str(server.socket_name), "plan",
                                             str(second)).err  # the note it printed


def _big_spec(directory: pathlib.Path) -> str:
    spec = directory / "big.yaml"
    spec.write_text("version: 1\nname: big\nagents:\n"
                    + "".join(f"  a{i}:\n    command: sleep 1000\n" for i in range(800)))
    return str(spec)


def test_up_dry_run_with_wait_is_a_usage_error() -> None:
    result = invoke("up", "x.yaml", "--dry-run", "--wait")
    assert result.code == 2
    assert "--dry-run starts nothing: there is nothing to --wait for" in result.err
