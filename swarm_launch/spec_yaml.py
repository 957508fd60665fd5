"""Reading a spec file into YAML nodes and data, every failure a located `SpecIssue`.

The file is checked before YAML sees it (missing, directory, too large, binary,
invalid UTF-8); YAML is composed with the safe loader only, then walked for what
PyYAML lets through silently: duplicate keys, non-string keys, alias bombs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from swarm_launch.exceptions import SpecIssue
from swarm_launch.model import MAX_SPEC_BYTES

MAX_NODES = 100_000
STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
PathPart = str | int
FAST_LOADER = getattr(yaml, "CSafeLoader", None)  # absent where PyYAML lacks libyaml


class LoadFailure(Exception):
    """The file cannot be turned into data at all; carries its issues."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        super().__init__(f"{len(issues)} issues")
        self.issues = issues


@dataclass(frozen=True)
class Document:
    """A spec file read and parsed: its bytes, its node tree, its plain data."""

    raw: bytes
    root: yaml.Node
    data: Any
    issues: tuple[SpecIssue, ...]


def json_path(parts: Sequence[PathPart]) -> str:
    """`$.agents.planner.env.KEY`, `$.agents.x.command[0]`, `$.agents['Coder 1']`."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}"
        else:
            text += f"[{part!r}]"
    return text


def issue_at(file: str, mark: yaml.Mark | None, parts: Sequence[PathPart],
             message: str) -> SpecIssue:
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return SpecIssue(file, line, column, json_path(parts), message)


def read_document(path: str, file: str, raw: bytes | None = None) -> Document:
    """Read, check and parse `path`; raise LoadFailure when there is no usable mapping.
    `raw`: its bytes, already read (a pipe, `<(...)` or /dev/stdin reads once)."""
    return parse_document(_read_bytes(path, file) if raw is None else _checked(raw, file),
                          file)


def parse_document(raw: bytes, file: str) -> Document:
    """Parse a spec file's bytes; raise LoadFailure when there is no usable mapping."""
    text = _decode(raw, file)
    root = _compose(text, file)
    _check_aliases(root, file)
    issues = list(_walk_keys(root, file, []))
    issues += _unreadable(root, file)
    if not isinstance(root, yaml.MappingNode):
        raise LoadFailure([issue_at(file, root.start_mark, [],
                                    f"the top level must be a mapping (version: 1, name: ..., "
                                    f"agents: ...), not {_kind(root)}")])
    if any(i.message.startswith("keys must be strings") for i in issues):
        raise LoadFailure(issues)
    return Document(raw=raw, root=root, data=_construct(root, file), issues=tuple(issues))


def _fail(file: str, message: str, line: int = 1, column: int = 1) -> LoadFailure:
    return LoadFailure([SpecIssue(file, line, column, "$", message)])


def _read_bytes(path: str, file: str) -> bytes:
    if not os.path.exists(path):
        raise _fail(file, "no such file; check the path")
    if os.path.isdir(path):
        raise _fail(file, "is a directory, not a spec file; give the path of a .yaml file")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise _fail(file, f"cannot read the file: {exc.strerror}") from exc
    return _checked(raw, file)


def _checked(raw: bytes, file: str) -> bytes:
    if len(raw) > MAX_SPEC_BYTES:
        raise _fail(file, f"the file is larger than {MAX_SPEC_BYTES // 1024} KiB; "
                          "a spec is a small YAML file")
    if not raw.strip():
        raise _fail(file, "the file is empty; a spec starts with `version: 1`")
    return raw


def _position(data: bytes, offset: int) -> tuple[int, int]:
    before = data[:offset]
    line = before.count(b"\n") + 1
    return line, offset - (before.rfind(b"\n") + 1) + 1


def _decode(raw: bytes, file: str) -> str:
    nul = raw.find(b"\0")
    if nul >= 0:
        raise _fail(file, "the file is binary (it contains NUL bytes), not YAML",
                    *_position(raw, nul))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(file, f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); "
                          "save it as UTF-8", *_position(raw, exc.start)) from exc


