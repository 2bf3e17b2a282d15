"""Errors a user can cause or fix, and the one place that decides what is worth retrying."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TypeVar

T = TypeVar("T")


class NearmissError(Exception):
    """A failure with a one-line message a manager or administrator can act on."""

    exit_code = 1


class SourceError(NearmissError):
    """A form source could not be read."""


class TrackerError(NearmissError):
    """The tracker could not be read or written."""


class StoreError(NearmissError):
    """The local store could not be opened or written."""


class MailError(NearmissError):
    """A message could not be sent. `retry_later` means keep it queued for the next run."""

    def __init__(self, message: str, *, retry_later: bool = True, stop_run: bool = False) -> None:
        super().__init__(message)
        self.retry_later = retry_later
        self.stop_run = stop_run  # the connection itself failed: the rest would fail too


class LockedError(NearmissError):
    """Another run holds the lock."""


class ApiError(NearmissError):
    """A cloud API refused a request for a reason retrying will not fix."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableApiError(ApiError):
    """Quota (429), server errors (5xx), time-outs: worth another attempt after a pause."""

    def __init__(self, message: str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


def is_retryable(status: int) -> bool:
    """Time-outs (408), quota (429) and server errors (5xx) are worth another attempt;
    every other refusal needs a person to change something."""
    return status in (408, 429) or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def with_retries(call: Callable[[], T], *, attempts: int = 6, base: float = 1.0,
                 cap: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `call`, retrying RetryableApiError with exponential backoff and full jitter.

    A server's Retry-After wins over the computed pause. After the last attempt the error
    is re-raised as a plain ApiError so the run ends with its message.
    """
    for attempt in range(attempts):
        try:
            return call()
        except RetryableApiError as exc:
            if attempt == attempts - 1:
                raise ApiError(f"{exc} (gave up after {attempts} attempts)", exc.status) from None
            pause = exc.retry_after if exc.retry_after is not None else random.uniform(
                0, min(cap, base * 2**attempt))
            sleep(min(pause, cap))
    raise AssertionError("unreachable")
