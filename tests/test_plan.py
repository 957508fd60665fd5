"""The planner as data: (desired, observed) -> actions, without tmux."""

from __future__ import annotations

import dataclasses

import pytest

from swarm_launch.desired import DesiredAgent, expand, replica_ids
from swarm_launch.model import (
    AgentSpec,
    LogSettings,
    RestartPolicy,
    SendSettings,
    StopSettings,
    SwarmSpec,
)
from swarm_launch.observed import PaneState
from swarm_launch.plan import DISARMED_REASON, RESTART_OVERDUE_S, Kind, plan, replacements

CLUSTER = "team"


def agent(agent_id: str, command: str = "cat", **fields: object) -> AgentSpec:
    return AgentSpec(id=agent_id, command=command, workdir="/w", **fields)  # type: ignore[arg-type]


def swarm(*agents: AgentSpec) -> SwarmSpec:
    return SwarmSpec(name=CLUSTER, path="/w/s.yaml", spec_hash="x", workdir="/w",
                     agents={a.id: a for a in agents})


def desired(*agents: AgentSpec) -> dict[str, DesiredAgent]:
    return expand(swarm(*agents))


def pane(agent_id: str, config_hash: str, *, number: int = 1, cluster: str = CLUSTER,
         dead: bool = False, status: int | None = None, next_restart: float | None = None,
         gave_up: bool = False) -> PaneState:
    return PaneState(
        pane_id=f"%{number}", window_id=f"@{number}", window_index=number, session_id="$1",
        pid=None if dead else 1000 + number, dead=dead, exit_status=status, exit_signal=None,
        cluster=cluster, agent_id=agent_id, config_hash=config_hash, started_at=None,
        restarts=0, next_restart_at=next_restart, gave_up=gave_up,
    )


def hash_of(spec: AgentSpec, agent_id: str | None = None) -> str:
    return desired(spec)[agent_id or spec.id].config_hash


A, B = agent("a"), agent("b")


@pytest.mark.parametrize(
    ("agents", "panes", "expected"),
    [
        pytest.param([A, B], [], [("create", "a", "missing"), ("create", "b", "missing")],
                     id="nothing-running-creates-all"),
        pytest.param([A], [pane("a", hash_of(A))], [("keep", "a", "in sync")],
                     id="in-sync-keeps"),
        pytest.param([A], [pane("a", "stale")], [("replace", "a", "spec changed")],
                     id="changed-hash-replaces"),
        pytest.param([A], [pane("a", hash_of(A), dead=True, status=1)],
                     [("replace", "a", "dead (exit 1)")], id="dead-replaces"),
        pytest.param([A], [pane("a", hash_of(A), dead=True, status=1, next_restart=5.0)],
                     [("keep", "a", "restart pending (restart policy)")],
                     id="pending-restart-is-left-to-tmux"),
        pytest.param([A], [pane("a", hash_of(A)), pane("gone", "h", number=2)],
                     [("remove", "gone", "not in the spec"), ("keep", "a", "in sync")],
                     id="undesired-removed-first"),
        pytest.param([], [pane("a", "h", cluster="other"), pane("", "", number=3)], [],
                     id="foreign-and-untagged-panes-are-invisible"),
        pytest.param([A], [pane("a", hash_of(A), number=1), pane("a", hash_of(A), number=7)],
                     [("remove", "a", "duplicate pane of this agent"), ("keep", "a", "in sync")],
                     id="duplicate-pane-removed-newest-kept"),
        pytest.param([A, B], [pane("b", "stale", number=2)],
                     [("replace", "b", "spec changed"), ("create", "a", "missing")],
                     id="replacements-before-creations"),
    ],
)
def test_plan(agents: list[AgentSpec], panes: list[PaneState],
              expected: list[tuple[str, str, str]]) -> None:
    result = plan(desired(*agents), panes, cluster=CLUSTER)
    assert [(a.kind.value, a.agent_id, a.reason) for a in result.actions] == expected


def test_a_long_overdue_restart_no_longer_holds_back_a_replace() -> None:
    """Its supervisor died or timed out: waiting for it would keep the agent dead."""
    due = 1000.0
    dead = [pane("a", hash_of(A), dead=True, status=1, next_restart=due)]
    on_time = plan(desired(A), dead, cluster=CLUSTER, now=due + RESTART_OVERDUE_S - 1)
    assert [(a.kind, a.reason) for a in on_time.actions] == [
        (Kind.KEEP, "restart pending (restart policy)")]
    late = plan(desired(A), dead, cluster=CLUSTER, now=due + RESTART_OVERDUE_S + 1)
    assert [(a.kind, a.reason) for a in late.actions] == [
        (Kind.REPLACE, "dead (exit 1); its pending restart never came")]


def test_no_prune_keeps_undesired_agents() -> None:
    result = plan({}, [pane("old", "h")], cluster=CLUSTER, prune=False)
    assert [(a.kind, a.reason) for a in result.actions] == [
        (Kind.KEEP, "not in the spec; kept (--no-prune)")]
    assert result.in_sync


