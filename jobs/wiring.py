"""Build the connectors a deployment's config asks for.

`CONNECTORS` is the one place that says which connector each kind of source, tracker and
mail transport builds: a run (`build`) and `nearmiss doctor` both get theirs from
`connector`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

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
    google_apis,
)
from connectors.base import FormSource, MailTransport, Tracker
from connectors.form_exports import GoogleFormsCsvSource, MicrosoftFormsXlsxSource
from connectors.mail import EmlFolderTransport, SmtpTransport
from connectors.store import Store
from connectors.templates import Renderer
from connectors.xlsx_tracker import XlsxTracker as XlsxTrackerConnector

# The GoogleClients of one Google connector, made only when such a connector is built.
GoogleFactory = Callable[[], Any]
Builder = Callable[[Any, Settings, GoogleFactory], Any]


@dataclass
class Connectors:
    store: Store
    sources: list[FormSource]
    tracker: Tracker
    transport: MailTransport
    renderer: Renderer
    tracker_location: str  # how emails point managers at the tracker


def _google_forms_csv(src: GoogleFormsCsv, s: Settings, google: GoogleFactory) -> FormSource:
    return GoogleFormsCsvSource(src.name, src.path, s.tz, s.dayfirst)


def _microsoft_forms_xlsx(src: MicrosoftFormsXlsx, s: Settings,
                          google: GoogleFactory) -> FormSource:
    return MicrosoftFormsXlsxSource(src.name, src.path, s.tz, src.sheet)


def _google_forms_api(src: GoogleFormsApi, s: Settings, google: GoogleFactory) -> FormSource:
    from connectors.google_forms import GoogleFormsSource

    return GoogleFormsSource(src.name, src.form_id, google(),
                             overlap_minutes=src.overlap_minutes)


def _xlsx_tracker(t: XlsxTracker, s: Settings, google: GoogleFactory) -> Tracker:
    return XlsxTrackerConnector(t.path)


def _google_sheets(t: GoogleSheetsTracker, s: Settings, google: GoogleFactory) -> Tracker:
    from connectors.google_sheets import GoogleSheetsTracker as SheetsConnector

    return SheetsConnector(t.spreadsheet_id, google(), protection=t.protection)


def _eml_folder(t: EmlFolder, s: Settings, google: GoogleFactory) -> MailTransport:
    return EmlFolderTransport(t.path)


def _smtp(t: Smtp, s: Settings, google: GoogleFactory) -> MailTransport:
    return SmtpTransport(t.host, t.port, t.security, t.username, t.password(),
                         t.timeout_seconds, t.ca_file)


def _gmail(t: Gmail, s: Settings, google: GoogleFactory) -> MailTransport:
    from connectors.gmail import GmailTransport

    return GmailTransport(google(), user_id=t.user_id)


# Each kind of the config's sources, tracker and mail transport -> how its connector is built.
# The Google connectors' modules are imported only when a config uses them.
CONNECTORS: dict[type[BaseModel], Builder] = {
    GoogleFormsCsv: _google_forms_csv,
    MicrosoftFormsXlsx: _microsoft_forms_xlsx,
    GoogleFormsApi: _google_forms_api,
    XlsxTracker: _xlsx_tracker,
    GoogleSheetsTracker: _google_sheets,
    EmlFolder: _eml_folder,
    Smtp: _smtp,
    Gmail: _gmail,
}


def connector(config: Config, part: BaseModel, google: Any = None) -> Any:
    """The connector one part of `config` builds: a source (a FormSource), the tracker (a
    Tracker) or the mail transport (a MailTransport). Building one does no I/O.

    `google` (a GoogleClients) replaces the default Google authentication, so tests can
    point the real client libraries at local fakes; without it, each Google connector gets
    clients of its own from the config's `google:` section.
    """
    return CONNECTORS[type(part)](part, config.settings, lambda: _google(config, google))


def build(config: Config, google: Any = None, store: Store | None = None) -> Connectors:
    """The connectors of `config`; `google` as for `connector`; `store` instead of the
    configured one (a preview's scratch copy)."""
    s = config.settings
    sources = [connector(config, src, google) for src in s.sources]
    tracker = connector(config, s.tracker, google)
    transport = connector(config, s.mail.transport, google)
    # the store last: a config whose connectors cannot be built leaves it untouched
    return Connectors(store=store or Store.open(s.store), sources=sources, tracker=tracker,
                      transport=transport, renderer=Renderer(s.mail.templates),
                      tracker_location=_tracker_location(s.tracker))


def _tracker_location(t: XlsxTracker | GoogleSheetsTracker) -> str:
    if isinstance(t, GoogleSheetsTracker):
        return f"https://docs.google.com/spreadsheets/d/{t.spreadsheet_id}"
    return str(t.path)


def _google(config: Config, clients: Any) -> Any:
    if clients is not None:
        return clients
    from connectors.google_auth import GoogleClients

    s = config.settings
    assert s.google is not None  # the config check requires it
    return GoogleClients.from_settings(s.google, google_apis(s))
