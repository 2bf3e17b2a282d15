"""Servers the job tests share: a real SMTP server on 127.0.0.1, and a whole deployment on
the Google fakes (Forms, Sheets, Gmail) with a service-account key the fake token endpoint
accepts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.google import GoogleFakeServer
from tests.fakes.google_credentials import KEY_ENV, write_service_account_key
from tests.fakes.google_deployment import WorkspaceDeployment
from tests.fakes.smtp import SmtpServer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Iterator[WorkspaceDeployment]:
    with GoogleFakeServer(seed=5) as server:
        monkeypatch.setenv(KEY_ENV, str(write_service_account_key(
            tmp_path / "sa.json", "https://oauth2.googleapis.com/token")))
        yield WorkspaceDeployment(tmp_path, server)
        server.assert_no_violations()
