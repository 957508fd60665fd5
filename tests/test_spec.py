"""load_spec: the typed SwarmSpec it returns, its paths, env merging, defaults and errors."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from swarm_launch.desired import expand as desired
from swarm_launch.exceptions import SpecError
from swarm_launch.model import Readiness
from swarm_launch.spec import load_spec, schema, schema_text

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
DUMMY_KEYS = {"ANTHROPIC_API_KEY": "dummy", "OPENAI_API_KEY": "dummy"}


def spec_file(tmp_path: pathlib.Path, body: str, name: str = "swarm.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return str(path)


def issues_of(path: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path, environ or {})
    return [str(issue).removeprefix(f"{path}:") for issue in caught.value.issues]


MINIMAL = """\
    version: 1
    name: team
    agents:
      a:
        command: cat
"""


def test_minimal_spec_gets_every_default(tmp_path: pathlib.Path) -> None:
    spec = load_spec(spec_file(tmp_path, MINIMAL), {})
    agent = spec.agents["a"]
    assert (spec.name, spec.session_name, spec.workdir) == ("team", "swarm-team", str(tmp_path))
    assert (agent.command, agent.workdir, agent.replicas, agent.replicated) == (
        "cat", str(tmp_path), 1, False)
    assert agent.ready is None and agent.prompt is None and agent.depends_on == ()


def test_path_is_absolute_and_hash_is_of_the_raw_bytes(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_file(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)
    spec = load_spec("swarm.yaml", {})
    assert spec.path == str(tmp_path / "swarm.yaml")
    assert spec.spec_hash == hashlib.sha256((tmp_path / "swarm.yaml").read_bytes()).hexdigest()


def test_workdirs_are_relative_to_the_spec_then_the_swarm(tmp_path: pathlib.Path) -> None:
    spec = load_spec(spec_file(tmp_path, """\
        version: 1
        name: team
        workdir: ./work
        agents:
          a: {command: cat, workdir: sub/../a}
          b: {command: cat, workdir: /abs}
          c: {command: cat}
    """), {})
    assert spec.workdir == str(tmp_path / "work")
    assert [spec.agents[i].workdir for i in "abc"] == [
        str(tmp_path / "work" / "a"), "/abs", str(tmp_path / "work")]


def test_workdirs_do_not_depend_on_how_the_spec_path_is_spelled(
    tmp_path: pathlib.Path
) -> None:
    """Through a symlinked checkout, the same agents hash the same: nothing restarts."""
    real = tmp_path / "real"
    (real / "work").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    body = "version: 1\nname: team\nworkdir: work\nagents:\n  a: {command: cat}\n"
    spec_file(real, body)
    direct = load_spec(str(real / "swarm.yaml"), {})
    linked = load_spec(str(tmp_path / "link" / "swarm.yaml"), {})
    assert linked.agents["a"].workdir == direct.agents["a"].workdir == str(real / "work")
    assert desired(linked)["a"].config_hash == desired(direct)["a"].config_hash


def test_agent_env_overrides_swarm_env_after_interpolation(tmp_path: pathlib.Path) -> None:
    spec = load_spec(spec_file(tmp_path, """\
        version: 1
        name: team
        env: {LEVEL: info, KEY: "${KEY}"}
        agents:
          a:
            command: cat
            env: {LEVEL: debug, ROLE: "${ROLE:-coder}"}
    """), {"KEY": "k"})
    assert spec.env == {"LEVEL": "info", "KEY": "k"}
    assert spec.agents["a"].env == {"LEVEL": "debug", "KEY": "k", "ROLE": "coder"}


def test_commands_are_never_interpolated(tmp_path: pathlib.Path) -> None:
    spec = load_spec(spec_file(tmp_path, """\
        version: 1
        name: team
        agents:
          a: {command: 'echo $ROLE ${UNSET}'}
          b: {command: [echo, '${UNSET}']}
    """), {})
    assert spec.agents["a"].command == "echo $ROLE ${UNSET}"
    assert spec.agents["b"].command == ("echo", "${UNSET}")


def test_defaults_apply_field_by_field(tmp_path: pathlib.Path) -> None:
    spec = load_spec(spec_file(tmp_path, """\
        version: 1
        name: team
        defaults:
          restart: on-failure
          max_restarts: 2
          backoff: {initial_s: 3, max_s: 30}
          send: {submit_key: C-m}
          stop: {signal: INT}
        agents:
          a:
            command: cat
            backoff: {factor: 4}
            stop: {timeout_s: 1}
          b:
            command: cat
            restart: never
    """), {})
    a, b = spec.agents["a"], spec.agents["b"]
    assert (a.restart.mode, a.restart.max_restarts) == ("on-failure", 2)
    assert (a.restart.backoff.initial_s, a.restart.backoff.max_s,
            a.restart.backoff.factor) == (3.0, 30.0, 4.0)
    assert (a.stop.signal, a.stop.timeout_s) == ("INT", 1.0)
    assert a.send.submit_key == "C-m"
    assert b.restart.mode == "never"


def test_every_agent_field_maps_onto_the_model(tmp_path: pathlib.Path) -> None:
    (tmp_path / "p.md").write_text("Plan the work.\nThen do it.\n", encoding="utf-8")
    spec = load_spec(spec_file(tmp_path, """\
        version: 1
        name: team
        tmux: {socket_path: sock}
        agents:
          base: {command: cat}
          a:
            command: [python3, -u]
            replicas: 3
            restart: always
            reset_after_s: 5
            ready: {pattern: "ready>", timeout_s: 7}
            depends_on: [base]
            prompt_file: p.md
            send: {submit_key: Enter, submit_delay_ms: 0}
            logs: {max_bytes: 4096, keep: 0}
            stop: {signal: KILL, timeout_s: 0}
    """), {})
    a = spec.agents["a"]
    assert spec.tmux.socket_path == str(tmp_path / "sock")
    assert (a.replicas, a.replicated, a.restart.mode, a.restart.reset_after_s) == (
        3, True, "always", 5.0)
    assert a.ready == Readiness("ready>", 7.0)
    # The file's final newline is not one more (empty) submission; the others stay.
    assert (a.depends_on, a.prompt) == (("base",), "Plan the work.\nThen do it.")
    assert (a.send.submit_delay_ms, a.logs.max_bytes, a.logs.keep, a.stop.signal) == (
        0, 4096, 0, "KILL")


def test_agents_keep_file_order(tmp_path: pathlib.Path) -> None:
    spec = load_spec(spec_file(tmp_path, """\
        version: 1
        name: team
        agents: {zeta: {command: a}, alpha: {command: b}, mid: {command: c}}
    """), {})
    assert list(spec.agents) == ["zeta", "alpha", "mid"]


def test_every_issue_is_reported_sorted_by_line(tmp_path: pathlib.Path) -> None:
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        agents:
          a:
            command: cat
            env: {N: 1}
          b:
            comand: cat
            depends_on: [ghost]
    """)
    assert issues_of(path) == [
        "6:14: $.agents.a.env.N: 1 is not of type 'string'; quote it",
        "8:5: $.agents.b: 'command' is a required property",
        "8:5: $.agents.b.comand: unknown key 'comand'; did you mean 'command'? expected one of: "
        "backoff, command, depends_on, env, logs, max_restarts, prompt, prompt_file, ready, "
        "replicas, reset_after_s, restart, send, stop, workdir",
        "9:18: $.agents.b.depends_on[0]: depends on 'ghost', which is not an agent of this spec",
    ]


