"""Build the connectors a deployment's config asks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.settings import (
    Config,
    EmlFolder,
    Gmail,
    GoogleFormsApi,
    GoogleFormsCsv,
    GoogleSheetsTracker,
    MicrosoftFormsXlsx,
    Settings,
    Smtp,
    XlsxTracker,
)
from connectors.base import FormSource, MailTransport, Tracker
from connectors.form_exports import GoogleFormsCsvSource, MicrosoftFormsXlsxSource
from connectors.mail import EmlFolderTransport, SmtpTransport
from connectors.store import Store
from connectors.templates import Renderer
from connectors.xlsx_tracker import XlsxTracker as XlsxTrackerConnector


@dataclass
class Connectors:
    store: Store
    sources: list[FormSource]
    tracker: Tracker
    transport: MailTransport
    renderer: Renderer
    tracker_location: str  # how emails point managers at the tracker


def build(config: Config, google: Any = None) -> Connectors:
    """The connectors of `config`. `google` (a GoogleClients) replaces the default Google
    authentication, so tests can point the real client libraries at local fakes."""
    s = config.settings
    sources: list[FormSource] = []
    for src in s.sources:
        if isinstance(src, GoogleFormsCsv):
            sources.append(GoogleFormsCsvSource(src.name, src.path, s.tz, s.dayfirst))
        elif isinstance(src, MicrosoftFormsXlsx):
            sources.append(MicrosoftFormsXlsxSource(src.name, src.path, s.tz, src.sheet))
        elif isinstance(src, GoogleFormsApi):
            from connectors.google_forms import GoogleFormsSource

            sources.append(GoogleFormsSource(src.name, src.form_id, _google(config, google),
                                             overlap_minutes=src.overlap_minutes))

    tracker: Tracker
    if isinstance(s.tracker, XlsxTracker):
        tracker = XlsxTrackerConnector(s.tracker.path)
        location = str(s.tracker.path)
    elif isinstance(s.tracker, GoogleSheetsTracker):
        from connectors.google_sheets import GoogleSheetsTracker as SheetsConnector

        tracker = SheetsConnector(s.tracker.spreadsheet_id, _google(config, google),
                                  protection=s.tracker.protection)
        location = f"https://docs.google.com/spreadsheets/d/{s.tracker.spreadsheet_id}"

    transport: MailTransport
    t = s.mail.transport
    if isinstance(t, EmlFolder):
        transport = EmlFolderTransport(t.path)
    elif isinstance(t, Smtp):
        transport = SmtpTransport(t.host, t.port, t.security, t.username, t.password(),
                                  t.timeout_seconds, t.ca_file)
    else:
        from connectors.gmail import GmailTransport

        transport = GmailTransport(_google(config, google), user_id=t.user_id)

    return Connectors(store=Store.open(s.store), sources=sources, tracker=tracker,
                      transport=transport, renderer=Renderer(s.mail.templates),
                      tracker_location=location)


def google_apis(s: Settings) -> list[str]:
    """The Google APIs a deployment uses: its credentials get only their scopes."""
    return [api for api, used in (
        ("forms", any(isinstance(src, GoogleFormsApi) for src in s.sources)),
        ("sheets", isinstance(s.tracker, GoogleSheetsTracker)),
        ("gmail", isinstance(s.mail.transport, Gmail))) if used]


def _google(config: Config, clients: Any) -> Any:
    if clients is not None:
        return clients
    from connectors.google_auth import GoogleClients

    s = config.settings
    assert s.google is not None  # the config check requires it
    return GoogleClients.from_settings(s.google, google_apis(s))
