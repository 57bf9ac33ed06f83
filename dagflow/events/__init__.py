"""What happened: the event model and JSONL log, the collector, the scheduler's state store.

``from dagflow.events import iter_events, load_events`` keeps working: the log's names are
re-exported here.
"""

from dagflow.events.log import Event, EventName, JsonlEventLog, iter_events, load_events

__all__ = ["Event", "EventName", "JsonlEventLog", "iter_events", "load_events"]