def _compose(text: str, file: str) -> yaml.Node:
    """Compose with libyaml when PyYAML has it (ten times faster: 4 ms against 43 ms for
    500 agents); a file it refuses is composed again by the pure-Python parser, whose
    messages the located errors are written for."""
    if FAST_LOADER is not None:
        try:
            root: yaml.Node | None = yaml.compose(text, Loader=FAST_LOADER)
        except yaml.YAMLError:
            pass
        else:
            return _present(root, file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise LoadFailure([_syntax_issue(text, exc, file)]) from exc
    except yaml.reader.ReaderError as exc:
        line, column = _position(text.encode("utf-8"), len(text[: exc.position].encode()))
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        raise _fail(file, f"the character {char!r} is not allowed in YAML; "
                          "remove it", line, column) from exc
    return _present(root, file)


def _present(root: yaml.Node | None, file: str) -> yaml.Node:
    if root is None:
        raise _fail(file, "the file has no content (only comments); "
                          "a spec starts with `version: 1`")
    return root


def _syntax_issue(text: str, exc: yaml.MarkedYAMLError, file: str) -> SpecIssue:
    mark = exc.problem_mark or exc.context_mark
    tab = _tab_indent(text, mark.line) if mark else None
    if mark and tab is not None:
        return SpecIssue(file, mark.line + 1, tab + 1, "$",
                         "a tab in indentation; YAML indents with spaces only")
    problem = exc.problem or "invalid YAML"
    if exc.context and problem.startswith("but "):
        problem = f"{exc.context}, {problem}"
    elif exc.context and exc.context_mark and exc.context_mark is not mark:
        ctx = exc.context_mark
        problem += f" ({exc.context} at line {ctx.line + 1}, column {ctx.column + 1})"
    return issue_at(file, mark, [], f"YAML syntax error: {problem}")


def _tab_indent(text: str, line_index: int) -> int | None:
    """The column (0-based) of a tab in the indentation of the line the parser choked
    on. Only that line: a tab elsewhere may be content (in a block scalar), legal, and
    blaming it would hide the real error."""
    lines = text.splitlines()
    line = lines[line_index] if line_index < len(lines) else ""
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    return indent.index("\t") if "\t" in indent and line.strip() else None


def _walk_keys(node: yaml.Node, file: str, parts: list[PathPart]) -> Iterator[SpecIssue]:
    """Duplicate and non-string keys, anywhere in the tree (aliases visited once)."""
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _walk_keys(item, file, [*parts, index])
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, yaml.Node] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag not in (STR_TAG, MERGE_TAG):
            yield issue_at(file, key.start_mark, parts,
                           f"keys must be strings; quote {_key_text(key)}")
            continue
        if key.value in seen:
            first = seen[key.value].start_mark.line + 1
            yield issue_at(file, key.start_mark, [*parts, key.value],
                           f"duplicate key {key.value!r} (first defined at line {first})")
        seen[key.value] = key
        yield from _walk_keys(value, file, [*parts, key.value])


YAML_TAG = "tag:yaml.org,2002:"
SCALAR_TAGS = {YAML_TAG + name for name in
               ("str", "null", "bool", "int", "float", "binary", "timestamp")}
MAPPING_TAGS = {YAML_TAG + "map", YAML_TAG + "set"}
SEQUENCE_TAGS = {YAML_TAG + "seq", YAML_TAG + "omap", YAML_TAG + "pairs"}


def _unreadable(root: yaml.Node, file: str) -> list[SpecIssue]:
    loader = yaml.SafeLoader("")  # one for the file: making one costs as much as a value
    try:
        return _unreadable_values(loader, root, file, [], set())
    finally:
        loader.dispose()


