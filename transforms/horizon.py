"""When the loop's results can next change with nothing new coming in.

A run's results depend on its inputs (responses, settings, the tracker, the outbox) and on
the clock. The clock matters at day granularity (action and verification due dates,
reminders keyed by day, the monthly brief, the archive cutoff, all in the deployment's
time zone) and at a few instants of the data itself: a time "in the future" stops being
one, an untriaged report's triage due time passes (the Overdue column). Until the earliest
of those, a run with unchanged inputs would compute exactly what the last one did.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

RECEIVED = frozenset({"submitted_at", "first_submitted_at", "updated_at"})


def next_midnight(now: pd.Timestamp, tz: ZoneInfo) -> pd.Timestamp:
    """The start of the next local day, in UTC. A zone that skips midnight on a clock
    change (some do) gives the first instant of that day."""
    tomorrow = now.tz_convert(tz).date() + timedelta(days=1)
    # A naive local midnight resolved by zoneinfo; fold=0 takes the earlier of two.
    local = datetime.combine(tomorrow, time(0), tzinfo=tz)
    return pd.Timestamp(local).tz_convert("UTC")


def next_change(frames: Iterable[pd.DataFrame], now: pd.Timestamp, tz: ZoneInfo
                ) -> pd.Timestamp:
    """The earliest instant after `now` at which time alone can change a run's results:
    the next local midnight, or any time value in `frames` that is still ahead of `now`
    (conservative: every date-time column counts, whatever the rule that reads it)."""
    now = pd.Timestamp(now).tz_convert("UTC")
    soonest = next_midnight(now, tz)
    for frame in frames:
        for column in frame.columns:
            values = frame[column]
            if not isinstance(values.dtype, pd.DatetimeTZDtype):
                continue
            # A time equal to now is still ahead (what falls due at it is overdue only
            # after it), except when a report was received: its receipt is the past, and
            # a report dated "when first received" carries the run's own time.
            ahead = values[values >= now] if column not in RECEIVED else values[values > now]
            if len(ahead):
                soonest = min(soonest, ahead.min().tz_convert("UTC"))
    return soonest
