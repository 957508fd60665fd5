"""Bad input: property-based fuzzing of spec files and of CLI arguments.

Never a traceback (exit 0, 1 or 2; no "Traceback"; no bug report), and never a tmux
mutation for an invalid spec: the isolated tmux socket directory stays empty.
"""

from __future__ import annotations

import os
import pathlib
import string
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults._support import record_figures
from tests.helpers import CliResult, invoke

pytestmark = [pytest.mark.faults]

SOCK = "fuzz"
FUZZ_SETTINGS = settings(max_examples=500, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])

VALID = """\
version: 1
name: fuzzed
workdir: .
env:
  LOG_LEVEL: info
  TOKEN: ${FUZZ_TOKEN:-none}
defaults:
  stop: {signal: INT, timeout_s: 3}
agents:
  planner:
    command: sleep 600
    env:
      ROLE: planner
    ready:
      pattern: "ready> "
      timeout_s: 10
    prompt: hello
  reviewer:
    command: [sleep, "600"]
    replicas: 2
    restart: on-failure
    max_restarts: 3
    backoff: {initial_s: 1, max_s: 4, factor: 2}
    depends_on: [planner]
"""

WRONG_VALUES = ["", "~", "[]", "{}", "-1", "1.5", "true", "'x'", "[1, 2]", "{a: 1}",
                "\"${UNSET_FUZZ_VAR}\"", "999999999999999999999", "&a x", "*a", "!!binary AA==",
                "\"\\u0000\"", "'../../etc'", "\"a;b\"", "\"#{pane_id}\"", "\"$(id)\""]

counts = {"examples": 0, "valid_seen": 0}


def socket_dir() -> str:
    return os.path.join(os.environ["TMUX_TMPDIR"], f"tmux-{os.getuid()}")


def assert_no_tmux() -> None:
    directory = socket_dir()
    assert not os.path.isdir(directory) or not os.listdir(directory), os.listdir(directory)


def assert_sane(result: CliResult) -> None:
    text = result.out + result.err
    assert result.code in (0, 1, 2), result
    assert "Traceback" not in text, text
    assert "unexpected failure" not in text, text


def check_spec(path: pathlib.Path, text: str | bytes) -> None:
    """Write `text`, then: an invalid spec is refused by `up` without touching tmux; a
    valid one is only planned (plan changes nothing)."""
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
    verdict = invoke("validate", str(path))
    assert_sane(verdict)
    if verdict.code == 0:
        counts["valid_seen"] += 1
        for args in (("plan", str(path)), ("up", "--dry-run", str(path))):
            assert_sane(invoke("-L", SOCK, *args))
    else:
        up = invoke("-L", SOCK, "up", str(path))
        assert_sane(up)
        assert up.code == 1, up
        assert_no_tmux()


@st.composite
def mutated_specs(draw: st.DrawFn) -> str:
    lines = VALID.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "char", "value", "indent", "swap"]))
        if kind == "delete":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, lines[index])
        elif kind == "char" and lines[index]:
            at = draw(st.integers(0, len(lines[index]) - 1))
            char = draw(st.characters(codec="utf-8") | st.sampled_from(list(":-[]{}&*!|>'\"#%@`")))
            lines[index] = lines[index][:at] + char + lines[index][at + 1:]
        elif kind == "value" and ":" in lines[index]:
            key = lines[index].split(":", 1)[0]
            lines[index] = f"{key}: {draw(st.sampled_from(WRONG_VALUES))}"
        elif kind == "indent":
            lines[index] = " " * draw(st.integers(0, 6)) + lines[index].lstrip()
        elif kind == "swap" and len(lines) > 1:
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
    return "\n".join(lines) + "\n"


def json_values() -> st.SearchStrategy[Any]:
    scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
               | st.text(max_size=20) | st.sampled_from(["version", "name", "agents", "sleep 1"]))
    keys = st.sampled_from(["version", "name", "agents", "env", "command", "replicas",
                            "workdir", "tmux", "defaults", "a"]) | st.text(max_size=8)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(keys, inner, max_size=5), max_leaves=15)