def _unreadable_values(loader: yaml.SafeLoader, node: yaml.Node, file: str,
                       parts: list[PathPart], seen: set[int]) -> list[SpecIssue]:
    """Values the safe loader cannot construct (2024-02-30, an unknown or `!!python/` tag),
    each located; the node is made plain text or a plain collection so the rest of the
    file is still read and checked (every error at once, not the first one at `$`)."""
    if id(node) in seen:  # an alias: checked where its anchor is
        return []
    seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        problem = _scalar_problem(loader, node)
        if problem is None:
            return []
        node.tag = STR_TAG
        return [issue_at(file, node.start_mark, parts, problem)]
    issues: list[SpecIssue] = []
    allowed = MAPPING_TAGS if isinstance(node, yaml.MappingNode) else SEQUENCE_TAGS
    if node.tag not in allowed:
        issues.append(issue_at(file, node.start_mark, parts, _unknown_tag(node.tag)))
        node.tag = YAML_TAG + ("map" if isinstance(node, yaml.MappingNode) else "seq")
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            issues += _unreadable_values(loader, item, file, [*parts, index], seen)
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            issues += _unreadable_values(loader, value, file, [*parts, name], seen)
    return issues


def _scalar_problem(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str | None:
    if node.tag not in SCALAR_TAGS:
        return _unknown_tag(node.tag)
    if node.tag == STR_TAG:  # most of them: text cannot fail
        return None
    try:
        loader.construct_object(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        reason = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else exc
        return f"{node.value!r} cannot be read ({reason}); quote it to make it text"
    return None


def _unknown_tag(tag: str) -> str:
    shown = "!!" + tag.removeprefix(YAML_TAG) if tag.startswith(YAML_TAG) else tag
    return f"the tag {shown} is not supported (specs are plain YAML); remove it"


def _key_text(key: yaml.Node) -> str:
    return f"'{key.value}'" if isinstance(key, yaml.ScalarNode) else "a complex key"


def _check_aliases(root: yaml.Node, file: str) -> None:
    """Refuse a recursive alias, or aliases expanding to a huge document (an alias bomb)."""
    size = _expanded_size(root, {}, file)
    if size > MAX_NODES:
        raise LoadFailure([issue_at(file, root.start_mark, [],
                                    f"the document expands to more than {MAX_NODES} values "
                                    "through aliases; use fewer anchors")])


def _expanded_size(node: yaml.Node, memo: dict[int, int], file: str) -> int:
    if id(node) in memo:
        if memo[id(node)] < 0:
            raise LoadFailure([issue_at(file, node.start_mark, [],
                                        "a recursive alias (an anchor used inside itself)")])
        return memo[id(node)]
    memo[id(node)] = -1
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    size = 1 + sum(_expanded_size(child, memo, file) for child in children)
    memo[id(node)] = size
    return size


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"a scalar ({node.value!r})" if isinstance(node, yaml.ScalarNode) else "that"


def _construct(root: yaml.Node, file: str) -> Any:
    """Plain data from the already composed nodes (the safe constructor only)."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        raise LoadFailure([issue_at(file, exc.problem_mark, [],
                                    f"YAML error: {exc.problem}")]) from exc
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date like 2024-02-30
        raise LoadFailure([issue_at(file, root.start_mark, [],
                                    f"a value cannot be read ({exc}); quote it")]) from exc
    finally:
        loader.dispose()


def node_at(root: yaml.Node, parts: Sequence[PathPart]) -> tuple[yaml.Node, yaml.Node | None]:
    """The value node at `parts` (or the deepest one found) and its key node, if any."""
    node, key_node = root, None
    for part in parts:
        child = _child(node, part)
        if child is None:
            break
        key_node, node = child
    return node, key_node


def _child(node: yaml.Node, part: PathPart) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return None, node.value[part]
    if isinstance(node, yaml.MappingNode):
        for key, value in reversed(node.value):  # the last duplicate is the one kept
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return key, value
    return None
