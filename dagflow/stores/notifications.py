"""The notify outbox and run deadlines: the run store's half that tells people about runs.

A run's end is told (its ``on_failure``/``on_success`` hooks, its webhooks) **at least once**
by the same pattern as the step outbox (:mod:`dagflow.stores.base`):

* :meth:`NoticeStore.mark_done` writes the run's *notices* (one per hook and webhook to
  tell) in the same atomic step that marks the run done, due ``hold_s`` from now: the
  process that ended the run delivers them at once;
* if it dies first, :meth:`NoticeStore.claim_notices` (the sweeper) finds them due and
  claims each for a lease period, so another process delivers them;
* a delivery ends with :meth:`NoticeStore.settle_notice` (sent, or given up after the last
  attempt) or :meth:`NoticeStore.retry_notice` (due again after a backoff).

Deadlines: :meth:`RunStore.create_run` indexes a run whose meta has ``deadline_at`` (epoch
seconds); :meth:`NoticeStore.mark_done` drops it. :meth:`NoticeStore.miss_deadline` is the
atomic claim: for a run still open, exactly one caller gets True, and in that same step its
``dag_deadline_missed`` event (with a store that writes events) and its notices are written.

:class:`MemoryNotices` is the in-memory twin (the embedded mode), mixed into
:class:`~dagflow.stores.memory.MemoryRunStore`; :mod:`dagflow.stores.redis_notifications`
holds the Redis side.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from dagflow.stores.memory_views import MemoryRun

NoticeStateName = Literal["pending", "sent", "retrying", "failed"]


@dataclass(frozen=True)
class Notice:
    """One thing to tell about one run: a hook to call or a webhook to POST to.

    Attributes:
        run_id: The run.
        notice_id: ``<trigger>:<kind>:<target>`` (see :meth:`make_id`).
        attempt: 1 + the delivery attempts that failed so far.
    """

    run_id: str
    notice_id: str
    attempt: int = 1

    @staticmethod
    def make_id(trigger: str, kind: str, target: str) -> str:
        """``failed:on_failure:page_owner``, ``deadline_missed:webhook:SLACK_WEBHOOK_URL``."""
        return f"{trigger}:{kind}:{target}"

    @property
    def trigger(self) -> str:
        """``failed``, ``success`` or ``deadline_missed``."""
        return self.notice_id.split(":", 2)[0]

    @property
    def kind(self) -> str:
        """``on_failure``, ``on_success``, ``on_deadline_missed`` or ``webhook``."""
        return self.notice_id.split(":", 2)[1]

    @property
    def target(self) -> str:
        """The hook's workflow name, or the webhook's environment variable."""
        return self.notice_id.split(":", 2)[2]


@dataclass(frozen=True)
class NoticeBatch:
    """Notices written in one atomic step (with ``mark_done`` or a missed deadline).

    Attributes:
        ids: The notice ids.
        hold_s: Seconds before a sweeper may deliver them: the writer delivers them first.
    """

    ids: tuple[str, ...]
    hold_s: float = 30.0


@dataclass(frozen=True)
class NoticeState:
    """How a notice's delivery stands, for ``dagflow status``.

    Attributes:
        notice_id: The notice.
        state: ``pending`` (not tried yet), ``sent``, ``retrying`` (a try failed, another
            is due) or ``failed`` (every try failed).
        attempts: Delivery attempts made.
        error: The last failed attempt's error.
    """

    notice_id: str
    state: NoticeStateName
    attempts: int = 0
    error: str | None = None

    def to_json(self) -> str:
        """Compact JSON, as the stores keep it."""
        data: dict[str, Any] = {"state": self.state, "attempts": self.attempts}
        if self.error:
            data["error"] = self.error
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, notice_id: str, raw: str) -> NoticeState:
        """Inverse of :meth:`to_json`."""
        data = json.loads(raw)
        return cls(notice_id, data.get("state", "pending"), int(data.get("attempts", 0)),
                   data.get("error"))  # fmt: skip

    @property
    def kind(self) -> str:
        """The notice's kind (see :attr:`Notice.kind`)."""
        return Notice("", self.notice_id).kind

    @property
    def target(self) -> str:
        """The notice's target (see :attr:`Notice.target`)."""
        return Notice("", self.notice_id).target

    @property
    def trigger(self) -> str:
        """The notice's trigger (see :attr:`Notice.trigger`)."""
        return Notice("", self.notice_id).trigger


