"""The exit status tells the truth about email: a run in which any message failed exits 1
with one line; a temporary refusal is retried after a growing delay, a permanent one is
shown where a manager looks (the Loop column and the Data quality sheet)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.store import Store
from jobs.cli import main
from jobs.pipeline import RunFailed
from tests.fakes.deployment import Deployment
from tests.fakes.google import GoogleFakeServer
from tests.fakes.google_credentials import KEY_ENV, write_service_account_key
from tests.fakes.google_deployment import GoogleDeployment

SEND = "gmail.users.messages.send"



@pytest.fixture
def dep(tmp_path, smtp) -> Deployment:
    d = Deployment(tmp_path)
    d.data["mail"]["transport"] = {"kind": "smtp", "host": "127.0.0.1", "port": smtp.port,
                                   "security": "none"}
    d.add_google("2026-11-20 10:00", email="kim@example.org")
    return d


def test_a_refused_recipient_is_shown_to_managers_and_not_retried(dep, smtp, capsys):
    smtp.refuse = {"kim@example.org"}
    code = main(["--config", str(dep.config().path), "run", "--now", "2026-11-23T09:00Z"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and err == [
        "nearmiss: error: 1 email refused for good: recipients refused: kim@example.org (550 "
        "5.1.1 mailbox unavailable); see the Loop column and the Data quality sheet"]
    refusal = "acknowledgement refused (recipients refused: kim@example.org (550 5.1.1 " \
        "mailbox unavailable))"
    assert dep.sheet()[0]["Loop"] == f"not delivered: {refusal}"
    dq = dep.sheet("Data quality")
    assert [(r["Report ID"], r["Reporter contactable"]) for r in dq] == [
        ("NM-000001", f"No: {refusal}")]

    smtp.refuse = set()
    dep.run(now="2026-11-23 10:00")  # nothing failed in this run: exit 0
    assert smtp.messages == []  # a permanent refusal is not tried again


def test_a_temporary_refusal_waits_then_is_sent(dep, smtp):
    smtp.reject_after = 0  # 451 to every message
    with pytest.raises(RunFailed, match=r"^1 email not sent: .*451 4\.3\.0 try again later; "
                                        "retried on a later run$"):
        dep.run(now="2026-11-23 09:00")
    assert "retrying" in dep.sheet()[0]["Loop"]
    smtp.reject_after = None
    waiting = dep.run(now="2026-11-23 09:05")  # inside the 15-minute delay: not tried
    assert (waiting.emails_sent, waiting.emails_pending) == (0, 1) and smtp.messages == []
    sent = dep.run(now="2026-11-23 09:16")
    assert sent.emails_sent == 1 and smtp.keys() == ["ack:NM-000001"]
    assert dep.sheet()[0]["Loop"] == "acknowledged"
    trail = [e["event"] for e in Store.open(dep.folder / "nearmiss.db").audit_trail(
        "NM-000001")]
    assert trail.count("email failed") == 1 and trail.count("email sent") == 1


@pytest.fixture
def gmail(tmp_path, monkeypatch) -> Iterator[GoogleDeployment]:
    monkeypatch.setenv(KEY_ENV, str(write_service_account_key(
        tmp_path / "sa.json", "https://oauth2.googleapis.com/token")))
    with GoogleFakeServer(seed=3) as server:
        d = GoogleDeployment(tmp_path, server)
        d.data["mail"]["transport"] = {"kind": "gmail"}
        d.data["google"]["delegated_user"] = "nearmiss@oakfield-care.example"
        d.add("2026-11-20 10:00")
        yield d


def test_gmail_unavailable_fails_the_run_and_keeps_the_message(gmail):
    gmail.server.faults.fail_next(100, 503, only=SEND)
    with pytest.raises(RunFailed, match=r"^(1 email not sent: )?Gmail.*503"):
        gmail.run("2026-11-23 09:00")
    assert gmail.server.gmail.sent == []
    assert len(gmail.store.pending()) == 1  # still queued
    gmail.server.faults.reset()
    gmail.run("2026-11-23 10:00")
    assert [str(m["X-Nearmiss-Key"]) for m in gmail.server.gmail.sent] == ["ack:NM-000001"]


def test_gmail_refusing_a_message_is_a_permanent_failure(gmail):
    gmail.server.faults.fail_next(1, 400, only=SEND)
    with pytest.raises(RunFailed, match=r"^1 email refused for good: Gmail refused the "
                                        r"message: .*400.*; see the Loop column"):
        gmail.run("2026-11-23 09:00")
    assert gmail.sheet()["NM-000001"]["Loop"].startswith(
        "not delivered: acknowledgement refused (Gmail refused the message")
    gmail.run("2026-11-23 10:00")  # not retried, and nothing failed in this run
    assert gmail.server.gmail.sent == []
