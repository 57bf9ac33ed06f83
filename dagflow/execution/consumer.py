"""The worker's Celery consumer: Celery's own, without its exit on a lost Redis connection.

Measured here (celery 5.7, kombu 5.7, redis-py 8.2): when the broker's Redis dies while a
worker holds an unacknowledged message (every running ``acks_late`` step), Celery's
``on_connection_error_after_connected`` collects the kombu connection, which detaches its
transport, and then closes it. Closing the Redis channel restores the unacknowledged
messages through a new connection pool built from that detached transport, and
``AttributeError: 'NoneType' object has no attribute 'hostname'`` escapes Celery's error
filter: the worker logs ``Unrecoverable error`` and exits. It happened on every SIGKILL of
the primary in ``tests/integration/test_sentinel.py`` (both workers, with and without
``worker_cancel_long_running_tasks_on_connection_loss``) and on a plain ``redis://`` server
killed the same way (celery/celery#9250 and #7185 are open on this family of crashes).

:class:`Consumer` cuts the steps' messages loose from the dead channel instead: no restore,
and no later ack or reject through it (a step that ends after the reconnect acknowledges its
message on that channel, and the same AttributeError exits the worker; measured on the
first run of the test with only the restore skipped). Neither could work anyway: the server
is gone, or it is a blip and a restored copy would run next to the step still running. The
messages stay in kombu's ``unacked`` hash, and dagflow does not need them back: a step still
running commits when the store is back, and one that was cancelled is run again by the
sweeper when its lease expires (``DAGFLOW_LEASE_S`` + ``DAGFLOW_SWEEP_S``). kombu restores
the hash's messages after ``visibility_timeout``; their steps are done by then, and a
finished step's claim refuses them.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer


def _ignore(*args: Any, **kwargs: Any) -> None:
    """An ack or reject on a channel whose connection is gone: nothing to do."""


def cut_loose(channel: Any) -> None:
    """Make a channel whose connection was lost restore, ack and reject nothing."""
    channel.do_restore = False
    # Instance attributes shadow kombu's methods on this one dead channel only.
    channel.basic_ack = _ignore
    channel.basic_reject = _ignore


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Celery's consumer that survives a lost broker connection (see the module doc)."""

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        """Cut the dead channel loose, then reconnect as Celery does."""
        channel: Any = getattr(self.connection, "_default_channel", None)
        if channel is not None:
            cut_loose(channel)
        super().on_connection_error_after_connected(exc)