@st.composite
def random_documents(draw: st.DrawFn) -> str | bytes:
    form = draw(st.sampled_from(["value", "top", "text", "bytes"]))
    if form == "value":
        return yaml.safe_dump(draw(json_values()), allow_unicode=True)
    if form == "top":
        document = {"version": draw(st.sampled_from([1, 2, "1", None])),
                    "name": draw(st.text(string.ascii_letters + "-_ .", max_size=12)),
                    "agents": draw(json_values())}
        return yaml.safe_dump(document, allow_unicode=True)
    if form == "text":
        return draw(st.text(alphabet=st.characters(codec="utf-8")
                            | st.sampled_from(list(":-\n []{}&*!|>#")), max_size=200))
    return draw(st.binary(max_size=200))


@pytest.fixture(autouse=True)
def fuzz_figures(request: pytest.FixtureRequest) -> Iterator[None]:
    """Function-scoped: runs once around all of a test's examples; records their count."""
    counts.update(examples=0, valid_seen=0)
    began = time.monotonic()
    yield
    if counts["examples"]:
        record_figures(f"fuzz[{request.node.name}]",
                       {**counts, "wall_s": round(time.monotonic() - began, 2)})


@pytest.fixture
def spec_path(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    yield tmp_path / "fuzz.yaml"
    assert_no_tmux()


@FUZZ_SETTINGS
@given(text=mutated_specs())
def test_mutated_specs(spec_path: pathlib.Path, text: str) -> None:
    counts["examples"] += 1
    check_spec(spec_path, text)


@FUZZ_SETTINGS
@given(text=random_documents())
def test_random_yaml_documents(spec_path: pathlib.Path, text: str | bytes) -> None:
    counts["examples"] += 1
    check_spec(spec_path, text)


def test_yaml_alias_bomb_is_refused_quickly(spec_path: pathlib.Path) -> None:
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    began = time.monotonic()
    check_spec(spec_path, "version: 1\nname: bomb\n" + "\n".join(bomb) + "\nagents: {}\n")
    assert time.monotonic() - began < 10


COMMANDS = ["validate", "schema", "plan", "up", "down", "status", "ls", "logs", "capture",
            "send", "broadcast"]
OPTIONS = ["--json", "--detailed-exitcode", "--no-prune", "--dry-run", "--wait", "--timeout",
           "0", "-1", "nan", "--name", "--tail", "--since", "10m", "yesterday", "--raw",
           "--lines", "--ansi", "--only", "a,b", "-L", "-S", "--help", "-h", "--version",
           "--", "-", "=", "x" * 300, "\x00", "a\nb", "é", "$HOME", "#{pane_id}", "../..", ";"]


@pytest.fixture
def cli_files(tmp_path: pathlib.Path) -> list[str]:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: BAD NAME\nagents: {a: {command: 1}}\n")
    (tmp_path / "dir.yaml").mkdir()
    return [str(bad), str(tmp_path / "missing.yaml"), str(tmp_path / "dir.yaml"), "/dev/null"]


@FUZZ_SETTINGS
@given(data=st.data())
def test_cli_arguments(cli_files: list[str], data: st.DataObject) -> None:
    counts["examples"] += 1
    words = st.sampled_from(COMMANDS) | st.sampled_from(OPTIONS) | st.sampled_from(cli_files) \
        | st.text(max_size=12).filter(lambda w: "\x00" not in w)
    args = data.draw(st.lists(words, max_size=6))
    if data.draw(st.booleans()):
        args = [data.draw(st.sampled_from(COMMANDS)), *args]
    if data.draw(st.booleans()):
        args = ["-L", SOCK, *args]
    result = invoke(*args, input=data.draw(st.sampled_from([None, "", "hello\n"])))
    assert_sane(result)
    assert_no_tmux()

