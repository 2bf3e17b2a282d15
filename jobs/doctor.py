"""`nearmiss doctor`: try every connector of a deployment without changing anything.

One line per check: "ok: ...", "warn: ..." (works, but worth a look) or
"FAIL: <what>: <problem> — fix: <fix>". The FAIL lines are returned, so the CLI can exit
non-zero. Nothing is written: files are only opened for reading, folders are probed with a
temporary file that is removed at once, SMTP gets NOOP, Gmail only mints a token, and the
Google Sheets edit check sets the spreadsheet's title to the title it already has.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
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
    KeyFileError,
    MicrosoftFormsGraph,
    MicrosoftFormsXlsx,
    Smtp,
    XlsxTracker,
    google_api,
    google_apis,
    key_file,
    uses_microsoft,
)
from connectors.base import Pull
from connectors.errors import ApiError, NearmissError
from jobs import wiring
from transforms.normalize import map_answers, question_key

Out = Callable[[str], None]


class _Failed(Exception):
    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__(problem)
        self.problem, self.fix = problem, fix


class Doctor:
    def __init__(self, config: Config, clients: Any, out: Out, graph: Any = None) -> None:
        self.config = config
        self.settings = config.settings
        self.clients = clients
        self.graph = graph  # a GraphClients
        self.out = out
        self.problems: list[str] = []
        self.google_ready = True
        self.permissions: set[str] | None = None  # what the Microsoft token carries

    # -- reporting --------------------------------------------------------------------------

    def ok(self, what: str, detail: str) -> None:
        self.out(f"ok: {what}: {detail}")

    def warn(self, what: str, detail: str) -> None:
        self.out(f"warn: {what}: {detail}")

    def fail(self, what: str, problem: str, fix: str | None = None) -> None:
        line = f"{what}: {problem}" + (f" — fix: {fix}" if fix else "")
        self.out(f"FAIL: {line}")
        self.problems.append(line)

    def check(self, what: str, fn: Callable[[], str]) -> None:
        try:
            self.ok(what, fn())
        except _Failed as exc:
            self.fail(what, exc.problem, exc.fix)
        except NearmissError as exc:
            self.fail(what, str(exc))

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> list[str]:
        s = self.settings
        if google_apis(s):
            self.google_credentials()
        if uses_microsoft(s):
            self.microsoft_credentials()
        self.check("store", lambda: self.store(s.store.path) if s.store.url is None
                   else self.server_store())
        for i, src in enumerate(s.sources):
            self.part(f"source {src.name}", src, f"sources[{i}]")
        self.part("tracker", s.tracker, "tracker")
        self.part("mail", s.mail.transport, "mail.transport")
        self.out(f"doctor: {len(self.problems)} problem(s)" if self.problems else
                 "doctor: everything the config needs is in place")
        return self.problems

    def part(self, what: str, part: BaseModel, key: str) -> None:
        """Try a source, the tracker or the mail transport with the check of its kind
        (CHECKS); `key` is where it is in the config, for the fixes."""
        if google_api(part) and not self.google_ready:
            self.out(f"skip: {what}: not tried without working Google credentials")
            return
        if isinstance(part, _MICROSOFT) and self.permissions is None:
            self.out(f"skip: {what}: not tried without working Microsoft credentials")
            return
        CHECKS[type(part)](self, what, part, key)

    def connector(self, part: BaseModel) -> Any:
        """The connector a run would build for `part` (jobs.wiring): building it does no I/O."""
        return wiring.connector(self.config, part, self.clients, self.graph)

    # -- Microsoft credentials --------------------------------------------------------------

    def microsoft_credentials(self) -> None:
        """A token for Graph, and the permissions it carries: application roles for an app,
        delegated scopes for a signed-in person."""
        from connectors.graph import GraphClients, consent_link, token_claims

        what, ms = "Microsoft credentials", self.settings.microsoft
        assert ms is not None  # the config check requires it
        try:
            if self.graph is None:
                self.graph = GraphClients.from_settings(ms)
            token = self.graph.token()
        except NearmissError as exc:
            self.fail(what, str(exc))
            return
        claims = token_claims(str(token.get("access_token", "")))
        if ms.auth == "device":
            granted = set(str(claims.get("scp", "")).split())
            who = claims.get("upn") or claims.get("preferred_username") or "the signed-in person"
            self.permissions = granted
            self.ok(what, f"signed in as {who} (delegated: {', '.join(sorted(granted)) or 'none'})")
            return
        granted = {str(r) for r in claims.get("roles") or []}
        self.permissions = granted
        if not granted:
            self.fail(what, f"the app {ms.client_id} has no application permission consented",
                      f"an admin opens {consent_link(ms)}")
            return
        self.ok(what, f"app {ms.client_id} in tenant {ms.tenant} (application permissions: "
                      f"{', '.join(sorted(granted))})")

    def needs(self, what: str, any_of: tuple[str, ...], purpose: str) -> bool:
        """Whether the token carries one of `any_of`; if not, say which to add and how."""
        from connectors.graph import consent_link

        ms = self.settings.microsoft
        assert ms is not None and self.permissions is not None
        if self.permissions & set(any_of):
            return True
        how = (f"an admin adds it to the app registration and consents: {consent_link(ms)}"
               if ms.auth == "app" else "run `nearmiss auth microsoft` again and accept it")
        self.fail(what, f"the token lacks a permission to {purpose} (one of "
                        f"{', '.join(any_of)})", how)
        return False

    def graph_failure(self, exc: NearmissError, place: str) -> _Failed:
        """A 403 on a workbook: with Sites.Selected, the app needs a grant on the site."""
        from connectors.graph import consent_link

        ms = self.settings.microsoft
        assert ms is not None
        if getattr(exc, "status", None) != 403:
            return _Failed(str(exc))
        problem = f"the app may not open {place} (HTTP 403)"
        if "Sites.Selected" in (self.permissions or set()):
            return _Failed(problem, f"an admin grants the app {ms.client_id} write access to "
                                    "its site: POST /v1.0/sites/{site-id}/permissions with "
                                    "roles [\"write\"] and grantedToIdentities [{application: "
                                    "{id: <client id>}}], or Grant-PnPAzureADAppSitePermission "
                                    "-Permissions Write")
        return _Failed(problem, "consent to Files.ReadWrite.All (or use Sites.Selected with a "
                                f"site grant): {consent_link(ms)}")

    def forms_workbook(self, what: str, src: MicrosoftFormsGraph, key: str) -> None:
        if not self.needs(what, _READ_FILES, "read the response workbook"):
            return
        try:
            pulled = self.connector(src).pull(None)
        except NearmissError as exc:
            failed = self.graph_failure(exc, "the response workbook")
            self.fail(what, failed.problem, failed.fix)
            return
        self.ok(what, f"the response workbook is readable ({len(pulled.responses)} "
                      f"responses, {len(pulled.questions)} questions)")
        self.mapping(what, src, pulled.questions)
        self.values(what, src, pulled)

    def excel_tracker(self, t: ExcelGraphTracker) -> str:
        """Locate it, open an edit session (which needs edit rights) and read its sheets;
        the session is closed without a change."""
        from transforms.tracker import SHEETS

        if not self.needs("tracker", _WRITE_FILES, "edit the tracker workbook"):
            return "see the line above"
        tracker = self.connector(t)
        try:
            found = tracker.read(SHEETS)
        except NearmissError as exc:
            raise self.graph_failure(exc, "the tracker workbook") from None
        finally:
            tracker._close()
        sheets = ", ".join(found) or "none of the tracker's sheets yet"
        return f"the tracker workbook is readable and editable ({sheets})"

    def graph_mail(self, t: GraphMail) -> str:
        """Mail.Send in the token: Graph has no way to try sending without sending."""
        from email.utils import parseaddr

        who = t.user or parseaddr(self.settings.mail.sender)[1]
        if not self.needs("mail", ("Mail.Send",), f"send as {who}"):
            return "see the line above"
        return f"the token may send mail as {who} (Mail.Send; nothing was sent)"

    # -- Google credentials ---------------------------------------------------------------------

    def google_credentials(self) -> None:
        """Env var, key file, token. Gmail's own (delegated) token is tried under mail."""
        what = "Google credentials"
        if self.clients is None:
            try:
                self.clients = self._load_clients()
            except _Failed as exc:
                self.fail(what, exc.problem, exc.fix)
                self.google_ready = False
                return
            except NearmissError as exc:
                self.fail(what, str(exc))
                self.google_ready = False
                return
        creds = self.clients.credentials
        if creds is None:
            self.ok(what, "none for Forms and Sheets (an unauthenticated client was given)"
                    if {"forms", "sheets"} & set(google_apis(self.settings)) else
                    f"{self.clients.account} (the Gmail token is tried under mail)")
            return
        scopes = ", ".join(a for a in google_apis(self.settings) if a != "gmail")
        try:
            self.clients.call("Google credentials", lambda: _refresh(creds))
        except ApiError as exc:
            self.google_ready = False
            self.fail(what, f"no token for {self.clients.account} ({exc})",
                      "create a new JSON key for the service account (the key may have been "
                      "deleted or disabled)" if _is_service_account(creds) else
                      "run `nearmiss auth google` again")
            return
        self.ok(what, f"{self.clients.account} obtained a token for {scopes}")

    def _load_clients(self) -> Any:
        from connectors.google_auth import GoogleClients

        g = self.settings.google
        assert g is not None  # the config check requires it
        if g.auth == "service_account":
            try:
                key_file(g.key_file_env, "service_account")
            except KeyFileError as exc:
                raise _Failed(exc.problem, _KEY_FILE_FIXES[exc.reason].format(
                    variable=exc.variable)) from None
        elif not Path(g.token_file).is_file():
            raise _Failed(f"no Google user token at {g.token_file}",
                          "run `nearmiss auth google`")
        return GoogleClients.from_settings(g, google_apis(self.settings))

    # -- store ------------------------------------------------------------------------------

    def store(self, path: Path) -> str:
        if path.exists():
            if not os.access(path, os.R_OK | os.W_OK):
                raise _Failed(f"{path} cannot be read and written by this user",
                              "give the user that runs nearmiss read and write access to it")
            _probe_folder(path.parent)
            return f"{path} exists and its folder is writable"
        where = _probe_folder(path.parent)
        return f"{path} will be created ({where} is writable)"

    def server_store(self) -> str:
        """Connect and read the schema revision: nothing is created or changed."""
        from connectors.store import Store

        store = Store.connect(self.settings.store)
        try:
            status = store.schema_status()
        finally:
            store.close()
        if status.empty:
            return "the database answers; the first run creates the store's tables"
        if not status.at_head:
            raise _Failed(f"the store is at revision {status.revision()}, this release needs "
                          f"{status.head}", "run `nearmiss migrate`")
        return f"the database answers and its schema is at {status.head}"

    # -- sources ----------------------------------------------------------------------------

    def export_file(self, what: str, src: GoogleFormsCsv | MicrosoftFormsXlsx,
                    key: str) -> None:
        if not Path(src.path).is_file():
            self.fail(what, f"export file not found: {src.path}",
                      f"save the form's responses export there, or correct {key}.path")
            return
        try:
            pulled = self.connector(src).pull(None)
        except NearmissError as exc:
            self.fail(what, str(exc))
            return
        self.ok(what, f"{src.path} is readable ({len(pulled.responses)} responses, "
                      f"{len(pulled.questions)} questions)")
        self.mapping(what, src, pulled.questions)
        self.values(what, src, pulled)

    def google_form(self, what: str, src: GoogleFormsApi, key: str) -> None:
        from connectors.google_forms import form_problem

        reader = self.connector(src)
        try:
            detail, questions = reader.check()
        except ApiError as exc:
            found = form_problem(exc, src.form_id, self.clients.account)
            if found and "form_id" in found[1]:
                found = (found[0], f"check {key}.form_id (the id between /d/ and /edit in "
                                   "the form's edit address)")
            self.fail(what, *(found or (str(exc), None)))
            return
        self.ok(what, detail)
        self.mapping(what, src, questions)

    def mapping(self, what: str, src: Any, questions: dict[str, str]) -> None:
        """Questions the mapping knows neither by id nor by title: their answers hold a
        report until the mapping names them (a field, or `ignore`)."""
        known = {question_key(q) for q in self.settings.mapping_for(src)}
        missing = [f"{title!r}" + (f" (id {key})" if key != title else "")
                   for key, title in questions.items()
                   if question_key(key) not in known and question_key(title) not in known]
        if missing:
            self.warn(what, f"{len(missing)} question(s) not in the mapping (reports that "
                            f"answer them are held until mapped): {', '.join(missing)}")

    def values(self, what: str, src: Any, pulled: Pull) -> None:
        """What the read noticed about the file, and answer columns whose dates are in both
        day orders: worth fixing at the form, though no run stops for them."""
        for warning in pulled.warnings:
            self.warn(what, warning)
        frame = pd.DataFrame({
            "source": src.name, "response_id": [r.response_id for r in pulled.responses],
            "version": 1, "submitted_at": pd.NaT, "first_submitted_at": pd.NaT,
            "payload": [r.payload() for r in pulled.responses]})
        mapped = map_answers(frame, {src.name: self.settings.mapping_for(src)},
                             self.config.rules, self.settings.tz, self.settings.dayfirst,
                             {src.name: self.settings.value_maps_for(src)})
        for note in mapped.column_notes:
            self.warn(what, note.removeprefix(f"{src.name}: "))
        rules = self.config.rules
        for field, spec in rules.fields.items():
            if spec.type not in ("choice", "ordinal", "multi") or field not in mapped.responses:
                continue
            known = rules.choices(field)
            seen = Counter(
                v for value in mapped.responses[field]
                for v in (value if isinstance(value, list) else [value])
                if isinstance(v, str) and v not in known)
            if seen:
                texts = ", ".join(f"{t!r} ({n})" for t, n in seen.most_common(5))
                self.warn(what, f"{sum(seen.values())} answer(s) to {rules.label(field)!r} match "
                                f"no value: {texts}{' ...' if len(seen) > 5 else ''}; map them "
                                f"under value_maps.{field} (`nearmiss fields` lists the values)")

    # -- tracker (each check returns its "ok" detail or raises _Failed: see CHECKS) ----------

    def xlsx_tracker(self, t: XlsxTracker) -> str:
        path = Path(t.path)
        lock = path.with_name(f"~${path.name}")
        if lock.exists():
            self.warn("tracker", f"{lock.name} exists: the workbook is open in Excel "
                                 "somewhere; close it before the run, or the save fails")
        if path.exists():
            from transforms.tracker import SHEETS

            found = self.connector(t).read(SHEETS)
            _probe_folder(path.parent)
            if not os.access(path, os.W_OK):
                raise _Failed(f"{path} is read-only", "give the user that runs nearmiss "
                                                      "write access to it")
            sheets = ", ".join(found) or "none of the tracker's sheets yet"
            return f"{path} is readable ({sheets}) and its folder is writable"
        where = _probe_folder(path.parent)
        return f"{path} will be created ({where} is writable)"

    def sheets_tracker(self, t: GoogleSheetsTracker) -> str:
        """spreadsheets.get, then a batchUpdate that sets the title to itself: it needs
        edit rights (viewers and commenters get 403) and changes no content. There is no
        read-only way to ask Sheets "may I edit?" without a Drive scope."""
        spreadsheet_id = t.spreadsheet_id
        account = self.clients.account
        service = self.clients.service("sheets", "v4")
        what = "tracker"
        try:
            meta = self.clients.call(what, service.spreadsheets().get(
                spreadsheetId=spreadsheet_id,
                fields="properties.title,sheets.properties.title").execute)
        except ApiError as exc:
            raise _sheets_failure(exc, spreadsheet_id, account, editing=False) from None
        title = (meta.get("properties") or {}).get("title", "")
        body = {"requests": [{"updateSpreadsheetProperties": {
            "properties": {"title": title}, "fields": "title"}}]}
        try:
            self.clients.call(what, service.spreadsheets().batchUpdate(
                spreadsheetId=spreadsheet_id, body=body).execute)
        except ApiError as exc:
            raise _sheets_failure(exc, spreadsheet_id, account, editing=True) from None
        sheets = [(s.get("properties") or {}).get("title") for s in meta.get("sheets") or []]
        return (f"spreadsheet {title!r} is readable and editable by {account} "
                f"(sheets: {', '.join(filter(None, sheets))})")

    # -- mail (each check returns its "ok" detail or raises _Failed: see CHECKS) -------------

    def outbox_folder(self, t: EmlFolder) -> str:
        return self.folder("outbox folder", Path(t.path))

    @staticmethod
    def folder(name: str, path: Path) -> str:
        probed = _probe_folder(path)
        if probed == path.resolve():
            return f"{name} {path} is writable"
        return f"{name} {path} will be created ({probed} is writable)"

    def smtp(self, t: Smtp) -> str:
        """Connect, STARTTLS/TLS, log in, NOOP, QUIT: everything but sending."""
        smtp = self.connector(t)._open()  # raises MailError with the fix
        try:
            code, _ = smtp.noop()
        finally:
            try:
                smtp.quit()
            except OSError:
                smtp.close()
        login = f" and the login of {t.username}" if t.username else ""
        return f"SMTP server {t.host}:{t.port} accepted the connection{login} (NOOP {code})"

    def gmail(self, t: Gmail) -> str:
        """Mint a gmail.send token (for the delegated user): sends nothing."""
        from connectors.gmail import delegation_fix

        clients = self.clients
        creds = clients.gmail_credentials
        who = clients.delegated_user or t.user_id
        if creds is None:
            return f"Gmail as {who} (no credentials to try: unauthenticated client)"
        try:
            clients.call("Gmail credentials", lambda: _refresh(creds))
        except ApiError as exc:
            raise _Failed(f"no gmail.send token for {who} ({exc})",
                          delegation_fix(clients)) from None
        sender = self.settings.mail.sender
        address = sender.rpartition("<")[2].rstrip(">").strip().lower()
        if clients.delegated_user and address != clients.delegated_user.lower():
            self.warn("mail", f"Gmail sends as {clients.delegated_user}; mail.sender is "
                              f"{address}: unless it is a send-as alias of that user, Gmail "
                              "replaces the From address")
        return f"a gmail.send token for {who} was issued (nothing was sent)"