def test_a_whole_float_is_not_an_integer(tmp_path: pathlib.Path) -> None:
    """JSON Schema counts 2.0 as an integer; a float count broke range(), the log
    writer's argv and tmux options."""
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        defaults: {max_restarts: 3.0, send: {submit_delay_ms: 150.0}}
        agents:
          a:
            command: cat
            replicas: 2.0
            logs: {keep: 3.0, max_bytes: 4096.0}
    """)
    assert issues_of(path) == [
        "3:26: $.defaults.max_restarts: an integer, not 3.0",
        "3:55: $.defaults.send.submit_delay_ms: an integer, not 150.0",
        "7:15: $.agents.a.replicas: an integer, not 2.0",
        "8:18: $.agents.a.logs.keep: an integer, not 3.0",
        "8:34: $.agents.a.logs.max_bytes: an integer, not 4096.0",
    ]


def test_depending_on_a_replica_id_names_the_entry_to_use(tmp_path: pathlib.Path) -> None:
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        agents:
          b: {command: cat, replicas: 2}
          d: {command: cat, depends_on: [b-0]}
    """)
    assert issues_of(path) == [
        "5:34: $.agents.d.depends_on[0]: depends on 'b-0', which is not an agent of this "
        "spec; depends_on names spec entries: 'b' waits for all its replicas"]