@pytest.mark.parametrize(
    ("panes", "expected"),
    [
        pytest.param([pane("a", hash_of(A)), pane("b", hash_of(B), number=2)],
                     [("replace", "a", "replace requested (--replace)"),
                      ("keep", "b", "in sync")], id="in-sync-is-replaced-others-kept"),
        pytest.param([pane("a", hash_of(A), dead=True, status=1, next_restart=5.0)],
                     [("replace", "a", "replace requested (--replace)"),
                      ("create", "b", "missing")], id="pending-restart-replaced-now"),
        pytest.param([pane("a", "stale")],
                     [("replace", "a", "spec changed"), ("create", "b", "missing")],
                     id="a-change-keeps-its-own-reason"),
        pytest.param([], [("create", "a", "missing"), ("create", "b", "missing")],
                     id="missing-is-created"),
    ],
)
def test_replace_forces_only_the_named_agents(panes: list[PaneState],
                                              expected: list[tuple[str, str, str]]) -> None:
    result = plan(desired(A, B), panes, cluster=CLUSTER, replace={"a"})
    assert [(a.kind.value, a.agent_id, a.reason) for a in result.actions] == expected


def test_replace_names_an_agent_or_a_spec_entry_with_all_its_replicas() -> None:
    wanted = desired(agent("w", replicas=3, replicated=True), A)
    assert replacements(wanted, ["w"]) == {"w-0", "w-1", "w-2"}
    assert replacements(wanted, ["w-1", "a"]) == {"w-1", "a"}
    with pytest.raises(ValueError, match=r"not in the spec: x, w-9 \(its agents: w-0, w-1"):
        replacements(wanted, ["x", "w-9", "a"])
    none = desired(agent("z", replicas=0, replicated=True))
    assert replacements(none, ["z"], entries=["z"]) == frozenset()  # scaled to 0: nothing


def test_recorded_field_hashes_name_what_changed() -> None:
    before = desired(agent("a", env={"ROLE": "x"}))["a"]
    after = desired(agent("a", env={"ROLE": "y"}))["a"]
    result = plan({"a": after}, [pane("a", before.config_hash)], cluster=CLUSTER,
                  recorded={"a": before.field_hashes})
    assert result.actions[0].reason == "spec changed: env"


def test_summary_counts_every_kind() -> None:
    result = plan(desired(A, B, agent("c")),
                  [pane("a", hash_of(A)), pane("b", "old", number=2), pane("z", "h", number=3)],
                  cluster=CLUSTER)
    assert result.summary() == "1 created, 1 replaced, 1 removed, 1 unchanged"


@pytest.mark.parametrize(
    ("spec", "ids"),
    [
        pytest.param(agent("w"), ["w"], id="plain"),
        pytest.param(agent("w", replicas=3, replicated=True), ["w-0", "w-1", "w-2"], id="three"),
        pytest.param(agent("w", replicas=1, replicated=True), ["w-0"], id="declared-one"),
        pytest.param(agent("w", replicas=0, replicated=True), [], id="zero"),
    ],
)
def test_replica_ids(spec: AgentSpec, ids: list[str]) -> None:
    assert [i for i, _ in replica_ids(spec)] == ids


def test_replica_env_and_stable_hash_across_scaling() -> None:
    three = desired(agent("w", replicas=3, replicated=True))
    one = desired(agent("w", replicas=1, replicated=True))
    assert three["w-1"].env["SWARM_REPLICA"] == "1"
    assert three["w-1"].env["SWARM_AGENT_ID"] == "w-1"
    assert three["w-1"].env["SWARM_NAME"] == CLUSTER
    assert one["w-0"].config_hash == three["w-0"].config_hash


def test_scaling_three_to_one_removes_two() -> None:
    three = desired(agent("w", replicas=3, replicated=True))
    panes = [pane(i, d.config_hash, number=n) for n, (i, d) in enumerate(three.items())]
    result = plan(desired(agent("w", replicas=1, replicated=True)), panes, cluster=CLUSTER)
    assert [(a.kind, a.agent_id) for a in result.changes] == [
        (Kind.REMOVE, "w-1"), (Kind.REMOVE, "w-2")]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"command": "cat -u"}, id="command"),
        pytest.param({"workdir": "/elsewhere"}, id="workdir"),
        pytest.param({"env": {"K": "v2"}}, id="env-value"),
        pytest.param({"command": ("cat",)}, id="string-to-argv"),
        # Kept on the pane as options and writer arguments, applied only at a (re)start:
        pytest.param({"send": SendSettings(submit_key="C-j")}, id="send"),
        pytest.param({"logs": LogSettings(max_bytes=4096)}, id="logs"),
    ],
)
def test_respawn_relevant_fields_change_the_hash(change: dict[str, object]) -> None:
    base = agent("a", env={"K": "v1"})
    assert hash_of(base) != hash_of(dataclasses.replace(base, **change))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"prompt": "hello"}, id="prompt"),
        pytest.param({"depends_on": ("b",)}, id="depends_on"),
        pytest.param({"stop": StopSettings(signal="INT")}, id="stop"),
    ],
)
def test_orchestration_fields_do_not_change_the_hash(change: dict[str, object]) -> None:
    base = agent("a")
    assert hash_of(base) == hash_of(dataclasses.replace(base, **change))  # type: ignore[arg-type]


