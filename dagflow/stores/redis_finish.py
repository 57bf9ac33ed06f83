"""The finish script: a step's end, its skips, joins, trigger rules and maps in one atomic step.

The largest script of :class:`~dagflow.stores.redis.RedisRunStore` (see
:meth:`RunStore.finish <dagflow.stores.base.RunStore.finish>` for the contract), called
here; its Lua text is :mod:`dagflow.stores.redis_finish_lua`, the in-memory twin of its
rule path :mod:`dagflow.stores.memory_gates`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import redis

from dagflow.dag.rules import READ_ALL_MAX
from dagflow.keys import EVENTS_STREAM, LEASES, OUTBOX, RUNS, run_key
from dagflow.stores.base import FinishRequest, FinishResult, MapChanges
from dagflow.stores.redis_finish_lua import FINISH


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def wide_parents(plan: str) -> dict[str, str]:
    """The parents (a JSON list each) of the stored plan's tasks with more than
    :data:`~dagflow.dag.rules.READ_ALL_MAX` of them: written with the run, read by the finish
    script when it decides such a task, so that the gates it gets at every step need not
    list them. The store keeps any other text as it is (none: no task is wide)."""
    try:
        tasks = json.loads(plan)["tasks"]
        return {
            task_id: json.dumps(task["parents"])
            for task_id, task in tasks.items()
            if len(task["parents"]) > READ_ALL_MAX
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


class RedisFinish:
    """:meth:`finish` of the Redis run store (mixed into it)."""

    client: redis.Redis
    ttl: int
    events_maxlen: int | None
    _finish: Any
    #: The store's encoder of an event for the stream ('' when it writes no events).
    _event_line: Callable[[Mapping[str, Any] | None], str]

    def _finish_scripts(self) -> None:
        self._finish = self.client.register_script(FINISH)

    def finish(self, request: FinishRequest) -> FinishResult:
        """Run the finish script: fence check, state, output, skips, joins and outbox at once.

        With ``gates`` the script decides the children by their trigger rules instead (in
        the same call: no round trip more).

        With ``push`` (a message for every link), the script also pushes the messages of
        the links it makes ready onto ``push.queue``: this store must be on the broker's
        Redis server and database (the caller checks).
        """
        run_id, task_id = request.run_id, request.task_id
        messages: list[str] = []
        if (
            request.push
            and request.links
            and all(c in request.push.messages for c in request.links)
        ):
            messages = [request.push.messages[c] for c in request.links]
        keys = [
            run_key(run_id, "states"),
            run_key(run_id, "out"),
            run_key(run_id, "meta"),
            run_key(run_id, "claims"),
            LEASES,
            OUTBOX,
            RUNS,
            EVENTS_STREAM,
            run_key(run_id, "info"),
            request.push.queue if messages and request.push else "",
            run_key(run_id, "maps"),
            *(run_key(run_id, f"arr:{child}") for child, _ in request.joins),
        ]
        args: list[str | int] = [
            task_id,
            request.state,
            request.output or "",
            request.total,
            self.ttl,
            request.fence,
            request.token,
        ]
        args += [run_id, _ms(request.grace_s), len(request.links), len(request.joins)]
        args += [
            self._event_line(request.event),
            self.events_maxlen or 0,
            request.end.to_json() if request.end else "",
        ]
        args.append(len(messages))
        args += list(request.links)
        args += [child for child, _ in request.joins]
        args += [need for _, need in request.joins]
        args += messages
        for skipped in request.skip:
            args += [skipped, request.skip_refs.get(skipped, "")]
        args.append(json.dumps(dict(request.maps)) if request.maps else "")
        args.append(request.gates.to_json() if request.gates else "")
        raw = self._finish(keys=keys, args=args)
        if raw[0] == "lost":
            return FinishResult(complete=False, lost=True)
        tag, complete, ok, failed, skipped, first, _written, n_newly, n_cancelled, extra, *rest = (
            raw
        )
        mapped = MapChanges.from_json(extra)
        n = int(n_newly)
        newly, ready = rest[:n], rest[n:]
        reasons: dict[str, str] = {}
        if request.gates is not None:
            reasons = {str(t): str(why) for t, why in zip(newly, ready[:n], strict=True)}
            ready = ready[n:]
        linked = set(request.links)
        counts = {"ok": ok, "failed": failed, "skipped": skipped, "cancelled": n_cancelled}
        return FinishResult(
            complete=bool(int(complete)),
            newly_skipped=tuple(newly),
            counts={k: int(v) for k, v in counts.items()},
            ready=tuple(ready),
            recorded=bool(int(first)),
            cancelled=tag == "cancelled",
            pushed=tuple(c for c in ready if c in linked) if messages else (),
            skip_reasons=reasons,
            mapped=mapped,
        )