def test_error_messages_never_echo_a_variable_value(tmp_path: pathlib.Path) -> None:
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        env: {A: "${SECRET}$NOPE", B: "${EMPTY:?needed}"}
        agents: {a: {command: cat}}
    """)
    report = "\n".join(issues_of(path, {"SECRET": "hunter2", "EMPTY": ""}))
    assert "hunter2" not in report
    assert "${EMPTY} is empty: needed" in report


def test_dotenv_files_are_never_read(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / ".env").write_text("API_KEY=from-cwd-dotenv\n", encoding="utf-8")
    (tmp_path / ".env").write_text("API_KEY=from-spec-dotenv\n", encoding="utf-8")
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        env: {API_KEY: "${API_KEY}"}
        agents: {a: {command: cat}}
    """)
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("API_KEY", raising=False)
    assert issues_of(path, dict(os.environ)) == [
        "3:16: $.env.API_KEY: ${API_KEY} is not set in the environment "
        "(export it before running swarm-launch)"]
    assert "API_KEY" not in os.environ


def test_environ_defaults_to_the_process_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARM_TEST_ROLE", "from-env")
    spec = load_spec(spec_file(tmp_path, """\
        version: 1
        name: team
        env: {ROLE: "${SWARM_TEST_ROLE}"}
        agents: {}
    """))
    assert spec.env == {"ROLE": "from-env"}


def test_duplicate_keys_and_schema_errors_are_reported_together(tmp_path: pathlib.Path) -> None:
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        agents:
          a: {command: cat, command: dog, replicas: -1}
    """)
    assert issues_of(path) == [
        "4:21: $.agents.a.command: duplicate key 'command' (first defined at line 4)",
        "4:45: $.agents.a.replicas: -1 is less than the minimum of 0",
    ]


def test_unreadable_values_and_unknown_tags_are_located_with_the_other_errors(
    tmp_path: pathlib.Path
) -> None:
    """They were one error at `1:1 $` (or `$` at the first tag), hiding every other."""
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        env: {A: 2024-02-30, B: !custom x}
        agents:
          a:
            command: !!python/object:os.system [echo]
            env: {N: 1}
    """)
    assert issues_of(path) == [
        "3:10: $.env.A: '2024-02-30' cannot be read (day is out of range for month); "
        "quote it to make it text",
        "3:25: $.env.B: the tag !custom is not supported (specs are plain YAML); remove it",
        "6:14: $.agents.a.command: the tag !!python/object:os.system is not supported "
        "(specs are plain YAML); remove it",
        "7:14: $.agents.a.env.N: 1 is not of type 'string'; quote it",
    ]


