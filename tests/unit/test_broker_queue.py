"""Reading which step a message that kombu holds unacknowledged belongs to."""

from __future__ import annotations

import json

import pytest

from dagflow.execution.broker_queue import step_of
from dagflow.execution.message import Sender, step_message

SENDER = Sender("celery", (None, None), True)


def held(message: str) -> str:
    """What kombu's Redis transport keeps in its ``unacked`` hash for a message."""
    return json.dumps([json.loads(message), "", "celery"])


def test_a_step_message_names_its_run_and_task() -> None:
    message = step_message(SENDER, "run-1", "load", "dag:load", origin="o", reply_to="r")
    assert step_of(held(message)) == ("run-1", "load")
    assert step_of(held(message).encode()) == ("run-1", "load")


def test_another_tasks_message_is_not_a_step() -> None:
    raw = json.loads(step_message(SENDER, "run-1", "load", "dag:load", origin="o", reply_to="r"))
    raw["headers"]["task"] = "dagflow.start_scheduled_run"
    assert step_of(json.dumps([raw, "", "celery"])) is None


@pytest.mark.parametrize(
    "raw", ["", "not json", "[]", "[{}]", '[{"headers": {"task": "dagflow.step"}}]']
)
def test_a_message_it_cannot_read_is_no_step(raw: str) -> None:
    assert step_of(raw) is None
