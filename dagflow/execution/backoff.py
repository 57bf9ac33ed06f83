"""Retry delays: exponential backoff with a cap and jitter (pure; randomness is a parameter)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before the next attempt.

    Attributes:
        base_s: Delay after the first failed attempt, in seconds (``DAGFLOW_RETRY_BASE_S``).
        max_s: Cap on any one delay, in seconds (``DAGFLOW_RETRY_MAX_S``); kept below the
            broker's visibility timeout so a delayed retry is never delivered twice.
        jitter: Up to this fraction of the delay is added at random, so many tasks failing
            together do not retry in lockstep (``DAGFLOW_RETRY_JITTER``).
    """

    base_s: float = 1.0
    max_s: float = 300.0
    jitter: float = 0.1

    def delay(self, failed_attempt: int, rand: float | None = None) -> float:
        """Seconds to wait after ``failed_attempt`` (1-based) failed.

        ``base_s * 2 ** (failed_attempt - 1)``, capped at ``max_s``, plus
        ``jitter * rand`` of itself (``rand`` in [0, 1), random if None), capped again.
        """
        rand = random.random() if rand is None else rand
        raw = min(self.base_s * 2.0 ** max(failed_attempt - 1, 0), self.max_s)
        return round(min(raw * (1.0 + self.jitter * rand), self.max_s), 3)
