"""Trigger rules and branches: whether a task runs, given how its parents ended (pure).

A task's ``trigger_rule`` is decided from its parents' states alone, so both run stores
(the Lua finish script and its in-memory twin) decide the same way in the same atomic step
that records a parent's end. :func:`decide` is the rule table; the Lua copy in
:mod:`dagflow.stores.redis_scripts` follows it line by line and the run store contract
test holds both to it.

A ``branch: true`` task names the children that run in its output's ``branch`` key
(:func:`branch_choice`); the others are skipped.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from dagflow.errors import BranchOutputError

#: The default rule: every parent succeeded (dagflow's behaviour before trigger rules).
DEFAULT_RULE = "all_success"
#: Every rule, and what it waits for (the README's table says the same).
TRIGGER_RULES: dict[str, str] = {
    "all_success": "every parent succeeded",
    "all_done": "every parent ended, however",
    "one_success": "at least one parent succeeded",
    "one_failed": "at least one parent failed",
    "none_failed": "every parent succeeded or was skipped",
}
#: The output key a branch task names its chosen children under.
BRANCH_KEY = "branch"

Decision = Literal["ready", "skip", "wait"]

_ENDED = frozenset({"ok", "failed", "skipped", "cancelled"})

#: A task with more parents than this is decided from all its parents' states only when a
#: parent's end can decide it (:func:`decisive`) or every parent has ended (counted in the
#: set of its ended parents): reading a wide join's every parent at each parent's end made
#: each step's cost grow with the join's width. The Lua copy of the finish script uses it.
READ_ALL_MAX = 8


def decide(rule: str, states: Sequence[str]) -> Decision:
    """Whether a task with ``rule`` runs, given its parents' current ``states``.

    A task is ``ready`` as soon as its rule is met (``one_success`` does not wait for the
    other parents), ``skip`` once the rule can no longer be met, and ``wait`` otherwise.
    With every parent ended the answer is never ``wait``: a run cannot stall on a rule.
    A task with no parents (a root) is always ``ready``.

    Args:
        rule: One of :data:`TRIGGER_RULES`.
        states: Each parent's state (``pending``, ``running``, ``retry`` or terminal).
    """
    if not states:
        return "ready"  # a root runs when the run starts, whatever its rule
    ok = sum(s == "ok" for s in states)
    failed = sum(s == "failed" for s in states)
    done = sum(s in _ENDED for s in states)
    everyone = done == len(states)
    if rule == "all_done":
        return "ready" if everyone else "wait"
    if rule == "one_success":
        return "ready" if ok else ("skip" if everyone else "wait")
    if rule == "one_failed":
        return "ready" if failed else ("skip" if everyone else "wait")
    if rule == "none_failed":
        return "skip" if failed else ("ready" if everyone else "wait")
    if ok == len(states):
        return "ready"
    return "skip" if done > ok else "wait"


def decisive(rule: str, state: str) -> bool:
    """Whether a parent ending as ``state`` can decide a task with ``rule`` that waits while
    some of its other parents have not ended (every parent ended decides it anyway).

    Before that, :func:`decide` gives ``wait`` whatever the ended parents' states, unless
    one of them is decisive: a task is decided at its first decisive parent's end, so a
    later parent that is not decisive cannot change its ``wait``.
    """
    if rule == "all_done":
        return False
    if rule == "one_success":
        return state == "ok"
    if rule in ("one_failed", "none_failed"):
        return state == "failed"
    return state != "ok"  # all_success: any other end skips it


def skip_reason(rule: str, parents: Sequence[str], states: Sequence[str]) -> str:
    """The ``task_skip`` event's ``error`` for a task that :func:`decide` skipped."""
    if rule == DEFAULT_RULE:
        for parent, state in zip(parents, states, strict=True):
            if state == "failed":
                return f"skipped: upstream task '{parent}' failed"
        for parent, state in zip(parents, states, strict=True):
            if state in _ENDED and state != "ok":
                return f"skipped: upstream task '{parent}' was skipped"
    return f"skipped: trigger rule {rule} can no longer be met"


def unchosen_reason(branch_task: str) -> str:
    """The ``task_skip`` event's ``error`` for a child its branch task did not choose."""
    return f"skipped: not chosen by branch '{branch_task}'"


def unknown_rule(value: str) -> str:
    """The validation message for a ``trigger_rule`` that does not exist."""
    close = difflib.get_close_matches(value, list(TRIGGER_RULES), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown trigger rule '{value}'{hint}; expected one of {', '.join(TRIGGER_RULES)}"


def branch_choice(task_id: str, output: Any, children: Sequence[str]) -> tuple[str, ...]:
    """The children a branch task chose, read from its output's ``branch`` key.

    An empty list chooses none: every child is skipped.

    Raises:
        BranchOutputError: The output has no ``branch`` key, its value is not a child id
            or a list of child ids, or it names a task that is not a child of ``task_id``.
            Another attempt would return the same kind of value: the task fails at once.
    """
    if not isinstance(output, Mapping) or BRANCH_KEY not in output:
        raise BranchOutputError(
            f"Task '{task_id}' is a branch task: its output must hold the key "
            f"'{BRANCH_KEY}' (a child id or a list of child ids)"
        )
    value = output[BRANCH_KEY]
    chosen = [value] if isinstance(value, str) else value
    if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
        raise BranchOutputError(
            f"Task '{task_id}' is a branch task: its output key '{BRANCH_KEY}' must be a "
            f"child id or a list of child ids, got {type(value).__name__}"
        )
    strangers = [c for c in chosen if c not in children]
    if strangers:
        names = ", ".join(f"'{c}'" for c in strangers)
        raise BranchOutputError(
            f"Task '{task_id}' is a branch task: its output key '{BRANCH_KEY}' names "
            f"{names}, not a child of it (children: {', '.join(children)})"
        )
    return tuple(dict.fromkeys(chosen))
