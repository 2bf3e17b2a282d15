"""A 429 whose Retry-After is an HTTP date (RFC 7231 IMF-fixdate), over real HTTP from the
Google fakes: the client waits until that date, through both client libraries (Gmail's
google-api-python-client, the Sheets tracker's gspread/requests)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import formatdate

import pytest

from connectors.gmail import GmailTransport
from connectors.google_auth import GoogleClients
from connectors.google_sheets import GoogleSheetsTracker
from connectors.mail import build_message
from tests.fakes.google import GoogleFakeServer
from transforms.tracker import REPORTS

SEND = "gmail.users.messages.send"


@pytest.fixture
def server():
    with GoogleFakeServer(seed=4) as srv:
        yield srv
        srv.assert_no_violations()


def clients(server: GoogleFakeServer, pauses: list[float]) -> GoogleClients:
    return GoogleClients(endpoint=server.url, sleep=pauses.append, attempts=3,
                         max_requests_per_minute=100000)


def http_date(seconds_from_now: float) -> str:
    """`Sun, 06 Nov 1994 08:49:37 GMT`: whole seconds, so the wait may be up to 1 s shorter."""
    return formatdate(time.time() + seconds_from_now, usegmt=True)


def waits(pauses: list[float]) -> list[float]:
    """The backoff pauses (the pacer's own sub-millisecond waits go through sleep too)."""
    return [p for p in pauses if p >= 0.01]


def message():
    return build_message({"key": "ack:NM-000001", "recipients": ["kim@example.org"],
                          "subject": "Near miss NM-000001 received", "body_text": "Thank you",
                          "body_html": "<p>Thank you</p>"},
                         "Nearmiss Loop <sender@example.com>", None,
                         datetime(2026, 11, 23, 9, 0, tzinfo=UTC))


def test_gmail_waits_until_the_date_of_a_429(server):
    """Gmail answers 429 with Retry-After 30 seconds ahead as a date: one pause of about
    30 s, then the message goes."""
    pauses: list[float] = []
    server.faults.fail_next(1, 429, retry_after=http_date(30), only=SEND)
    with GmailTransport(clients(server, pauses)).connect() as send:
        send(message())
    assert len(server.gmail.sent) == 1
    (pause,) = waits(pauses)
    assert 27 < pause <= 30


def test_the_sheets_tracker_waits_until_the_date_and_a_past_date_means_at_once(server):
    """Sheets answers 429 with a date 20 s ahead, then with one already past: the read waits
    about 20 s, then not at all (never a guessed backoff), and succeeds."""
    pauses: list[float] = []
    sid = server.sheets.create_spreadsheet("Near-miss tracker", ["Sheet1"])
    server.faults.fail_next(1, 429, retry_after=http_date(20), only="sheets.spreadsheets.get")
    server.faults.fail_next(1, 429, retry_after=http_date(-60), only="sheets.spreadsheets.get")
    assert GoogleSheetsTracker(sid, clients(server, pauses)).read([REPORTS]) == {}
    assert len(server.faults.injected) == 2
    (pause,) = waits(pauses)
    assert 17 < pause <= 20
    assert 0.0 in pauses
