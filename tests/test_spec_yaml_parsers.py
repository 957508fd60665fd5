"""libyaml composes specs (fast); the pure-Python parser words the errors. The two
must agree on every node and position, or a located error would point elsewhere."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from swarm_launch import spec_yaml

ROOT = pathlib.Path(__file__).parent.parent
FILES = sorted([*ROOT.glob("examples/*.yaml"), *ROOT.glob("tests/specs/*/*.yaml")])


def shape(node: yaml.Node, seen: dict[int, int] | None = None) -> Any:
    """Everything a located issue reads from a node: tag, position, children or value.
    A node met again (an alias, maybe recursive) is named by the order it was first met,
    so an alias bomb is compared in linear time."""
    seen = {} if seen is None else seen
    where = (node.tag, node.start_mark.line, node.start_mark.column)
    if id(node) in seen:
        return (*where, "alias", seen[id(node)])
    seen[id(node)] = len(seen)
    if isinstance(node, yaml.MappingNode):
        return (*where, [(shape(k, seen), shape(v, seen)) for k, v in node.value])
    if isinstance(node, yaml.SequenceNode):
        return (*where, [shape(item, seen) for item in node.value])
    return (*where, node.value)


def composed(text: str, loader: Any) -> Any:
    try:
        root = yaml.compose(text, Loader=loader)
    except yaml.YAMLError:
        return "refused"
    return None if root is None else shape(root)


@pytest.mark.skipif(spec_yaml.FAST_LOADER is None, reason="PyYAML without libyaml")
@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_libyaml_and_pure_python_compose_the_same_nodes(path: pathlib.Path) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        pytest.skip("not UTF-8: refused before YAML")
    fast = composed(text, spec_yaml.FAST_LOADER)
    if fast == "refused":
        return  # the pure-Python parser composes it again and words the error
    slow = composed(text, yaml.SafeLoader)
    if slow == "refused":  # libyaml lets recursive anchors through: our checks refuse them
        with pytest.raises(spec_yaml.LoadFailure):
            spec_yaml.read_document(str(path), path.name)
    else:
        assert fast == slow


def test_the_corpus_has_files_of_both_kinds() -> None:
    assert len(FILES) > 20
    assert any(composed(p.read_text(errors="replace"), yaml.SafeLoader) == "refused"
               for p in FILES)