def test_values_are_shown_as_written_in_yaml_not_as_python_reprs(
    tmp_path: pathlib.Path
) -> None:
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        env: {A: 2024-01-01, B: yes}
        agents:
          a: {command: cat, restart: on, env: !!set {a, b}}
    """)
    assert issues_of(path) == [
        "3:10: $.env.A: 2024-01-01 is not of type 'string'; quote it",
        "3:25: $.env.B: yes is not of type 'string' (YAML reads yes/no/on/off as booleans); "
        "quote it",
        "5:30: $.agents.a.restart: on is not one of ['never', 'on-failure', 'always'] "
        "(YAML reads yes/no/on/off as booleans)",
        "5:39: $.agents.a.env: a set is not of type 'object'",
    ]


def test_anchors_and_merge_keys_are_allowed(tmp_path: pathlib.Path) -> None:
    spec = load_spec(spec_file(tmp_path, """\
        version: 1
        name: team
        agents:
          a: &base {command: cat, env: {ROLE: x}}
          b:
            <<: *base
            workdir: b
    """), {})
    assert spec.agents["b"].command == "cat"
    assert spec.agents["b"].env == {"ROLE": "x"}


def test_utf8_bom_is_accepted(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent(MINIMAL).encode())
    assert load_spec(str(path), {}).name == "team"


def test_cycle_through_three_agents_is_spelled_out_once(tmp_path: pathlib.Path) -> None:
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        agents:
          x: {command: cat}
          c: {command: cat, depends_on: [a]}
          b: {command: cat, depends_on: [c, x]}
          a: {command: cat, depends_on: [b]}
    """)
    assert issues_of(path) == [
        "5:33: $.agents.c.depends_on: dependency cycle: c -> a -> b -> c"]


def test_declared_single_replica_collides_with_its_suffixed_id(tmp_path: pathlib.Path) -> None:
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        agents:
          w-0: {command: cat}
          w: {command: cat, replicas: 1}
    """)
    assert issues_of(path) == [
        "5:31: $.agents.w.replicas: replica id 'w-0' collides with agent 'w-0'; "
        "rename one of them"]


def test_a_huge_replica_count_is_refused_without_listing_its_ids(tmp_path: pathlib.Path) -> None:
    """A billion replicas took 24 GB to check for colliding ids: the checks compute
    collisions, in a process that could not hold such a list."""
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        agents:
          a: {command: cat, replicas: 1000000000}
          a-999999999: {command: cat}
    """)
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "from swarm_launch.cli import main\n"
            f"sys.argv = ['swarm-launch', 'validate', {path!r}]\n"
            "main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[:2] == [
        f"{path}:4:31: $.agents.a.replicas: 1000000000 is greater than the maximum of 1000",
        f"{path}:4:31: $.agents.a.replicas: replica id 'a-999999999' collides with agent "
        "'a-999999999'; rename one of them"]


@pytest.mark.parametrize(("field", "value"), [
    ("max_restarts", "1000001"), ("reset_after_s", "604801"), ("backoff: {factor", "101}"),
    ("backoff: {max_s", "604801}"), ("ready: {pattern: x, timeout_s", "604801}"),
    ("stop: {timeout_s", "604801}"), ("send: {submit_delay_ms", "60001}"),
    ("logs: {max_bytes", "1099511627777}"),
])
def test_counts_sizes_and_durations_have_a_maximum(
    tmp_path: pathlib.Path, field: str, value: str
) -> None:
    path = spec_file(tmp_path, f"version: 1\nname: t\nagents:\n  a:\n    command: cat\n"
                               f"    {field}: {value}\n")
    [issue] = issues_of(path)
    assert f"{value.rstrip('}')} is greater than the maximum of" in issue


def test_numbers_are_finite(tmp_path: pathlib.Path) -> None:
    """NaN passes every minimum and maximum; .inf seconds of backoff never restarted
    the agent and overflowed `status`."""
    path = spec_file(tmp_path, """\
        version: 1
        name: team
        agents:
          a:
            command: cat
            backoff: {initial_s: .nan, max_s: .inf, factor: .inf}
            reset_after_s: -.inf
            ready: {pattern: x, timeout_s: .NaN}
            stop: {timeout_s: .nan}
    """)
    assert issues_of(path) == [
        "6:26: $.agents.a.backoff.initial_s: a finite number, not .nan",
        "6:39: $.agents.a.backoff.max_s: a finite number, not .inf",
        "6:53: $.agents.a.backoff.factor: a finite number, not .inf",
        "7:20: $.agents.a.reset_after_s: a finite number, not -.inf",
        "8:36: $.agents.a.ready.timeout_s: a finite number, not .nan",
        "9:23: $.agents.a.stop.timeout_s: a finite number, not .nan",
    ]