Check = Callable[[Doctor, str, Any, str], None]  # (doctor, what, part, key)


def _one_line(check: Callable[[Doctor, Any], str]) -> Check:
    """A check that returns its "ok" detail or raises, reported as one line."""
    return lambda doctor, what, part, key: doctor.check(what, lambda: check(doctor, part))


# The check of each kind of source, tracker and mail transport: the kinds are those
# jobs.wiring.CONNECTORS builds, and the checks use the connectors it builds.
CHECKS: dict[type[BaseModel], Check] = {
    GoogleFormsCsv: Doctor.export_file,
    MicrosoftFormsXlsx: Doctor.export_file,
    GoogleFormsApi: Doctor.google_form,
    XlsxTracker: _one_line(Doctor.xlsx_tracker),
    GoogleSheetsTracker: _one_line(Doctor.sheets_tracker),
    EmlFolder: _one_line(Doctor.outbox_folder),
    Smtp: _one_line(Doctor.smtp),
    Gmail: _one_line(Doctor.gmail),
    MicrosoftFormsGraph: Doctor.forms_workbook,
    ExcelGraphTracker: _one_line(Doctor.excel_tracker),
    GraphMail: _one_line(Doctor.graph_mail),
}
_MICROSOFT = (MicrosoftFormsGraph, ExcelGraphTracker, GraphMail)
# Application roles or delegated scopes that let the app read or edit a workbook.
_WRITE_FILES = ("Files.ReadWrite.All", "Sites.ReadWrite.All", "Sites.Selected",
                "Files.ReadWrite", "Sites.Manage.All", "Sites.FullControl.All")
