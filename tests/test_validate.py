"""`swarm-launch validate` and `swarm-launch schema` through the CLI."""

from __future__ import annotations

import json
import pathlib
import textwrap

import pytest

from swarm_launch.interpolate import Unchecked
from swarm_launch.spec import load_spec
from tests.helpers import invoke

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.yaml"))
VALID = "version: 1\nname: ok\nagents:\n  a: {command: cat}\n"


def write(tmp_path: pathlib.Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_valid_file_prints_ok_and_exits_0(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "s.yaml", VALID)
    result = invoke("validate", path)
    assert (result.code, result.out, result.err) == (0, f"{path}: ok\n", "")


def test_one_error_uses_the_singular(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "s.yaml", VALID.replace("cat}", "cat, replicas: x}"))
    result = invoke("validate", path)
    assert result.code == 1
    assert result.err == (
        f"{path}:4:31: $.agents.a.replicas: 'x' is not of type 'integer'\n"
        f"1 error in {path}; nothing was changed.\n")


def test_every_file_is_checked_and_any_error_exits_1(tmp_path: pathlib.Path) -> None:
    good = write(tmp_path, "good.yaml", VALID)
    bad = write(tmp_path, "bad.yaml", "version: 1\nname: Bad\nagents: []\n")
    result = invoke("validate", bad, good)
    assert result.code == 1
    assert result.out == f"{good}: ok\n"
    assert result.err.splitlines() == [
        f"{bad}:2:7: $.name: 'Bad' does not match '^[a-z0-9][a-z0-9_-]{{0,62}}$'",
        f"{bad}:3:9: $.agents: a list is not of type 'object'",
        f"2 errors in {bad}; nothing was changed.",
    ]


def test_file_name_is_printed_as_given(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "s.yaml", "version: 1\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("validate", "s.yaml")
    assert result.err.splitlines()[0] == "s.yaml:1:1: $: 'name' is a required property"


def test_all_examples_validate_without_keys() -> None:
    result = invoke("validate", *map(str, EXAMPLES))
    assert result.code == 0, result.err
    assert result.out.count(": ok\n") == len(EXAMPLES) >= 4


def test_validate_needs_a_file() -> None:
    assert invoke("validate").code == 2


def test_schema_prints_the_json_schema() -> None:
    result = invoke("schema")
    assert result.code == 0
    document = json.loads(result.out)
    assert document["properties"]["version"]["const"] == 1
    assert "agents" in document["required"]


def test_validate_reports_what_up_would_hit(tmp_path: pathlib.Path) -> None:
    (tmp_path / "here").mkdir()
    path = write(tmp_path, "swarm.yaml", textwrap.dedent("""\
        version: 1
        name: team
        tmux: {socket_path: "/tmp/${USER}/sock"}
        agents:
          a: {command: [""], workdir: ~}
          b: {command: [x, ""], workdir: nowhere}
          c: {command: cat, workdir: here}
    """))
    result = invoke("validate", path)
    assert result.code == 1
    assert result.err.splitlines() == [
        f"{path}:3:21: $.tmux.socket_path: tmux.socket_path is not interpolated (only env "
        "values and workdirs are); write it out",
        f"{path}:5:17: $.agents.a.command[0]: the program name (the list's first item) is empty",
        f"{path}:5:31: $.agents.a.workdir: ~ is null in YAML, not the home directory: "
        "quote it ('~')",
        f"{path}:6:34: $.agents.b.workdir: workdir {tmp_path}/nowhere does not exist "
        "(a relative workdir is relative to the swarm's workdir)",
        f"4 errors in {path}; nothing was changed.",
    ]


def test_a_missing_swarm_workdir_is_reported_once(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "swarm.yaml", textwrap.dedent("""\
        version: 1
        name: team
        workdir: gone
        agents:
          a: {command: cat, workdir: sub}
    """))
    result = invoke("validate", path)
    assert result.err.splitlines()[0] == (
        f"{path}:3:10: $.workdir: workdir {tmp_path}/gone does not exist "
        "(a relative workdir is relative to the spec file's directory)")
    assert result.code == 1 and len(result.err.splitlines()) == 2


def test_commands_about_a_running_swarm_still_load_a_spec_whose_workdir_is_gone(
    tmp_path: pathlib.Path
) -> None:
    """`down` and `status` must work after the swarm's directory was removed."""
    path = write(tmp_path, "swarm.yaml", textwrap.dedent("""\
        version: 1
        name: team
        agents:
          a: {command: cat, workdir: gone}
    """))
    assert load_spec(path, Unchecked({})).agents["a"].workdir == str(tmp_path / "gone")


@pytest.mark.parametrize("option", ["-L", "-S", "--socket-name", "--socket-path"])
def test_an_empty_socket_option_is_a_usage_error(tmp_path: pathlib.Path, option: str) -> None:
    """`-L "$UNSET"` meant the spec's server, silently."""
    result = invoke(option, "", "validate", write(tmp_path, "s.yaml", VALID))
    assert result.code == 2
    assert "needs a socket" in result.err


@pytest.mark.parametrize(("field", "where"), [
    ("replicas: 1{zeros}", "4:31: $.agents.a.replicas"),
    ("stop: {{timeout_s: 1{zeros}}}", "4:39: $.agents.a.stop.timeout_s"),
])
def test_a_huge_integer_is_a_located_error_not_a_crash(
    tmp_path: pathlib.Path, field: str, where: str
) -> None:
    """An int too large for a float crashed the number check (OverflowError, exit 3)."""
    big = "1" + "0" * 400
    path = write(tmp_path, "s.yaml",
                 VALID.replace("cat}", f"cat, {field.format(zeros='0' * 400)}}}"))
    result = invoke("validate", path)
    assert result.code == 1, result.err
    assert f"{path}:{where}: {big} is greater than the maximum of" in result.err
