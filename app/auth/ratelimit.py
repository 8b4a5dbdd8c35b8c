"""A per-principal token bucket, in process memory.

Each API process keeps its own buckets, so N workers allow up to N times the configured rate:
good enough to stop a runaway script without a shared store. A fleet-wide limit belongs in the
ingress or in Redis.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from app.errors import AppError


class TooManyRequests(AppError):
    status, title, slug = 429, "Too many requests", "too-many-requests"


class RateLimiter:
    """``per_minute`` requests a minute on average, in bursts of up to ``per_minute``."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_principals: int = 100_000,
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self.max_principals = max_principals
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Take one token for ``key``, or raise 429 with the seconds until one is free."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                retry_after = max(1, math.ceil((1.0 - tokens) / self.rate))
                raise TooManyRequests(
                    f"Rate limit of {int(self.capacity)} requests a minute exceeded; "
                    f"retry in {retry_after} s.",
                    headers={"Retry-After": str(retry_after)},
                )
            self._buckets[key] = (tokens - 1.0, now)
            self._buckets.move_to_end(key)
            # The least recently seen bucket has refilled the longest; forgetting it (a full
            # bucket again) keeps memory bounded.
            while len(self._buckets) > self.max_principals:
                self._buckets.popitem(last=False)