def test_a_pattern_anchors_the_end_of_the_text_not_a_final_newline(
    tmp_path: pathlib.Path
) -> None:
    """Python's `$` also matches before a final newline: such ids failed in tmux, and
    such env names never reached the agent."""
    path = spec_file(tmp_path, r"""
        version: 1
        name: "nl\n"
        env: {"FOO\n": bar}
        agents:
          "a\n": {command: cat}
          b: {command: cat, depends_on: ["a\n"]}
    """)
    ids = "'^[a-z0-9][a-z0-9_-]{0,62}$'"
    assert issues_of(path) == [
        f"3:7: $.name: 'nl\\n' does not match {ids}",
        "4:7: $.env['FOO\\n']: 'FOO\\n' does not match '^[A-Za-z_][A-Za-z0-9_]*$'",
        f"6:3: $.agents['a\\n']: 'a\\n' does not match {ids}",
        f"7:34: $.agents.b.depends_on[0]: 'a\\n' does not match {ids}",
    ]


def test_schema_is_draft_2020_12_with_descriptions_everywhere() -> None:
    import jsonschema

    document = schema()
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema_text().startswith("{")
    assert list(_undescribed(document)) == []


def _undescribed(node: object, where: str = "$") -> list[str]:
    missing: list[str] = []
    if isinstance(node, dict):
        for name, prop in node.get("properties", {}).items():
            if "description" not in prop and "$ref" not in prop:
                missing.append(f"{where}.{name}")
        if node.get("type") == "object" and "additionalProperties" not in node:
            missing.append(f"{where} (additionalProperties)")
        for key, child in node.items():
            missing += _undescribed(child, f"{where}.{key}")
    return missing


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
@pytest.mark.parametrize("environ", [{}, DUMMY_KEYS], ids=["no-keys", "dummy-keys"])
def test_every_example_is_valid(example: pathlib.Path, environ: dict[str, str]) -> None:
    spec = load_spec(str(example), environ)
    assert spec.agents


def test_examples_include_a_keyless_demo() -> None:
    demo = load_spec(str(EXAMPLES / "demo.yaml"), {})
    assert demo.name == "demo"
    assert {"echo", "ticker", "crasher"} <= set(demo.agents)
    assert demo.agents["crasher"].restart.mode == "on-failure"
    assert demo.agents["crasher"].restart.max_restarts == 3


def test_real_agent_examples_pass_keys_from_the_environment() -> None:
    spec = load_spec(str(EXAMPLES / "claude-code.yaml"), {"ANTHROPIC_API_KEY": "sk-test"})
    assert spec.agents["planner"].env["ANTHROPIC_API_KEY"] == "sk-test"


CACHED = """\
version: 1
name: cached
env:
  TOKEN_NAME: ${NEEDED}
defaults:
  restart: on-failure
  backoff: {initial_s: 0.5}
agents:
  a:
    command: [sh, -c, 'echo "$TOKEN_NAME"']
    replicas: 2
    prompt_file: prompt.txt
    backoff: {factor: 3}
  b:
    command: cat
    depends_on: [a]
    ready: {pattern: '^ready \\d+$', timeout_s: 2.5}
"""


def _cached_spec(tmp_path: pathlib.Path) -> tuple[str, str]:
    (tmp_path / "prompt.txt").write_text("hello\r\nthere\n")
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    return spec_file(tmp_path, CACHED), str(cache)


def test_a_spec_seen_valid_loads_the_same_from_the_parse_cache(tmp_path: pathlib.Path) -> None:
    path, cache = _cached_spec(tmp_path)
    environ = {"NEEDED": "x"}
    uncached = load_spec(path, environ)
    first = load_spec(path, environ, valid_cache=cache)
    assert len(os.listdir(cache)) == 1  # remembered...
    assert load_spec(path, environ, valid_cache=cache) == first == uncached  # ...and read
    (tmp_path / "prompt.txt").write_text("changed")  # not part of the file's bytes:
    assert load_spec(path, environ, valid_cache=cache).agents["a"].prompt == "changed"


