"""Build the connectors a deployment's config asks for.

`CONNECTORS` is the one place that says which connector each kind of source, tracker and
mail transport builds: a run (`build`) and `nearmiss doctor` both get theirs from
`connector`. The cloud clients (Google's, Microsoft Graph's) are made only when a config
uses them, once per deployment, and tests hand in clients pointed at local fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from config.settings import (
    Config,
    EmlFolder,
    ExcelGraphTracker,
    Gmail,
    GoogleFormsApi,
    GoogleFormsCsv,
    GoogleSheetsTracker,
    GraphMail,
    MicrosoftFormsGraph,
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


@dataclass
class Clients:
    """The cloud clients of one deployment, each made the first time a connector needs it:
    `google()` a GoogleClients, `microsoft()` a GraphClients."""

    google: Callable[[], Any]
    microsoft: Callable[[], Any]


Builder = Callable[[Any, Settings, Clients], Any]


@dataclass
class Connectors:
    store: Store
    sources: list[FormSource]
    tracker: Tracker
    transport: MailTransport
    renderer: Renderer
    tracker_location: str  # how emails point managers at the tracker
    # the tracker shares no client with the sources: it may be read while they are
    tracker_apart: bool = False


def _google_forms_csv(src: GoogleFormsCsv, s: Settings, clients: Clients) -> FormSource:
    return GoogleFormsCsvSource(src.name, src.path, s.tz, s.dayfirst)


def _microsoft_forms_xlsx(src: MicrosoftFormsXlsx, s: Settings,
                          clients: Clients) -> FormSource:
    return MicrosoftFormsXlsxSource(src.name, src.path, s.tz, src.sheet)


def _google_forms_api(src: GoogleFormsApi, s: Settings, clients: Clients) -> FormSource:
    from connectors.google_forms import GoogleFormsSource

    return GoogleFormsSource(src.name, src.form_id, clients.google(),
                             overlap_minutes=src.overlap_minutes)


def _xlsx_tracker(t: XlsxTracker, s: Settings, clients: Clients) -> Tracker:
    return XlsxTrackerConnector(t.path)


def _google_sheets(t: GoogleSheetsTracker, s: Settings, clients: Clients) -> Tracker:
    from connectors.google_sheets import GoogleSheetsTracker as SheetsConnector

    return SheetsConnector(t.spreadsheet_id, clients.google(), protection=t.protection)


def _eml_folder(t: EmlFolder, s: Settings, clients: Clients) -> MailTransport:
    return EmlFolderTransport(t.path)


def _smtp(t: Smtp, s: Settings, clients: Clients) -> MailTransport:
    return SmtpTransport(t.host, t.port, t.security, t.username, t.password(),
                         t.timeout_seconds, t.ca_file)


def _gmail(t: Gmail, s: Settings, clients: Clients) -> MailTransport:
    from connectors.gmail import GmailTransport

    return GmailTransport(clients.google(), user_id=t.user_id)


def _microsoft_forms_graph(src: MicrosoftFormsGraph, s: Settings,
                           clients: Clients) -> FormSource:
    from connectors.microsoft_forms import MicrosoftFormsGraphSource

    return MicrosoftFormsGraphSource(src.name, src.workbook, clients.microsoft(), s.tz,
                                     src.sheet)


def _excel_graph(t: ExcelGraphTracker, s: Settings, clients: Clients) -> Tracker:
    from connectors.excel_graph import ExcelGraphTracker as ExcelConnector

    return ExcelConnector(t.workbook, clients.microsoft())


def _graph_mail(t: GraphMail, s: Settings, clients: Clients) -> MailTransport:
    from email.utils import parseaddr

    from connectors.graph_mail import GraphMailTransport

    return GraphMailTransport(clients.microsoft(), t.user or parseaddr(s.mail.sender)[1])


# Each kind of the config's sources, tracker and mail transport -> how its connector is built.
# The Google connectors' modules are imported only when a config uses them.
CONNECTORS: dict[type[BaseModel], Builder] = {
    GoogleFormsCsv: _google_forms_csv,
    MicrosoftFormsXlsx: _microsoft_forms_xlsx,
    GoogleFormsApi: _google_forms_api,
    MicrosoftFormsGraph: _microsoft_forms_graph,
    XlsxTracker: _xlsx_tracker,
    GoogleSheetsTracker: _google_sheets,
    ExcelGraphTracker: _excel_graph,
    EmlFolder: _eml_folder,
    Smtp: _smtp,
    Gmail: _gmail,
    GraphMail: _graph_mail,
}


def connector(config: Config, part: BaseModel, google: Any = None,
              microsoft: Any = None) -> Any:
    """The connector one part of `config` builds: a source (a FormSource), the tracker (a
    Tracker) or the mail transport (a MailTransport). Building one does no I/O.

    `google` (a GoogleClients) and `microsoft` (a GraphClients) replace the default
    authentication, so tests can point the real client libraries at local fakes; without
    them, the clients are made from the config's `google:` and `microsoft:` sections.
    """
    return CONNECTORS[type(part)](part, config.settings, clients(config, google, microsoft))


def clients(config: Config, google: Any = None, microsoft: Any = None) -> Clients:
    """The cloud clients of `config`, each made when first asked for: each Google connector
    gets its own GoogleClients (their scopes differ), the Microsoft ones share one
    GraphClients (one token cache)."""
    graph = microsoft

    def ms() -> Any:
        nonlocal graph
        if graph is None:
            from connectors.graph import GraphClients

            assert config.settings.microsoft is not None  # the config check requires it
            graph = GraphClients.from_settings(config.settings.microsoft)
        return graph

    return Clients(lambda: _google(config, google), ms)


def build(config: Config, google: Any = None, store: Store | None = None,
          microsoft: Any = None) -> Connectors:
    """The connectors of `config`; `google` and `microsoft` as for `connector`; `store`
    instead of the configured one (a preview's scratch copy)."""
    s = config.settings
    shared = clients(config, google, microsoft)
    sources = [CONNECTORS[type(src)](src, s, shared) for src in s.sources]
    tracker = CONNECTORS[type(s.tracker)](s.tracker, s, shared)
    transport = CONNECTORS[type(s.mail.transport)](s.mail.transport, s, shared)
    # the store last: a config whose connectors cannot be built leaves it untouched
    return Connectors(store=store or Store.open(s.store), sources=sources, tracker=tracker,
                      transport=transport, renderer=Renderer(s.mail.templates),
                      tracker_location=_tracker_location(s.tracker),
                      tracker_apart=isinstance(s.tracker, XlsxTracker))


def _tracker_location(t: XlsxTracker | GoogleSheetsTracker | ExcelGraphTracker) -> str:
    if isinstance(t, GoogleSheetsTracker):
        return f"https://docs.google.com/spreadsheets/d/{t.spreadsheet_id}"
    if isinstance(t, ExcelGraphTracker):
        w = t.workbook
        if w.link:
            return w.link
        if w.site:
            return f"{w.path} in https://{w.site.removeprefix('https://')}"
        return f"{w.path} in the OneDrive of {w.user}" if w.user else \
            "the tracker workbook in Microsoft 365"
    return str(t.path)


def _google(config: Config, clients: Any) -> Any:
    if clients is not None:
        return clients
    from connectors.google_auth import GoogleClients

    s = config.settings
    assert s.google is not None  # the config check requires it
    return GoogleClients.from_settings(s.google, google_apis(s))