class NoticeStore(Protocol):
    """The run store's notification and deadline operations (see the module docstring)."""

    def mark_done(
        self,
        run_id: str,
        status: str,
        fields: Mapping[str, Any],
        event: Mapping[str, Any] | None = None,
        notices: NoticeBatch | None = None,
    ) -> None:
        """:meth:`RunStore.mark_done`, also dropping the run's deadline and writing
        ``notices`` in the same atomic step."""

    def due_deadlines(self, limit: int) -> list[str]:
        """Runs whose deadline has passed and that nobody claimed yet (read only)."""

    def miss_deadline(
        self, run_id: str, notices: NoticeBatch, event: Mapping[str, Any] | None = None
    ) -> bool:
        """Claim the run's missed deadline: True for exactly one caller while the run is
        open (False if it ended, vanished or was claimed); the claim writes ``notices`` and
        (a store that writes events) ``event`` in the same atomic step."""

    def claim_notices(self, limit: int, lease_s: float) -> list[Notice]:
        """Up to ``limit`` due notices, each held ``lease_s`` for the caller to deliver."""

    def settle_notice(self, notice: Notice, sent: bool, error: str | None = None) -> None:
        """End a notice: delivered (``sent``), or given up after its last attempt."""

    def retry_notice(self, notice: Notice, due_in_s: float, error: str) -> bool:
        """A delivery attempt failed: try again in ``due_in_s``. False if the notice had been
        settled meanwhile (another process delivered it)."""

    def notices(self, run_id: str) -> list[NoticeState]:
        """The run's notices and how each delivery stands, sorted by id."""


class MemoryNotices:
    """The notices and deadlines of :class:`~dagflow.stores.memory.MemoryRunStore`."""

    _runs: dict[str, MemoryRun]
    _lock: threading.Lock
    _clock: Callable[[], float]

    def _init_notices(self) -> None:
        self._deadlines: dict[str, float] = {}
        self._notice_due: dict[tuple[str, str], float] = {}
        self._notice_tries: dict[tuple[str, str], int] = {}
        self._notice_states: dict[str, dict[str, NoticeState]] = {}

    def _on_created(self, run_id: str, meta: Mapping[str, Any]) -> None:
        """Index the new run's deadline (the caller holds the lock)."""
        deadline_at = meta.get("deadline_at")
        if isinstance(deadline_at, int | float) and not isinstance(deadline_at, bool):
            self._deadlines[run_id] = float(deadline_at)

    def _on_done(self, run_id: str, notices: NoticeBatch | None) -> None:
        """Drop the deadline, write the notices (the caller holds the lock)."""
        self._deadlines.pop(run_id, None)
        if notices:
            self._add_notices(run_id, notices)

    def _add_notices(self, run_id: str, notices: NoticeBatch) -> None:
        due = self._clock() + notices.hold_s
        states = self._notice_states.setdefault(run_id, {})
        for notice_id in notices.ids:
            self._notice_due[(run_id, notice_id)] = due
            states[notice_id] = NoticeState(notice_id, "pending")

    def due_deadlines(self, limit: int) -> list[str]:
        """Runs whose deadline is past."""
        now = self._clock()
        with self._lock:
            due = sorted((at, r) for r, at in self._deadlines.items() if at <= now)
        return [r for _, r in due[:limit]]

    def miss_deadline(
        self, run_id: str, notices: NoticeBatch, event: Mapping[str, Any] | None = None
    ) -> bool:
        """Claim the missed deadline of an open run (``event`` is the caller's to write)."""
        with self._lock:
            if self._deadlines.pop(run_id, None) is None:
                return False
            run = self._runs.get(run_id)
            if run is None or "status" in run.meta:
                return False
            self._add_notices(run_id, notices)
            return True

    def claim_notices(self, limit: int, lease_s: float) -> list[Notice]:
        """Due notices, each re-armed ``lease_s`` ahead."""
        now = self._clock()
        with self._lock:
            due = sorted((at, key) for key, at in self._notice_due.items() if at <= now)[:limit]
            claimed = []
            for _, key in due:
                self._notice_due[key] = now + lease_s
                claimed.append(Notice(key[0], key[1], self._notice_tries.get(key, 0) + 1))
        return claimed

    def settle_notice(self, notice: Notice, sent: bool, error: str | None = None) -> None:
        """Drop the notice from the outbox and keep how it ended."""
        key = (notice.run_id, notice.notice_id)
        with self._lock:
            self._notice_due.pop(key, None)
            self._notice_tries.pop(key, None)
            state: NoticeStateName = "sent" if sent else "failed"
            self._notice_states.setdefault(notice.run_id, {})[notice.notice_id] = NoticeState(
                notice.notice_id, state, notice.attempt, None if sent else error
            )

    def retry_notice(self, notice: Notice, due_in_s: float, error: str) -> bool:
        """Re-arm a notice still in the outbox."""
        key = (notice.run_id, notice.notice_id)
        with self._lock:
            if key not in self._notice_due:
                return False
            self._notice_due[key] = self._clock() + due_in_s
            self._notice_tries[key] = tries = self._notice_tries.get(key, 0) + 1
            self._notice_states.setdefault(notice.run_id, {})[notice.notice_id] = NoticeState(
                notice.notice_id, "retrying", tries, error
            )
            return True

    def notices(self, run_id: str) -> list[NoticeState]:
        """The run's notices by id."""
        with self._lock:
            states = dict(self._notice_states.get(run_id, {}))
        return [states[k] for k in sorted(states)]


__all__ = ["MemoryNotices", "Notice", "NoticeBatch", "NoticeState", "NoticeStore"]
