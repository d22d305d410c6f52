"""Retries with exponential backoff and jitter, within a call's deadline."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Optional, Union

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """How a call that failed with RESOURCE_EXHAUSTED (the server shed it) or
    UNAVAILABLE (unreachable, or stopping) is tried again.

    Retry ``n`` (from 1) waits a random time between half and all of
    ``min(max_backoff, initial_backoff * multiplier ** (n - 1))`` seconds, so
    that clients shed together do not come back together. A call makes at
    most ``1 + max_retries`` attempts, and none that its deadline cannot
    wait for: when the next wait would leave less time before the deadline
    than the last attempt took (or 5 ms), the last error is raised at once.
    """

    max_retries: int = 3
    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0

    def __post_init__(self):
        if self.max_retries < 0:
            raise ValueError("RetryPolicy.max_retries must be 0 or more")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("RetryPolicy: backoffs are 0 or more and the multiplier at least 1")

    def backoff(self, retry: int, rng: Optional[random.Random] = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        r = (rng or random).random()
        return ceiling * (0.5 + 0.5 * r)


def policy_of(retries: Union[int, RetryPolicy, None], default: RetryPolicy) -> RetryPolicy:
    if retries is None:
        return default
    if isinstance(retries, RetryPolicy):
        return retries
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError(f"retries is a number of retries or a RetryPolicy, not {type(retries).__name__}")
    return RetryPolicy(
        max_retries=retries,
        initial_backoff=default.initial_backoff,
        max_backoff=default.max_backoff,
        multiplier=default.multiplier,
    )


class Deadline:
    """The end of a call, from its timeout (None: no end)."""

    def __init__(self, timeout: Optional[float]):
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, not {timeout!r}")
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> Optional[float]:
        if self.at is None:
            return None
        return self.at - time.monotonic()

    def allows_wait(self, seconds: float, attempt_took: float = 0.0) -> bool:
        """Whether a wait of ``seconds`` still leaves time for an attempt
        (as long as the last one took, and at least 5 ms)."""
        rem = self.remaining()
        return rem is None or rem - seconds >= max(0.005, attempt_took)
