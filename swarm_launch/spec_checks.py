"""Checks of a parsed spec: JSON Schema errors and semantic ones, located in the YAML.

Schema errors come from `iter_errors` (all of them; `best_match` inside oneOf/anyOf).
Semantic checks run on the raw data defensively, so a file with schema errors
still gets its unset variables, unknown dependencies and cycles reported too.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from swarm_launch.exceptions import SpecIssue
from swarm_launch.interpolate import InterpolationError, interpolate
from swarm_launch.model import MAX_SPEC_BYTES, message_text

if TYPE_CHECKING:
    import yaml
    from jsonschema.exceptions import ValidationError

    from swarm_launch.spec_yaml import PathPart

MAX_ID_LENGTH = 63


@dataclass
class Context:
    """What checks need to locate issues and resolve paths; collects prompt files read."""

    file: str
    root: yaml.Node | None  # None: the data came from the parse cache; `raw` is parsed
    spec_dir: str              # only if an issue must be located
    environ: Mapping[str, str]
    prompts: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""
    # `validate` says a workdir is missing, as `up` would for its agents; commands about a
    # running swarm (`down`, `status`) must work after its directory is gone.
    check_workdirs: bool = False

    def issue(self, parts: Sequence[PathPart], message: str, *, at_key: bool = False) -> SpecIssue:
        from swarm_launch.spec_yaml import issue_at, node_at, parse_document

        if self.root is None:  # bytes that parsed before: they parse the same again
            self.root = parse_document(self.raw, self.file).root
        node, key = node_at(self.root, parts)
        target = key if at_key and key is not None else node
        return issue_at(self.file, target.start_mark, parts, message)


def schema_issues(context: Context, data: Any, schema: dict[str, Any]) -> list[SpecIssue]:
    """Every schema violation, located; unknown keys pointed at the key itself."""
    import jsonschema  # deferred: slow to import, and only validation needs it
    from jsonschema.exceptions import best_match

    validator = _strict_validator(jsonschema)(schema)
    issues: list[SpecIssue] = []
    for error in validator.iter_errors(data):
        best = best_match([error]) or error
        issues.extend(_located(context, best))
    return issues


def _strict_validator(jsonschema: Any) -> Any:
    """Draft 2020-12 where an integer is an int: JSON Schema counts 2.0 as one, but a
    float count reaches `range`, the log writer's argv and tmux options, which refuse it.
    And a number is finite: YAML's .nan passes every minimum and maximum (comparisons
    with NaN are false), and an agent backing off for .inf seconds never restarts. An int
    always is (and too large for a float: its maximum says so, located)."""
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({
        "integer": lambda _checker, value: isinstance(value, int) and not isinstance(value, bool),
        "number": lambda _checker, value: (isinstance(value, (int, float))
                                           and not isinstance(value, bool)
                                           and (isinstance(value, int)
                                                or math.isfinite(value))),
    })
    return jsonschema.validators.extend(base, type_checker=checker,
                                        validators={"pattern": _pattern_to_the_end})


def _pattern_to_the_end(validator: Any, pattern: str, instance: Any,
                        _schema: Any) -> Iterator[ValidationError]:
    """`pattern` with JSON Schema's (ECMA-262's) `$`, the end of the text: Python's also
    matches before a final newline, and `name: "nl\\n"` passed, to fail in tmux."""
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "string"):
        return
    anchored = re.sub(r"(?<!\\)\$$", r"\\Z", pattern)
    if not re.search(anchored, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _located(context: Context, error: ValidationError) -> Iterator[SpecIssue]:
    parts = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(schema.get("properties", {}))
        for key in error.instance:
            if key not in known:
                yield context.issue([*parts, key], _unknown_key(key, known), at_key=True)
    elif "propertyNames" in error.absolute_schema_path:
        yield context.issue([*parts, str(error.instance)], error.message, at_key=True)
    elif "x-error" in schema:
        yield context.issue([*parts, schema["x-key"]], schema["x-error"], at_key=True)
    elif error.validator == "type" and error.instance is None and _written(context, parts) == "~":
        yield context.issue(parts, "~ is null in YAML, not the home directory: quote it ('~')")
    else:
        yield context.issue(parts, _message(error, _written(context, parts)))


def _written(context: Context, parts: Sequence[PathPart]) -> str | None:
    """The text of the scalar at `parts`, as written in the file."""
    from swarm_launch.spec_yaml import node_at, parse_document

    if context.root is None:
        context.root = parse_document(context.raw, context.file).root
    node, _ = node_at(context.root, parts)
    value = getattr(node, "value", None)
    return value if isinstance(value, str) else None


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r}; {hint}expected one of: {', '.join(known)}"


def _message(error: ValidationError, written: str | None = None) -> str:
    """jsonschema's message, a value shown as the YAML text it was read from (`2024-01-01`,
    `yes`), not as its Python repr (`datetime.date(2024, 1, 1)`, `True`)."""
    instance = error.instance
    shown = repr(instance)
    message = error.message
    if written is not None and not isinstance(instance, str) and message.startswith(shown):
        shown = written
        message = written + message[len(repr(instance)):]
    if error.validator == "type" and isinstance(instance, (dict, list, set)):
        kind = {dict: "a mapping", list: "a list", set: "a set"}[type(instance)]
        expected = error.validator_value
        names = expected if isinstance(expected, list) else [expected]
        return f"{kind} is not of type {', '.join(repr(n) for n in names)}"
    if error.validator == "type" and instance is None:
        return f"an empty value (null) is not of type {error.validator_value!r}"
    if error.validator in ("type", "enum") and isinstance(instance, bool):
        quote = "; quote it" if error.validator == "type" else ""
        return f"{message} (YAML reads yes/no/on/off as booleans){quote}"
    if error.validator == "type" and error.validator_value == "string":
        return f"{message}; quote it"
    if error.validator == "type" and error.validator_value in ("integer", "number") \
            and isinstance(instance, float):
        kind = "an integer" if error.validator_value == "integer" else "a finite number"
        return f"{kind}, not {_yaml_float(instance)}"
    if error.validator == "const":
        return f"{shown} is not supported; use {error.validator_value!r}"
    if error.validator == "minLength" and list(error.path)[-2:] == ["command", 0]:
        return "the program name (the list's first item) is empty"
    if error.validator == "pattern" and list(error.path)[-1:] == ["submit_key"]:
        return (f"{instance!r} is not a tmux key name; use one such as Enter, Tab, C-m, "
                "M-Enter or a single character, with C-, M- or S- modifiers")
    return message


def _yaml_float(value: float) -> str:
    """A float as YAML writes it: .nan, .inf, -.inf, 2.0."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return repr(value)