def test_a_cached_spec_is_read_without_yaml_or_jsonschema(tmp_path: pathlib.Path) -> None:
    path, cache = _cached_spec(tmp_path)
    code = ("import sys\nfrom swarm_launch.spec import load_spec\n"
            f"spec = load_spec({path!r}, {{'NEEDED': 'x'}}, valid_cache={cache!r})\n"
            "print(sorted(spec.agents), [m for m in ('yaml', 'jsonschema') if m in sys.modules])")

    def run() -> str:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, timeout=60).stdout.strip()

    assert run() == "['a', 'b'] ['yaml', 'jsonschema']"  # first sight: parsed, validated
    assert run() == "['a', 'b'] []"


@pytest.mark.parametrize("in_the_way", ["file", "open_dir"])
def test_a_cache_that_cannot_be_had_costs_the_command_nothing(
        tmp_path: pathlib.Path, isolated_environment: pathlib.Path, in_the_way: str) -> None:
    """A file where the cache directory goes, or one open to others: the spec is read the
    long way (it blocked every up: 'exists and is not a directory')."""
    from tests.helpers import invoke

    isolated_environment.mkdir(mode=0o700)
    cache = isolated_environment / ".valid-specs"
    if in_the_way == "file":
        cache.write_text("")
    else:
        cache.mkdir(mode=0o777)
        cache.chmod(0o777)
    path = spec_file(tmp_path, "version: 1\nname: c\nagents:\n  a: {command: sleep 1}\n")
    result = invoke("-L", f"none-{os.getpid()}", "plan", path)
    assert (result.code, result.err) == (0, ""), result.err
    assert "1 to create" in result.out
    assert in_the_way == "file" or not os.listdir(cache)  # not written into, either


def test_an_issue_found_in_cached_data_is_located_as_in_the_file(tmp_path: pathlib.Path) -> None:
    """Semantic checks depend on the environment: a variable unset since the file was
    remembered is an error at its line and column, as without the cache."""
    path, cache = _cached_spec(tmp_path)
    load_spec(path, {"NEEDED": "x"}, valid_cache=cache)
    with pytest.raises(SpecError) as cached:
        load_spec(path, {}, valid_cache=cache)
    with pytest.raises(SpecError) as uncached:
        load_spec(path, {})
    assert cached.value.report() == uncached.value.report()
    assert f"{path}:4:15: $.env.TOKEN_NAME: " in cached.value.report()


@pytest.mark.parametrize("damage", ["{", "{\"name\": ", "[1, 2]", "\x00garbage", "{}",
                                    '{"agents": {"a": {"command": 5}}}'])
def test_a_damaged_cache_entry_is_read_the_long_way_and_rewritten(
    tmp_path: pathlib.Path, damage: str
) -> None:
    path, cache = _cached_spec(tmp_path)
    first = load_spec(path, {"NEEDED": "x"}, valid_cache=cache)
    [entry] = os.listdir(cache)
    pathlib.Path(cache, entry).write_text(damage)
    assert load_spec(path, {"NEEDED": "x"}, valid_cache=cache) == first
    assert json.loads(pathlib.Path(cache, entry).read_text())["name"] == "cached"



@pytest.mark.parametrize("value", ["sk-pasted-4f9a", "'${KEY:-sk-default-4f9a}'", "'8080'",
                                   "'Bearer ${KEY}'"])
