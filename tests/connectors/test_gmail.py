"""GmailTransport against the Gmail fake over real HTTP: the raw message arrives intact, and
each kind of failure becomes the MailError the pipeline acts on (keep or drop the message,
go on or stop the run)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from config.settings import GoogleSettings
from connectors.errors import ApiError, MailError
from connectors.gmail import GmailTransport, mail_error, raw_message
from connectors.google_auth import GoogleClients
from connectors.mail import build_message
from tests.fakes.google import GoogleFakeServer
from tests.fakes.google_credentials import FAST, KEY_ENV, fake_clients, write_service_account_key
from tests.fakes.smtp import free_port

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SEND = "gmail.users.messages.send"


def message(key: str = "ack:NM-000001", to: tuple[str, ...] = ("kim@example.org",)):
    return build_message({"key": key, "recipients": list(to),
                          "subject": "Near miss NM-000001 received: merci, Zoë",
                          "body_text": "Thank you — we will look at it this week.",
                          "body_html": "<p>Thank you &mdash; we will look at it.</p>"},
                         "Nearmiss Loop <sender@example.com>", "quality@example.com", NOW)


@pytest.fixture
def server():
    with GoogleFakeServer(seed=4) as srv:
        yield srv


def test_the_raw_message_arrives_byte_for_byte(server):
    sent = message()
    with GmailTransport(fake_clients(server)).connect() as send:
        assert send(sent) is None
    (record,) = server.gmail.messages
    assert record.raw == bytes(sent) and record.user_id == "me"
    got = server.gmail.sent[0]
    for header in ("From", "To", "Reply-To", "Subject", "Date", "Message-ID", "X-Nearmiss-Key"):
        assert got[header] == sent[header]
    assert got["Subject"] == "Near miss NM-000001 received: merci, Zoë"
    assert got.get_body(("plain",)).get_content() == sent.get_body(("plain",)).get_content()
    assert got.get_body(("html",)).get_content() == sent.get_body(("html",)).get_content()
    (request,) = [r for r in server.requests if r.method_id == SEND]
    body = json.loads(request.body)
    assert set(body) == {"raw"} and "+" not in body["raw"] and "/" not in body["raw"]
    assert base64.urlsafe_b64decode(body["raw"]) == bytes(sent) == base64.urlsafe_b64decode(
        raw_message(sent))
    server.assert_no_violations()


def test_a_bad_address_fails_that_message_only_without_a_request(server):
    with GmailTransport(fake_clients(server)).connect() as send:
        with pytest.raises(MailError, match="not an email address: 'kim at example'") as err:
            send(message(to=("kim at example",)))
        assert not err.value.retry_later and not err.value.stop_run
        server.faults.fail_next(1, 400, only=SEND)  # Gmail's own 400 for a message
        with pytest.raises(MailError, match="Gmail refused the message") as err:
            send(message())
        assert not err.value.retry_later and not err.value.stop_run
        send(message("ack:NM-000002"))
    assert server.counters[SEND] == 2 and len(server.gmail.sent) == 1


def test_quota_and_server_errors_are_retried_then_kept_for_later(server):
    pauses: list[float] = []
    clients = GoogleClients(endpoint=server.url, sleep=pauses.append, attempts=3,
                            max_requests_per_minute=100000)
    with GmailTransport(clients).connect() as send:
        server.faults.fail_next(2, 429, retry_after=7, only=SEND)
        send(message("a"))  # third attempt goes through
        # Retry-After honoured (the pacer's sub-millisecond waits go through sleep too)
        assert [p for p in pauses if p >= 1] == [7.0, 7.0]
        outcomes = []
        server.faults.fail_next(9, 503, only=SEND)
        for key in ("b", "c", "d"):
            with pytest.raises(MailError) as err:
                send(message(key))
            outcomes.append((err.value.retry_later, err.value.stop_run))
        # kept for the next run each time; the third in a row also stops this run
        assert outcomes == [(True, False), (True, False), (True, True)]
        assert "HTTP 503" in str(err.value) and "gave up after 3 attempts" in str(err.value)
    assert [m["X-Nearmiss-Key"] for m in server.gmail.sent] == ["a"]


def test_unreachable_gmail_stops_the_run():
    clients = GoogleClients(endpoint=f"http://127.0.0.1:{free_port()}", attempts=2, timeout=5,
                            sleep=lambda s: None)
    with GmailTransport(clients).connect() as send:
        with pytest.raises(MailError, match="cannot reach Google") as err:
            send(message())
    assert err.value.stop_run and err.value.retry_later


@pytest.fixture
def delegated(tmp_path, monkeypatch):
    with GoogleFakeServer(require_auth=True, seed=4) as server:
        monkeypatch.setenv(KEY_ENV, str(write_service_account_key(tmp_path / "sa.json",
                                                                  server.url + "/token")))
        settings = GoogleSettings(key_file_env=KEY_ENV, delegated_user="sender@example.com")
        yield server, GoogleClients.from_settings(settings, ["gmail"], endpoint=server.url,
                                                  **FAST)


def test_delegation_not_granted_stops_the_run_with_the_fix(delegated):
    server, clients = delegated
    fix = ("grant the gmail.send scope to the service account's domain-wide delegation for "
           "sender@example.com")
    server.tokens.fail_next(1, "unauthorized_client")  # what Google says without delegation
    with GmailTransport(clients).connect() as send:
        with pytest.raises(MailError) as err:
            send(message())
    assert err.value.stop_run and err.value.retry_later
    assert "Google refused the credentials (unauthorized_client" in str(err.value)
    assert fix in str(err.value)

    server.gmail.insufficient_scope = True  # a token without a send scope
    with GmailTransport(clients).connect() as send:
        with pytest.raises(MailError) as err:
            send(message())
    assert err.value.stop_run and err.value.retry_later
    assert "HTTP 403: Request had insufficient authentication scopes" in str(err.value)
    assert fix in str(err.value)
    assert server.gmail.sent == []

    server.gmail.insufficient_scope = False
    with GmailTransport(clients).connect() as send:
        send(message())
    assert server.tokens.issued[-1].subject == "sender@example.com"
    assert len(server.gmail.sent) == 1
    server.assert_no_violations()


def test_errors_that_say_nothing_about_the_message_stop_the_run():
    clients = GoogleClients(delegated_user="sender@example.com")
    precondition = mail_error(ApiError("Gmail: HTTP 400: Precondition check failed.", 400),
                              clients)
    assert precondition.stop_run and precondition.retry_later
    disabled = mail_error(ApiError("Gmail: HTTP 403: Gmail API has not been used in project "
                                   "123 before or it is disabled.", 403), clients)
    assert disabled.stop_run and "enable the Gmail API" in str(disabled)
    unknown_user = mail_error(ApiError("Gmail: HTTP 404: Not found", 404), clients)
    assert not unknown_user.retry_later