def semantic_issues(context: Context, data: Any) -> list[SpecIssue]:
    """What the schema cannot express: interpolation, ids, dependencies, regexes, prompt files."""
    if not isinstance(data, dict):
        return []
    issues = list(_interpolation_issues(context, data, []))
    issues.extend(_uninterpolated_issues(context, data))
    agents = _agents(data)
    if context.check_workdirs:
        issues.extend(_workdir_issues(context, data, agents))
    for agent_id, body in agents.items():
        issues.extend(_interpolation_issues(context, body, ["agents", agent_id]))
        issues.extend(_pattern_issues(context, agent_id, body))
        issues.extend(_prompt_file_issues(context, agent_id, body))
    issues.extend(_replica_issues(context, agents))
    issues.extend(_dependency_issues(context, agents))
    return issues


def _agents(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    agents = data.get("agents")
    if not isinstance(agents, dict):
        return {}
    return {key: body for key, body in agents.items() if isinstance(body, dict)}


def _interpolation_issues(context: Context, body: dict[str, Any],
                          parts: list[PathPart]) -> Iterator[SpecIssue]:
    env = body.get("env")
    targets: list[tuple[list[PathPart], Any]] = [([*parts, "workdir"], body.get("workdir"))]
    if isinstance(env, dict):
        targets += [([*parts, "env", key], value) for key, value in env.items()]
    for where, value in targets:
        if isinstance(value, str):
            try:
                interpolate(value, context.environ)
            except InterpolationError as exc:
                yield context.issue(where, str(exc))


def _uninterpolated_issues(context: Context, data: dict[str, Any]) -> Iterator[SpecIssue]:
    """The tmux socket is not interpolated: a `${VAR}` there was a literal socket name."""
    tmux = data.get("tmux")
    for key in ("socket_name", "socket_path"):
        value = tmux.get(key) if isinstance(tmux, dict) else None
        if isinstance(value, str) and "${" in value:
            yield context.issue(["tmux", key], f"tmux.{key} is not interpolated (only env "
                                               "values and workdirs are); write it out")


def _workdir_issues(context: Context, data: dict[str, Any],
                    agents: dict[str, dict[str, Any]]) -> Iterator[SpecIssue]:
    """Each workdir given must be a directory (`up` would fail the agents there)."""
    swarm_dir = _resolved(context, context.spec_dir, data.get("workdir"))
    if swarm_dir is None:
        return
    if "workdir" in data and not os.path.isdir(swarm_dir):
        yield context.issue(["workdir"], _not_a_directory(swarm_dir, "the spec file's directory"))
        return
    for agent_id, body in agents.items():
        agent_dir = _resolved(context, swarm_dir, body.get("workdir"))
        if agent_dir is not None and "workdir" in body and not os.path.isdir(agent_dir):
            yield context.issue(["agents", agent_id, "workdir"],
                                _not_a_directory(agent_dir, "the swarm's workdir"))


def _resolved(context: Context, base: str, workdir: Any) -> str | None:
    """A workdir as `up` resolves it; None if it cannot be (reported elsewhere)."""
    if workdir is None:
        return base
    if not isinstance(workdir, str):
        return None
    try:
        text = interpolate(workdir, context.environ)
    except InterpolationError:
        return None
    return os.path.normpath(os.path.join(base, os.path.expanduser(text)))


def _not_a_directory(path: str, relative_to: str) -> str:
    what = "is not a directory" if os.path.exists(path) else "does not exist"
    return f"workdir {path} {what} (a relative workdir is relative to {relative_to})"


def _pattern_issues(context: Context, agent_id: str, body: dict[str, Any]) -> Iterator[SpecIssue]:
    ready = body.get("ready")
    pattern = ready.get("pattern") if isinstance(ready, dict) else None
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as exc:
            yield context.issue(["agents", agent_id, "ready", "pattern"],
                                f"not a valid regular expression: {exc.msg} "
                                f"(at position {exc.pos})")


def _prompt_file_issues(context: Context, agent_id: str,
                        body: dict[str, Any]) -> Iterator[SpecIssue]:
    name = body.get("prompt_file")
    if not isinstance(name, str) or not name:
        return
    path = os.path.normpath(os.path.join(context.spec_dir, os.path.expanduser(name)))
    problem = _read_prompt(path, context.prompts, agent_id)
    if problem:
        yield context.issue(["agents", agent_id, "prompt_file"],
                            f"prompt file {name!r} {problem}")


def _read_prompt(path: str, prompts: dict[str, str], agent_id: str) -> str | None:
    """Read `path` into `prompts`; or say what is wrong with it."""
    if not os.path.isfile(path):
        what = "is not a file" if os.path.exists(path) else "does not exist"
        return f"{what} (prompt_file is relative to the spec file's directory)"
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if len(raw) > MAX_SPEC_BYTES:
        return f"is larger than {MAX_SPEC_BYTES // 1024} KiB"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    prompts[agent_id] = message_text(text)  # as `send` reads stdin
    return None


def _replica_count(body: dict[str, Any]) -> int | None:
    """How many replicas a spec entry runs, named `{id}-{i}`; None for a plain agent."""
    if "replicas" not in body:
        return None
    replicas = body["replicas"]
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        return 1  # the schema reports it; the ids are checked as for one replica
    return replicas


def _entry_of_replica(expanded: str, agents: dict[str, dict[str, Any]]) -> str | None:
    """The replicated entry one of whose ids is `expanded`, computed rather than listed
    (a million replicas would be a million strings). A suffix `-{i}` holds no `-`, so
    only the part before the last `-` can be that entry."""
    entry, _, index = expanded.rpartition("-")
    if not (entry and index.isdigit() and str(int(index)) == index):
        return None
    count = _replica_count(agents.get(entry, {}))
    return entry if count is not None and int(index) < count else None


def _replica_issues(context: Context, agents: dict[str, dict[str, Any]]) -> Iterator[SpecIssue]:
    """Replica ids `{id}-{i}` must not collide with another agent's id, nor grow too long.
    Two replicated entries never collide (their ids differ before the last `-`): only a
    plain agent can be named like another entry's replica."""
    for agent_id, body in agents.items():
        count = _replica_count(body)
        owner = _entry_of_replica(agent_id, agents)
        if count is None and owner is not None:
            yield context.issue(["agents", owner, "replicas"],
                                f"replica id {agent_id!r} collides with agent {agent_id!r}; "
                                "rename one of them")
        longest = f"{agent_id}-{count - 1}" if count else ""
        if len(longest) > MAX_ID_LENGTH:
            yield context.issue(["agents", agent_id, "replicas"],
                                f"replica id {longest!r} is longer than "
                                f"{MAX_ID_LENGTH} characters; shorten the agent id")


def _dependencies(agents: dict[str, dict[str, Any]]) -> dict[str, list[tuple[int, str]]]:
    graph: dict[str, list[tuple[int, str]]] = {}
    for agent_id, body in agents.items():
        targets = body.get("depends_on")
        items = enumerate(targets) if isinstance(targets, list) else iter(())
        graph[agent_id] = [(index, t) for index, t in items if isinstance(t, str)]
    return graph


def _dependency_issues(context: Context,
                       agents: dict[str, dict[str, Any]]) -> Iterator[SpecIssue]:
    graph = _dependencies(agents)
    for agent_id, edges in graph.items():
        for index, target in edges:
            if target not in graph:
                entry = _entry_of_replica(target, agents)
                close = difflib.get_close_matches(target, list(graph), n=1)
                hint = (f"; depends_on names spec entries: {entry!r} waits for all its "
                        "replicas" if entry else
                        f"; did you mean {close[0]!r}?" if close else "")
                yield context.issue(["agents", agent_id, "depends_on", index],
                                    f"depends on {target!r}, which is not an agent of "
                                    f"this spec{hint}")
    order = list(graph)
    for cycle in find_cycles({a: [t for _, t in e if t in graph] for a, e in graph.items()}):
        first = min(cycle, key=order.index)
        start = cycle.index(first)
        spelled = [*cycle[start:], *cycle[:start], first]
        yield context.issue(["agents", first, "depends_on"],
                            f"dependency cycle: {' -> '.join(spelled)}")


def find_cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """One cycle per strongly connected knot, each as its members in path order."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []
    in_cycle: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for target in graph.get(node, ()):
            if state.get(target) == 1 and target not in in_cycle:
                cycle = path[path.index(target):]
                cycles.append(cycle)
                in_cycle.update(cycle)
            elif target not in state:
                visit(target, path)
        path.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
    return cycles