def test_parsed_data_holding_an_env_value_is_never_written_to_the_cache(
    tmp_path: pathlib.Path, value: str
) -> None:
    """Only "valid" is remembered then: the schema is not checked again, the YAML is read."""
    path, cache = _cached_spec(tmp_path)
    pathlib.Path(path).write_text(CACHED.replace("${NEEDED}", "${NEEDED}\n  LITERAL: " + value))
    first = load_spec(path, {"NEEDED": "x", "KEY": "k"}, valid_cache=cache)
    [entry] = os.listdir(cache)
    assert pathlib.Path(cache, entry).read_bytes() == b""
    assert load_spec(path, {"NEEDED": "x", "KEY": "k"}, valid_cache=cache) == first
    code = ("import sys\nfrom swarm_launch.spec import load_spec\n"
            f"load_spec({path!r}, {{'NEEDED': 'x', 'KEY': 'k'}}, valid_cache={cache!r})\n"
            "print([m for m in ('yaml', 'jsonschema') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "['yaml']"


def test_a_spec_read_from_a_pipe_is_read_once(tmp_path: pathlib.Path) -> None:
    """`up <(cat spec.yaml)`, `up /dev/stdin`: a pipe yields its bytes once; the cache
    lookup and the parse must share them."""
    path, cache = _cached_spec(tmp_path)
    # A prompt_file is relative to the spec's directory, which a pipe's is not.
    body = pathlib.Path(path).read_bytes().replace(b"    prompt_file: prompt.txt\n", b"")
    for _ in range(2):  # not remembered yet, then remembered
        read_end, write_end = os.pipe()
        os.write(write_end, body)
        os.close(write_end)
        try:
            spec = load_spec(f"/dev/fd/{read_end}", {"NEEDED": "x"}, valid_cache=cache)
        finally:
            os.close(read_end)
        assert sorted(spec.agents) == ["a", "b"]


def test_relative_paths_of_a_spec_from_a_stream_are_relative_to_the_current_directory(
    tmp_path: pathlib.Path
) -> None:
    """`up /dev/stdin < spec.yaml` ran its agents in /dev; `plan <(cat spec.yaml)` run from
    the spec's directory must see the workdirs a file-based `up` gave them."""
    elsewhere = tmp_path / "specs"
    elsewhere.mkdir()
    path = spec_file(elsewhere, MINIMAL)
    from_file = load_spec(path, {})
    code = ("from swarm_launch.spec import load_spec\n"
            "print(load_spec('/dev/stdin', {}).agents['a'].workdir)")
    with open(path, "rb") as redirected:
        done = subprocess.run([sys.executable, "-c", code], stdin=redirected, cwd=elsewhere,
                              capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == from_file.agents["a"].workdir == str(elsewhere)
    read_end, write_end = os.pipe()
    os.write(write_end, pathlib.Path(path).read_bytes())
    os.close(write_end)
    try:
        piped = load_spec(f"/dev/fd/{read_end}", {})
    finally:
        os.close(read_end)
    assert piped.workdir == os.getcwd()



def test_a_regular_spec_file_under_dev_is_relative_to_its_directory(
    tmp_path: pathlib.Path
) -> None:
    """/dev/shm/x/s.yaml is a file like any other: its workdir `.` was the current
    directory, because the path began with /dev/."""
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm")
    shm = tempfile.mkdtemp(dir="/dev/shm")
    try:
        path = spec_file(pathlib.Path(shm), MINIMAL)
        assert load_spec(path, {}).agents["a"].workdir == shm
    finally:
        shutil.rmtree(shm)


def test_a_spec_redirected_to_dev_stdin_is_relative_to_the_current_directory(
    tmp_path: pathlib.Path
) -> None:
    """A redirected file is named /dev/stdin and stats as a regular file: the path alone
    says it is a stream, whose paths are the current directory's, not the file's."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "cwd").mkdir()
    path = spec_file(tmp_path / "specs", MINIMAL)
    code = ("from swarm_launch.spec import load_spec\n"
            "print(load_spec('/dev/stdin', {}).agents['a'].workdir)")
    with open(path, "rb") as redirected:
        done = subprocess.run([sys.executable, "-c", code], stdin=redirected,
                              cwd=tmp_path / "cwd", capture_output=True, text=True,
                              check=True, timeout=60)
    assert done.stdout.strip() == str(tmp_path / "cwd")
