"""state.json as records.write_state writes it, without tmux."""

from __future__ import annotations

from swarm_launch import records
from swarm_launch.records import SwarmTarget
from tests.test_plan import CLUSTER, agent, desired, hash_of, pane


def test_agents_a_run_did_not_apply_keep_their_entry_or_get_none() -> None:
    """An `up` interrupted or failed before it reached an agent recorded the spec's prompt
    digest and stop for its old pane, so nothing said the change was still due."""
    target = SwarmTarget(CLUSTER)
    old = desired(agent("a"), agent("b"))
    records.write_state(target, spec_hash="old", desired=old,
                        panes=[pane("a", hash_of(agent("a")), number=1),
                               pane("b", hash_of(agent("b")), number=2)])
    before = records.load_state(CLUSTER)["agents"]
    new = desired(agent("a", command="cat -u"), agent("b", command="cat -u"),
                  agent("c"))
    now = [pane("a", hash_of(agent("a")), number=1),  # the pane recorded: its entry kept
           pane("b", hash_of(agent("b")), number=7),  # a pane the records do not know
           pane("c", hash_of(agent("c")), number=8)]  # made by this run: the spec's data
    records.write_state(target, spec_hash=None, desired=new, panes=now, applied={"c"})
    agents = records.load_state(CLUSTER)["agents"]
    assert agents["a"] == before["a"]
    assert "b" not in agents
    assert agents["c"]["field_hashes"] == dict(new["c"].field_hashes)


def test_a_spec_read_from_a_stream_is_not_another_file() -> None:
    """`up <(cat s.yaml)` then `plan /dev/stdin < s.yaml`, all `keep`, said the swarm was
    last applied from /dev/fd/63 and that applying /dev/stdin replaced it."""
    agents = desired(agent("a"))
    panes = [pane("a", hash_of(agent("a")))]
    records.write_state(SwarmTarget(CLUSTER, spec_path="/dev/fd/63"), spec_hash="h",
                        desired=agents, panes=panes)
    assert records.applied_from_another_file(CLUSTER, "/dev/stdin") is None
    assert records.applied_from_another_file(CLUSTER, "/w/s.yaml") is None
    assert records.other_swarms_of("/dev/fd/63", "renamed") == []
    records.write_state(SwarmTarget(CLUSTER, spec_path="/w/a.yaml"), spec_hash="h",
                        desired=agents, panes=panes)
    assert records.applied_from_another_file(CLUSTER, "/w/b.yaml") == "/w/a.yaml"
    assert records.applied_from_another_file(CLUSTER, "/dev/stdin") is None