def test_hashes_of_agents_already_running_do_not_move() -> None:
    """Pinned: a changed projection replaces every running agent at the next `up`
    (bump HASH_VERSION on purpose, then update these)."""
    assert (hash_of(agent("a")), hash_of(agent("a", env={"K": "v"}))) == (
        "107ee979f364b919", "df147c6377dff7ac")


def test_order_in_file_does_not_change_hashes() -> None:
    one, two = desired(A, B), desired(B, A)
    assert {k: v.config_hash for k, v in one.items()} == {k: v.config_hash for k, v in two.items()}


def test_layers_follow_depends_on_with_replicas() -> None:
    agents = desired(agent("app", depends_on=("db", "cache")),
                     agent("db"), agent("cache", replicas=2, replicated=True),
                     agent("ui", depends_on=("app",)))
    from swarm_launch.desired import layers

    assert [sorted(layer) for layer in layers(agents)] == [
        ["cache-0", "cache-1", "db"], ["app"], ["ui"]]


@pytest.mark.parametrize(("late_s", "shown"), [
    (-3.0, "2 (next in 3s)"),
    (1.0, "2 (restarting)"),
    (RESTART_OVERDUE_S + 5, "2 (restart overdue by 15s; `up` replaces it)"),
])
def test_status_says_when_a_pending_restart_will_not_come(late_s: float, shown: str) -> None:
    from swarm_launch.commands.status import _restarts
    from swarm_launch.status_view import AgentRow

    row = AgentRow("a", "%1", None, "failed", 1, None, 2, 1000.0, False, "in-sync")
    assert _restarts(row, 1000.0 + late_s) == shown


def test_status_counts_restarts_from_zero_once_the_agent_ran_stably() -> None:
    """The count the next crash starts from (restarts_so_far): reset after reset_after_s."""
    import dataclasses

    from swarm_launch.status_view import rows

    crashed_twice = dataclasses.replace(pane("a", "h"), started_at=1000.0, restarts=2)
    shown = {now: rows({"a": "h"}, [crashed_twice], cluster=CLUSTER, now=now,
                       reset_after={"a": 300.0})[0].restarts for now in (1299.0, 1300.0)}
    assert shown == {1299.0: 2, 1300.0: 0}
    assert rows({"a": "h"}, [crashed_twice], cluster=CLUSTER, now=5000.0)[0].restarts == 2


@pytest.mark.parametrize(("spec", "restarts", "due", "owed"), [
    pytest.param(agent("a", prompt="go"), 0, True, True, id="first-instance"),
    pytest.param(agent("a", prompt="go"), 1, True, False, id="restarted"),
    pytest.param(agent("a", prompt="go"), 0, False, False, id="sent"),
    pytest.param(agent("a"), 0, True, False, id="prompt-removed-from-spec"),
])
def test_an_owed_prompt_is_one_up_will_send(spec: AgentSpec, restarts: int, due: bool,
                                            owed: bool) -> None:
    """One predicate for both: `up` leaves its lock-free no-op path only for a prompt it
    will send; a restarted agent or a spec without the prompt must not keep it off it."""
    from swarm_launch.startup import prompt_owed

    want = desired(spec)["a"]
    observed = dataclasses.replace(pane("a", want.config_hash), restarts=restarts,
                                   prompt_due=due)
    [action] = plan({"a": want}, [observed], cluster=CLUSTER, prune=True).actions
    assert action.kind is Kind.KEEP and prompt_owed(action) is owed


ON_FAILURE = agent("a", restart=RestartPolicy(mode="on-failure"))


@pytest.mark.parametrize(("supervised", "held", "stopping", "expected"), [
    pytest.param(True, False, False, (Kind.KEEP, "in sync"), id="armed"),
    pytest.param(False, True, False, (Kind.UPDATE, DISARMED_REASON), id="left-disarmed"),
    pytest.param(False, True, True, (Kind.KEEP, "being stopped by another run"),
                 id="a-stop-under-way"),
    pytest.param(False, False, False,
                 (Kind.REPLACE, "its restart policy is missing from its pane"), id="lost"),
])
def test_a_running_agent_without_its_restart_policy_gets_it_back(
        supervised: bool, held: bool, stopping: bool, expected: tuple[Kind, str]) -> None:
    """A stop killed after it held the policy aside (SIGKILL, SIGTERM) left the agent
    running unsupervised, and the plan said in sync: a crash then was never restarted."""
    want = desired(ON_FAILURE)["a"]
    observed = dataclasses.replace(pane("a", want.config_hash), supervised=supervised,
                                   policy_held=held)
    [action] = plan({"a": want}, [observed], cluster=CLUSTER, stopping=stopping).actions
    assert (action.kind, action.reason) == expected
