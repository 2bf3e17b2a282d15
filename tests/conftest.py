"""Shared fixtures: the bundled rules, the deployment zone, a fixed clock."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from config import Rules, load_rules


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules()


@pytest.fixture(scope="session")
def tz() -> ZoneInfo:
    return ZoneInfo("Europe/London")


@pytest.fixture
def now() -> pd.Timestamp:
    return pd.Timestamp("2026-11-23 09:00", tz="UTC")
