from zoneinfo import ZoneInfo

import pandas as pd

from transforms.horizon import next_change, next_midnight

LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_the_next_local_midnight_in_utc_across_clock_changes():
    assert next_midnight(ts("2026-11-23 09:00"), LONDON) == ts("2026-11-24 00:00")
    # The evening before the clocks go forward (29 March) and back (25 October).
    assert next_midnight(ts("2026-03-28 22:00"), LONDON) == ts("2026-03-29 00:00")
    assert next_midnight(ts("2026-03-29 22:30"), LONDON) == ts("2026-03-29 23:00")
    assert next_midnight(ts("2026-10-25 12:00"), LONDON) == ts("2026-10-26 00:00")
    # 03:00 UTC is still the previous evening in New York.
    assert next_midnight(ts("2026-11-24 03:00"), NEW_YORK) == ts("2026-11-24 05:00")


def test_the_earliest_time_still_ahead_in_any_date_time_column():
    now = ts("2026-11-23 09:00")
    view = pd.DataFrame({
        "occurred_at": pd.Series([ts("2026-11-22 10:00"), pd.NaT, ts("2026-11-23 15:00")],
                                 dtype="datetime64[us, UTC]"),
        "triage_due": pd.Series([ts("2026-11-23 13:00"), ts("2026-11-23 08:00"), pd.NaT],
                                dtype="datetime64[us, UTC]"),
        "label": ["2026-11-23 09:30", None, "x"],  # text is not a time the rules read
    })
    assert next_change([view], now, LONDON) == ts("2026-11-23 13:00")
    assert next_change([view.iloc[:0]], now, LONDON) == ts("2026-11-24 00:00")
    assert next_change([view[["occurred_at"]], view.iloc[:0]], now, LONDON) == ts(
        "2026-11-23 15:00")
    # A time exactly now is still ahead: what falls due at it is overdue only after it, so
    # the next run must look again. A time past midnight waits for midnight.
    at_now = pd.DataFrame({"t": pd.Series([now, ts("2026-11-25 00:00")])})
    assert next_change([at_now], now, LONDON) == now
    later = pd.DataFrame({"t": pd.Series([ts("2026-11-25 00:00")])})
    assert next_change([later], now, LONDON) == ts("2026-11-24 00:00")
    # ... but a report received at the run's own time has nothing left to happen at it
    received = pd.DataFrame({"submitted_at": pd.Series([now])})
    assert next_change([received], now, LONDON) == ts("2026-11-24 00:00")
