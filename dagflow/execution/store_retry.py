"""A step's calls to the run store, retried in the step's process while the store is briefly
unreachable (:class:`~dagflow.errors.StoreUnavailable`). Sending steps is
:mod:`dagflow.execution.publish`; encoding outputs, :mod:`dagflow.execution.outputs`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from dagflow.errors import StoreUnavailable
from dagflow.stores.transport import Backoff, retry_unreachable

if TYPE_CHECKING:
    from dagflow.execution.runtime import Runtime

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: A step's first and largest pause between two tries of an unreachable run store, in seconds.
STEP_BACKOFF_S = (0.1, 2.0)


def with_store(rt: Runtime, what: str, call: Callable[[], T]) -> T:
    """Call the run store, retrying in-process with backoff while it is unreachable.

    A Celery retry would have to publish to the same Redis that just failed (and Celery
    drops the message when that publish fails); waiting here loses nothing. After
    ``DAGFLOW_STORE_RETRY_S`` the error is raised: the step's lease then expires and the
    sweeper runs it again once the store is back.
    """

    def retrying(exc: BaseException) -> None:
        logger.warning("dagflow: run store unreachable for %s (%s); retrying", what, exc)

    try:
        return retry_unreachable(
            call, rt.settings.store_retry_s, Backoff(*STEP_BACKOFF_S), retrying
        )
    except StoreUnavailable as exc:
        logger.error("dagflow: run store unreachable for %s; giving up: %s", what, exc)
        raise