_READ_FILES = (*_WRITE_FILES, "Files.Read.All", "Sites.Read.All", "Files.Read")

# The fix `nearmiss doctor` gives for each reason a service account key file is unusable.
_KEY_FILE_FIXES = {
    "unset": "export {variable}=/path/to/service-account-key.json",
    "missing": "download a JSON key of the service account (IAM & Admin > Service accounts > "
               "Keys) and point the variable at it",
    "unreadable": "download the service account's JSON key again",
    "not_json": "download the service account's JSON key again",
    "wrong_kind": "download a JSON key for the service account (not an OAuth client file)",
}


def _refresh(creds: Any) -> None:
    from google.auth.transport.requests import Request

    creds.refresh(Request())


def _is_service_account(creds: Any) -> bool:
    return bool(getattr(creds, "service_account_email", None))


def _sheets_failure(exc: ApiError, spreadsheet_id: str, account: str,
                    editing: bool) -> _Failed:
    from connectors.google_auth import forbidden_reason

    if exc.status == 403:
        reason = forbidden_reason(exc)
        if reason == "disabled":
            return _Failed("the Google Sheets API is not enabled",
                           "enable it in the Cloud project of the credentials (APIs & "
                           "Services > Library > Google Sheets API)")
        if reason == "scope":
            return _Failed("the credentials lack the spreadsheets scope",
                           "run `nearmiss auth google` again and allow editing spreadsheets")
        if editing:
            return _Failed(f"{account} can open spreadsheet {spreadsheet_id} but not edit it",
                           f"share it with {account} as an Editor (not Viewer or Commenter)")
        return _Failed(f"the account {account} cannot open spreadsheet {spreadsheet_id}",
                       f"share the spreadsheet with {account} as an Editor")
    if exc.status == 404:
        return _Failed(f"spreadsheet {spreadsheet_id} not found",
                       "check tracker.spreadsheet_id (the id between /d/ and /edit in the "
                       "sheet's address)")
    return _Failed(str(exc))


def _probe_folder(folder: Path) -> Path:
    """Prove a folder (or the nearest existing parent it would be created in) is writable
    by creating and removing a temporary file; returns the folder probed."""
    probe = Path(folder).resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise _Failed(f"{probe} is not a folder", f"move it away or choose another path "
                                                  f"than {folder}")
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".nearmiss-doctor-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise _Failed(f"cannot write in {probe} ({exc.strerror})",
                      "give the user that runs nearmiss write access to it") from None
    return probe


def doctor(config: Config, clients: Any = None, out: Out = print,
           graph: Any = None) -> list[str]:
    """Try each connector of `config` without changing anything; print one line per check
    and return the problems found (empty when all is well).

    `clients` (a GoogleClients) replaces the credentials of the config's `google:` section,
    as in `jobs.wiring.build`, so tests can point the checks at local fakes; `graph` (a
    GraphClients) those of the `microsoft:` section.
    """
    return Doctor(config, clients, out, graph).run()
