"""Trigger rules and branches: the rule table, the branch output, validation, ``dagflow plan``."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from dagflow.dag.load import plan_text
from dagflow.dag.rules import TRIGGER_RULES, branch_choice, decide, decisive, skip_reason
from dagflow.errors import BranchOutputError, DagValidationError, SpecError
from tests.support.dags import make_dag, task

# rule, parents' states, decision
DECISIONS = [
    ("all_success", ["ok", "ok"], "ready"),
    ("all_success", ["ok", "running"], "wait"),
    ("all_success", ["skipped", "pending"], "skip"),
    ("all_success", ["failed", "ok"], "skip"),
    ("all_done", ["failed", "skipped"], "ready"),
    ("all_done", ["failed", "retry"], "wait"),
    ("one_success", ["pending", "ok"], "ready"),
    ("one_success", ["failed", "pending"], "wait"),
    ("one_success", ["failed", "skipped"], "skip"),
    ("one_failed", ["pending", "failed"], "ready"),
    ("one_failed", ["ok", "running"], "wait"),
    ("one_failed", ["ok", "skipped"], "skip"),
    ("none_failed", ["ok", "skipped"], "ready"),
    ("none_failed", ["ok", "pending"], "wait"),
    ("none_failed", ["failed", "pending"], "skip"),
    ("one_failed", [], "ready"),  # a root runs when the run starts
]


@pytest.mark.parametrize(("rule", "states", "expected"), DECISIONS)
def test_the_rule_table(rule: str, states: list[str], expected: str) -> None:
    assert decide(rule, states) == expected


@pytest.mark.parametrize("rule", list(TRIGGER_RULES))
@pytest.mark.parametrize("a", ["ok", "failed", "skipped"])
@pytest.mark.parametrize("b", ["ok", "failed", "skipped"])
def test_every_rule_is_decided_once_every_parent_ended(rule: str, a: str, b: str) -> None:
    assert decide(rule, [a, b]) != "wait"


def test_skip_reasons() -> None:
    assert skip_reason("all_success", ["x", "y"], ["ok", "failed"]) == (
        "skipped: upstream task 'y' failed"
    )
    assert skip_reason("all_success", ["x", "y"], ["skipped", "pending"]) == (
        "skipped: upstream task 'x' was skipped"
    )
    assert skip_reason("one_failed", ["x"], ["ok"]) == (
        "skipped: trigger rule one_failed can no longer be met"
    )


@pytest.mark.parametrize(
    ("output", "chosen"),
    [({"branch": "a"}, ("a",)), ({"branch": ["b", "a", "b"]}, ("b", "a")), ({"branch": []}, ())],
)
def test_a_branch_names_one_child_or_a_list(output: Any, chosen: tuple[str, ...]) -> None:
    assert branch_choice("t", output, ["a", "b"]) == chosen


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"branch": "c"}, "names 'c', not a child of it (children: a, b)"),
        ({"branch": ["a", "zz"]}, "names 'zz', not a child"),
        ({}, "its output must hold the key 'branch'"),
        ("a", "its output must hold the key 'branch'"),
        ({"branch": {"a": 1}}, "must be a child id or a list of child ids, got dict"),
        ({"branch": [1]}, "got list"),
    ],
)
def test_a_bad_branch_output_names_the_task_and_the_key(output: Any, message: str) -> None:
    with pytest.raises(BranchOutputError) as caught:
        branch_choice("t", output, ["a", "b"])
    assert str(caught.value).startswith("Task 't' is a branch task: ")
    assert message in str(caught.value)


def one_line(tasks: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        make_dag(tasks, name="f")
    return [e.one_line() for e in caught.value.errors]


def test_an_unknown_trigger_rule_suggests_the_close_one() -> None:
    lines = one_line([task("a"), task("b", deps=("a",), trigger_rule="all_sucess")])
    assert lines == [
        "f.yaml, task 'b', field 'trigger_rule': DagValidationError: unknown trigger rule "
        "'all_sucess' (did you mean 'all_success'?); expected one of all_success, all_done, "
        "one_success, one_failed, none_failed"
    ]


def test_a_trigger_rule_that_is_not_a_string() -> None:
    [line] = one_line([task("a", trigger_rule=["all_done"])])
    assert line.startswith("f.yaml, task 'a', field 'trigger_rule': DagValidationError: expected")
    assert line.endswith("got a list")


def test_branch_must_be_a_boolean() -> None:
    assert one_line([task("a", branch="yes"), task("b", deps=("a",))]) == [
        "f.yaml, task 'a', field 'branch': DagValidationError: expected true or false, "
        "got the string 'yes'"
    ]


def test_a_branch_task_needs_children() -> None:
    lines = one_line([task("a"), task("b", deps=("a",), branch=True)])
    assert lines == [
        "f.yaml, task 'b', field 'branch': DagValidationError: a branch task needs children "
        "to choose from (no task depends on it)"
    ]
    with pytest.raises(DagValidationError):
        make_dag([task("a", branch=True)])


def test_the_plan_shows_rules_and_branches() -> None:
    dag = make_dag(
        [
            task("check", branch=True),
            task("rebuild", deps=("check",)),
            task("reuse", deps=("check",)),
            task("cleanup", deps=("rebuild", "reuse"), trigger_rule="all_done"),
        ]
    )
    text = plan_text(dag)
    assert (
        "  1. check (workflow: test.echo, depends_on: none, branch: chooses among rebuild, reuse)"
        in text
    )
    assert (
        "  4. cleanup (workflow: test.echo, depends_on: rebuild, reuse, trigger_rule: all_done)"
        in text
    )
    assert "  cleanup: all_done (every parent ended, however)" in text
    assert "  check: branch (its output's 'branch' chooses among rebuild, reuse)" in text
    plan = dag.compiled.plan()
    assert plan.ruled and plan.tasks["cleanup"].trigger_rule == "all_done"


def test_the_plan_of_a_dag_without_rules_does_not_mention_them() -> None:
    text = plan_text(make_dag([task("a"), task("b", deps=("a",), trigger_rule="all_success")]))
    assert "trigger" not in text.lower() and "branch" not in text


@pytest.mark.parametrize("rule", sorted(TRIGGER_RULES))
def test_an_end_that_is_not_decisive_never_decides_a_waiting_task_before_all_ended(
    rule: str,
) -> None:
    # Every way three of four parents can stand (the fourth not ended yet), and every way
    # the next one can end: the run store skips reading a wide join's parents on this rule.
    ways = ["pending", "ok", "failed", "skipped", "cancelled"]
    for before in itertools.product(ways, repeat=3):
        if decide(rule, [*before, "pending"]) != "wait":
            continue
        for i, state in itertools.product(range(3), ways[1:]):
            if before[i] != "pending":
                continue
            after = [*before[:i], state, *before[i + 1 :], "pending"]
            if not decisive(rule, state):
                assert decide(rule, after) == "wait", (before, i, state)
            elif rule != "all_done":
                assert decide(rule, after) != "wait", (before, i, state)
