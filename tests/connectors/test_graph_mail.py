"""Exchange Online through Graph's sendMail: the message's own MIME, Retry-After honoured,
and the failures that stop a run told from those of one message."""

from __future__ import annotations

import pandas as pd
import pytest

from connectors.errors import MailError
from connectors.graph_mail import GraphMailTransport
from connectors.mail import build_message
from tests.fakes.microsoft import MicrosoftFakeServer
from tests.fakes.microsoft_deployment import SENDER, graph_clients, tenant

NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC").to_pydatetime()


def message(to: str = "kim@example.org"):
    return build_message({"key": "ack:NM-000001", "recipients": [to], "subject": "Thank you",
                          "body_text": "Thank you", "body_html": "<p>Thank you</p>"},
                         f"Nearmiss Loop <{SENDER}>", None, NOW)


@pytest.fixture
def server():
    with MicrosoftFakeServer() as fake:
        yield fake
        fake.assert_no_violations()


def test_throttled_sends_wait_as_long_as_exchange_says(server, tmp_path):
    tenant(server)
    pauses: list[float] = []
    transport = GraphMailTransport(graph_clients(server, tmp_path, sleep=pauses.append), SENDER)
    server.faults.fail_next(2, 429, retry_after=17, only="graph.sendMail")
    sent = message()
    with transport.connect() as send:
        send(sent)
    assert pauses == [17, 17]
    (delivered,) = server.graph.sent
    assert delivered.mime and delivered.message["Message-ID"] == sent["Message-ID"]
    assert delivered.sender == SENDER


def test_an_app_without_mail_send_stops_the_run_and_keeps_the_message(server, tmp_path):
    tenant(server, roles=("Sites.Selected",))
    transport = GraphMailTransport(graph_clients(server, tmp_path), SENDER)
    with transport.connect() as send, pytest.raises(MailError) as err:
        send(message())
    assert err.value.stop_run and err.value.retry_later
    assert "give the app the Mail.Send permission" in str(err.value)


def test_a_mailbox_that_does_not_exist_is_named(server, tmp_path):
    tenant(server)
    transport = GraphMailTransport(graph_clients(server, tmp_path), "nobody@oakfield.example")
    with transport.connect() as send, pytest.raises(MailError, match=r"check mail\.sender"):
        send(message())


def test_a_certificate_signs_the_app_in(server, tmp_path, monkeypatch):
    from config.settings import MicrosoftSettings
    from connectors.graph import GraphClients
    from tests.fakes.microsoft_deployment import (
        CLIENT_ID,
        microsoft_section,
        write_certificate,
    )

    tenant(server)
    pem = tmp_path / "nearmiss.pem"
    server.identity.add_certificate(CLIENT_ID, write_certificate(pem))
    monkeypatch.setenv("NEARMISS_TEST_MS_CERT", str(pem))
    section = {**microsoft_section(server, tmp_path), "client_secret_env": None,
               "certificate_env": "NEARMISS_TEST_MS_CERT"}
    clients = GraphClients.from_settings(MicrosoftSettings.model_validate(section),
                                         sleep=lambda s: None)
    with GraphMailTransport(clients, SENDER).connect() as send:
        send(message())
    assert len(server.graph.sent) == 1
    (token,) = [t for t in server.identity.issued if t.app_only]
    assert token.client_id == CLIENT_ID
