"""Exit codes of the CLI as a whole: usage 2, user error 1, bug 3 with a log, Ctrl-C 130."""

from __future__ import annotations

import os
import pathlib

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
