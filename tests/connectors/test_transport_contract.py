"""One contract for every MailTransport: each message arrives once, whole, with its key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pandas as pd
import pytest

from connectors.base import MailTransport
from connectors.mail import build_message
from tests.fakes.smtp import SmtpServer

NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC").to_pydatetime()
Delivered = Callable[[], list[EmailMessage]]


def eml_folder(tmp_path: Path) -> Iterator[tuple[MailTransport, Delivered]]:
    from email import message_from_bytes, policy

    from connectors.mail import EmlFolderTransport

    folder = tmp_path / "outbox"
    yield EmlFolderTransport(folder), lambda: [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(folder.glob("*.eml"))]


def smtp(tmp_path: Path) -> Iterator[tuple[MailTransport, Delivered]]:
    from connectors.mail import SmtpTransport

    with SmtpServer() as server:
        yield SmtpTransport("127.0.0.1", server.port, "none"), lambda: server.messages


def gmail(tmp_path: Path) -> Iterator[tuple[MailTransport, Delivered]]:
    from connectors.gmail import GmailTransport
    from connectors.google_auth import GoogleClients
    from tests.fakes.google import GoogleFakeServer

    with GoogleFakeServer() as server:
        clients = GoogleClients(endpoint=server.url, sleep=lambda s: None,
                                max_requests_per_minute=100000)
        yield GmailTransport(clients), lambda: server.gmail.sent
        server.assert_no_violations()


def graph_mail(tmp_path: Path) -> Iterator[tuple[MailTransport, Delivered]]:
    from connectors.graph_mail import GraphMailTransport
    from tests.fakes.microsoft import MicrosoftFakeServer
    from tests.fakes.microsoft_deployment import SENDER, graph_clients, tenant

    with MicrosoftFakeServer() as server:
        tenant(server)
        yield GraphMailTransport(graph_clients(server, tmp_path), SENDER), lambda: [
            m.message for m in server.graph.sent]
        server.assert_no_violations()


IMPLEMENTATIONS = {"eml_folder": eml_folder, "smtp": smtp, "gmail": gmail,
                   "graph_mail": graph_mail}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def transport(request, tmp_path) -> Iterator[tuple[MailTransport, Delivered]]:
    yield from IMPLEMENTATIONS[request.param](tmp_path)


def message(key: str, html: str | None = "<p>Thank you &amp; well done</p>") -> EmailMessage:
    return build_message({"key": key, "recipients": ["kim@example.org", "jo@example.org"],
                          "subject": "Near miss NM-000001 received: thank you",
                          "body_text": "Thank you & well done", "body_html": html},
                         "Nearmiss Loop <loop@care.example>", None, NOW)


def test_each_message_arrives_whole_with_its_key(transport):
    send_through, delivered = transport
    with send_through.connect() as send:
        send(message("ack:NM-000001"))
        send(message("ack:NM-000002", html=None))
    got = sorted(delivered(), key=lambda m: str(m["X-Nearmiss-Key"]))
    assert [str(m["X-Nearmiss-Key"]) for m in got] == ["ack:NM-000001", "ack:NM-000002"]
    first = got[0]
    assert first["Subject"] == "Near miss NM-000001 received: thank you"
    assert first["To"] == "kim@example.org, jo@example.org"
    assert first.get_body(("plain",)).get_content().strip() == "Thank you & well done"
    assert "&amp;" in first.get_body(("html",)).get_content()
    assert got[1].get_body(("html",)) is None
