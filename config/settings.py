"""One typed settings model per deployment, loaded from YAML, with every mistake reported at once.

Paths in the YAML are relative to the YAML file. Secrets never live in the YAML: it names the
environment variables that hold them, and a missing variable is a configuration error for the
commands that use the secret (see `load_config`'s `check_credentials`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass
from email.utils import parseaddr
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from config.rules import Rules
from domain.address import valid_address

BUNDLED = resources.files("config")


class ConfigError(Exception):
    """Configuration mistakes, each a `(key, message)` pair; all found are reported together."""

    def __init__(self, problems: list[tuple[str, str]], source: str = "") -> None:
        self.problems = problems
        self.source = source
        super().__init__("; ".join(f"{k}: {m}" for k, m in problems))

    def lines(self) -> list[str]:
        where = f"{self.source}: " if self.source else ""
        return [f"{where}{key}: {msg}" if key else f"{where}{msg}" for key, msg in self.problems]


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base")
    value = value.expanduser()
    return value if value.is_absolute() or base is None else Path(base) / value


RelPath = Annotated[Path, AfterValidator(_relative_to_config)]


class _Strict(BaseModel):
    # validate_default: default paths too are resolved against the config file's folder,
    # so a scheduled run started from another directory opens the same store.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class StoreSettings(_Strict):
    """Where the store is: a SQLite file (`path`, the default) or a PostgreSQL database
    (`url`, its password in the variable `password_env` names, never in the YAML)."""

    path: RelPath | None = None
    url: str | None = None
    password_env: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _a_file_unless_a_server(cls, data: Any) -> Any:
        # `{}` (no store section) is the SQLite file beside the config, as it always was.
        if isinstance(data, dict) and data.get("path") is None and data.get("url") is None:
            return {**data, "path": Path("nearmiss.db")}
        return data

    @field_validator("url")
    @classmethod
    def _postgresql_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from sqlalchemy.engine import make_url  # only a server store needs it

        try:
            url = make_url(value)
        except Exception:  # ArgumentError, or a ValueError from a bad port
            raise ValueError("not a database URL: write it as "
                             "postgresql+psycopg://user@host:5432/database") from None
        if url.get_backend_name() != "postgresql" or url.get_driver_name() not in (
                "psycopg", "postgresql"):  # the bare scheme means psycopg here
            raise ValueError(f"{url.drivername!r} is not supported: use a PostgreSQL URL, "
                             "postgresql+psycopg://user@host:5432/database (or store.path "
                             "for a SQLite file)")
        if url.password is not None:
            raise ValueError("the URL holds a password: remove it and name the environment "
                             "variable that holds it in store.password_env")
        if not url.database:
            raise ValueError("no database named: end the URL with /database")
        return value

    @model_validator(mode="after")
    def _one_place(self) -> StoreSettings:
        if self.path is not None and self.url is not None:
            raise ValueError("give either path (a SQLite file) or url (a PostgreSQL "
                             "database), not both")
        if self.password_env is not None and self.url is None:
            raise ValueError("password_env is only for a PostgreSQL store (store.url)")
        return self

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


def _empty_if_null(value: Any) -> Any:
    """A section whose every line is still commented out (the DECIDE lines `nearmiss init`
    writes) reads as null in YAML: it means an empty one, not a mistake."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {k: {} if v is None else v for k, v in value.items()}
    return value


# field -> the form's option text -> the taxonomy value it means (null: no answer)
ValueMaps = Annotated[dict[str, dict[str, str | None]], BeforeValidator(_empty_if_null)]
# question (title or id) -> the field its answer fills, or several ("what did you do and who
# reviewed it" fills both), or `ignore`
Mapping = Annotated[dict[str, str | list[str]],
                    BeforeValidator(lambda v: {} if v is None else v)]


def fields_of(target: str | list[str]) -> list[str]:
    """The fields one mapping entry fills."""
    return [target] if isinstance(target, str) else list(target)


class _Source(_Strict):
    name: str
    mapping: Mapping = {}
    value_maps: ValueMaps = {}  # this form's own option texts, over the deployment's


class GoogleFormsCsv(_Source):
    """A "Download responses (.csv)" export of a Google Form."""

    kind: Literal["google_forms_csv"]
    path: RelPath


class MicrosoftFormsXlsx(_Source):
    """The "Open results in Excel" / "Download a copy" workbook of a Microsoft Form."""

    kind: Literal["microsoft_forms_xlsx"]
    path: RelPath
    sheet: str | None = None  # first sheet when not given


class GoogleFormsApi(_Source):
    """A Google Form read through the Forms API v1."""

    kind: Literal["google_forms_api"]
    form_id: str
    # Re-read this much before the watermark: the API's filter is on a server-side
    # timestamp we cannot see, so a small overlap guards the boundary (deduplicated later).
    overlap_minutes: int = Field(default=10, ge=0)


class Workbook(_Strict):
    """Where an Excel workbook lives in Microsoft 365, in one of four ways:

    - `site` (host and path of a SharePoint site, `contoso.sharepoint.com/sites/quality`)
      and `path` in its document library (a group form's response workbook);
    - `user` (whose OneDrive) and `path` in it (a personal form's "Open results in Excel");
    - `drive_id` and `item_id`, as Graph names them;
    - `link`: a sharing link copied from Excel's Share button.
    """

    site: str | None = None
    user: str | None = None
    path: str | None = None
    drive_id: str | None = None
    item_id: str | None = None
    link: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Workbook:
        ways = [bool(self.site), bool(self.user), bool(self.drive_id or self.item_id),
                bool(self.link)]
        if sum(ways) != 1:
            raise ValueError("say where the workbook is in one way: site and path, user and "
                             "path, drive_id and item_id, or link")
        if (self.site or self.user) and not self.path:
            raise ValueError("path is missing: the workbook's path in the document library "
                             "or OneDrive, such as `Near miss reports.xlsx`")
        if (self.drive_id or self.item_id) and not (self.drive_id and self.item_id):
            raise ValueError("give both drive_id and item_id")
        if self.path and not (self.site or self.user):
            raise ValueError("path needs a site or a user to be in")
        return self


class MicrosoftFormsGraph(_Source):
    """A Microsoft Form's response workbook, which Forms keeps in sync, read through Graph."""

    kind: Literal["microsoft_forms_graph"]
    workbook: Workbook
    sheet: str | None = None  # first sheet when not given


Source = Annotated[GoogleFormsCsv | MicrosoftFormsXlsx | GoogleFormsApi | MicrosoftFormsGraph,
                   Field(discriminator="kind")]


class _TrackerSettings(_Strict):
    # Reports and patterns closed more than this many days ago move to a yearly archive
    # sheet ("Reports 2025") of the same tracker, still read and still matched by id; null
    # turns moving off (rows already archived stay there). A year by default: the live
    # sheets then show what is open plus the last year's closures, the span of an annual
    # review, and a Google Sheet stays far from its cell limit without anyone setting it.
    archive_after_days: int | None = Field(default=365, ge=1)


class XlsxTracker(_TrackerSettings):
    kind: Literal["xlsx"]
    path: RelPath


class GoogleSheetsTracker(_TrackerSettings):
    kind: Literal["google_sheets"]
    spreadsheet_id: str
    # Protect system-owned columns: "warning" shows Sheets' warning before an edit,
    # "strict" lets only the service account edit them, "off" adds no protection.
    protection: Literal["warning", "strict", "off"] = "warning"


class ExcelGraphTracker(_TrackerSettings):
    """The tracker as an Excel workbook in SharePoint or OneDrive, written through Graph."""

    kind: Literal["excel_graph"]
    workbook: Workbook


Tracker = Annotated[XlsxTracker | GoogleSheetsTracker | ExcelGraphTracker,
                    Field(discriminator="kind")]


class EmlFolder(_Strict):
    kind: Literal["eml_folder"]
    path: RelPath


class Smtp(_Strict):
    kind: Literal["smtp"]
    host: str
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    timeout_seconds: float = 30
    ca_file: RelPath | None = None  # for a relay with a private certificate authority

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


class Gmail(_Strict):
    kind: Literal["gmail"]
    user_id: str = "me"


class GraphMail(_Strict):
    """Exchange Online through Graph's sendMail, as the mailbox `user` (the sender's address
    when not given)."""

    kind: Literal["graph_mail"]
    user: str | None = None


Transport = Annotated[EmlFolder | Smtp | Gmail | GraphMail, Field(discriminator="kind")]


class TeamBrief(_Strict):
    """A monthly "you said, we did" brief for one team: how anonymous reporters hear outcomes."""

    team: str
    services: list[str] = []  # empty: every service
    to: list[str] = Field(min_length=1)


class RequestBrake(_Strict):
    """When one run would ask many reporters for the same item, the requests are held: on a
    form just connected that is a question or an option label the mapping does not know,
    not many careless reporters."""

    above: int = Field(default=10, ge=1)  # more requests than this for one item: held
    share: float = Field(default=0.3, gt=0, le=1)  # or more than this share of the run's
    at_least: int = Field(default=5, ge=1)  # new responses, once there are this many


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Review(_Strict):
    """One governance email: who gets it (role names from `roles`, or addresses) and when
    it is due (local time). A run after that time sends it if it has not gone yet, so a
    job that was down on the day catches up; each period's email goes once."""

    to: list[str] = Field(min_length=1)
    hour: int = Field(default=8, ge=0, le=23)


class WeeklyReview(Review):
    """The weekly operational review of the week before (Monday to Sunday)."""

    day: Literal[WEEKDAYS] = "monday"  # type: ignore[valid-type]


class BoardSummary(Review):
    """The monthly board summary of the month before."""

    day: int = Field(default=1, ge=1, le=28)  # day of the month


class GovernanceSettings(_Strict):
    """Governance: the weekly review and the monthly board summary (null: not sent), and
    the tracker's Summary sheet of the month so far."""

    weekly_review: WeeklyReview | None = None
    board_summary: BoardSummary | None = None
    summary_sheet: bool = True


class MailSettings(_Strict):
    sender: str
    reply_to: str | None = None
    transport: Transport
    templates: RelPath | None = None  # a folder whose templates override the bundled ones
    max_per_run: int = Field(default=500, ge=1)
    # Reports older than this get no acknowledgement, request or alert: connecting a form
    # with years of history must not email everyone about old reports.
    recent_days: float = Field(default=14, gt=0)
    learning_briefs: list[TeamBrief] = []
    hold_requests: RequestBrake | None = RequestBrake()  # null: never hold requests
    # more alerts than this to one person in one run come as one digest (null: never)
    digest_alerts_above: int | None = Field(default=3, ge=1)


class GoogleSettings(_Strict):
    """How to authenticate to Google: a service account key, or an OAuth user token."""

    auth: Literal["service_account", "user"] = "service_account"
    key_file_env: str = "GOOGLE_APPLICATION_CREDENTIALS"
    delegated_user: str | None = None  # domain-wide delegation subject for Gmail
    client_secrets_env: str = "NEARMISS_GOOGLE_CLIENT_SECRETS"
    token_file: RelPath = Path("google-token.json")
    max_requests_per_minute: int = Field(default=50, ge=1)
    # Another host for every Google API and the token endpoint (a private endpoint, a
    # proxy, a test double); the public hosts when not given.
    endpoint: str | None = None


GRAPH = "https://graph.microsoft.com"
LOGIN = "https://login.microsoftonline.com"


class MicrosoftSettings(_Strict):
    """How to authenticate to Microsoft 365 (an app registration in Microsoft Entra).

    `auth: app` acts as the application itself, after an admin consented to its
    permissions: with a certificate (preferred: `certificate_env` names the variable
    holding the path of a PEM file with the private key and the certificate) or a client
    secret (`client_secret_env`). `auth: device` acts as a person who signed in once with
    `nearmiss auth microsoft`, for providers without an admin to consent.
    """

    tenant: str  # the directory (tenant) id, or a domain such as contoso.onmicrosoft.com
    client_id: str  # the application (client) id
    auth: Literal["app", "device"] = "app"
    certificate_env: str | None = None
    client_secret_env: str | None = None
    token_cache: RelPath = Path("microsoft-token.json")
    # National clouds: US Government https://graph.microsoft.us and
    # https://login.microsoftonline.us; China https://microsoftgraph.chinacloudapi.cn and
    # https://login.chinacloudapi.cn. Any other host (a proxy, a test double) works too.
    graph_endpoint: str = GRAPH
    login_endpoint: str = LOGIN

    @model_validator(mode="after")
    def _one_credential(self) -> MicrosoftSettings:
        if self.auth == "app" and bool(self.certificate_env) == bool(self.client_secret_env):
            raise ValueError("auth: app needs one credential: certificate_env (the variable "
                             "holding the path of a PEM certificate with its key, preferred) "
                             "or client_secret_env (the variable holding a client secret)")
        if self.auth == "device" and (self.certificate_env or self.client_secret_env):
            raise ValueError("auth: device signs in as a person (`nearmiss auth microsoft`): "
                             "remove certificate_env and client_secret_env")
        return self

    def secret(self) -> str | None:
        return os.environ.get(self.client_secret_env) if self.client_secret_env else None


class Settings(_Strict):
    provider: str = "our service"  # the provider's name as emails should say it
    timezone: str = "Europe/London"
    # How to read an ambiguous date such as 03/04/2026 typed into a form: 3 April when true.
    dayfirst: bool = True
    rules: RelPath | None = None  # bundled default rules when not given
    store: StoreSettings = {}  # type: ignore[assignment]  # validated, paths resolved
    sources: list[Source] = Field(min_length=1)
    mapping: Mapping = {}
    value_maps: ValueMaps = {}  # option texts the taxonomy's labels do not match
    tracker: Tracker
    mail: MailSettings
    roles: dict[str, list[str]] = {}
    google: GoogleSettings | None = None
    microsoft: MicrosoftSettings | None = None
    governance: GovernanceSettings = GovernanceSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name such as "
                             "Europe/London") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def mapping_for(self, source: _Source) -> Mapping:
        return {**self.mapping, **source.mapping}

    def value_maps_for(self, source: _Source) -> ValueMaps:
        return {field: {**self.value_maps.get(field, {}), **source.value_maps.get(field, {})}
                for field in {*self.value_maps, *source.value_maps}}


@dataclass(frozen=True)
class Config:
    settings: Settings
    rules: Rules
    path: Path

    def fingerprint(self) -> str:
        """Changes with any setting or rule (not with comments or key order)."""
        text = self.settings.model_dump_json() + self.rules.model_dump_json()
        return hashlib.sha256(text.encode()).hexdigest()


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("", f"file not found: {path}")]) from None
    except OSError as exc:
        raise ConfigError([("", f"cannot read {path}: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError([("", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}")],
                          str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError([("", "expected a mapping of settings at the top level")], str(path))
    return data


_FIXES = {
    "missing": "required: add it",
    "extra_forbidden": "not a known setting: check the spelling or remove it",
}


def pydantic_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Turn pydantic's errors into (dotted key, message with the fix)."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        # A discriminated union puts the chosen tag into the location; readers never typed it.
        if err["type"] != "union_tag_invalid":
            loc = [p for p in loc if p not in _UNION_TAGS]
        msg = _FIXES.get(err["type"]) or err["msg"].removeprefix("Value error, ")
        out.append((".".join(loc), msg))
    return out


_UNION_TAGS = {kind for model in (GoogleFormsCsv, MicrosoftFormsXlsx, GoogleFormsApi,
                                   MicrosoftFormsGraph, XlsxTracker, GoogleSheetsTracker,
                                   ExcelGraphTracker, EmlFolder, Smtp, Gmail, GraphMail)
               for kind in get_args(model.model_fields["kind"].annotation)}


def bundled_mapping() -> dict[str, str | list[str]]:
    """The demo form's mapping (question title -> field): the titles of the standard form
    (`nearmiss forms create`), and what a provider's own form often says too (`init`)."""
    return _read_yaml(Path(str(BUNDLED / "demo.yaml"))).get("mapping") or {}


def load_rules(path: Path | None = None) -> Rules:
    """Load and cross-check a rules file (the bundled default when `path` is None)."""
    rules_path = path or Path(str(BUNDLED / "rules.yaml"))
    data = _read_yaml(rules_path)
    try:
        rules = Rules.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(pydantic_problems(exc), str(rules_path)) from None
    problems = rules.problems()
    if problems:
        raise ConfigError(problems, str(rules_path))
    return rules


def load_config(path: Path, *, check_credentials: bool = True) -> Config:
    """Read a deployment YAML and its rules; raise ConfigError listing every mistake found.

    `check_credentials=False` skips checking that the secrets and credential files the
    connectors need are there (see `credential_problems`): commands that send and fetch
    nothing (`check`, `explain`) need none, and `nearmiss auth google` loads the config in
    order to create the token.
    """
    path = Path(path)
    data = _read_yaml(path)
    problems: list[tuple[str, str]] = []
    settings = None
    try:
        settings = Settings.model_validate(data, context={"base": path.parent.resolve()})
    except ValidationError as exc:
        problems += pydantic_problems(exc)

    rules_file = data.get("rules")
    rules_path = None
    if isinstance(rules_file, str):
        rules_path = Path(rules_file).expanduser()
        if not rules_path.is_absolute():
            rules_path = path.parent / rules_path
    rules = None
    try:
        rules = load_rules(rules_path)
    except ConfigError as exc:
        problems += [(f"rules ({exc.source or rules_path}): {k}" if k else "rules", m)
                     for k, m in exc.problems]

    if settings is not None and rules is not None:
        problems += _cross_check(settings, rules, check_credentials)
    if problems:
        raise ConfigError(problems, str(path))
    assert settings is not None and rules is not None
    return Config(settings=settings, rules=rules, path=path)


def _cross_check(settings: Settings, rules: Rules, check_credentials: bool = True,
                 ) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    known = set(rules.fields) | {"ignore"}
    for where, mapping in [("mapping", settings.mapping)] + [
        (f"sources.{i}.mapping", s.mapping) for i, s in enumerate(settings.sources)
    ]:
        for question, target in mapping.items():
            if isinstance(target, list) and ("ignore" in target or not target):
                out.append((f"{where}.{question}", "a list of fields fills each of them: "
                            "give one or more fields, without `ignore`"))
            for field in fields_of(target):
                if field in known:
                    continue
                near = difflib.get_close_matches(field, sorted(known), n=1, cutoff=0.6)
                hint = f"did you mean {near[0]!r}? " if near else ""
                out.append((f"{where}.{question}", f"unknown field {field!r}: {hint}map the "
                            "question to a field of the rules file (`nearmiss fields` lists "
                            "them), or to `ignore`"))
    for where, maps in [("value_maps", settings.value_maps)] + [
        (f"sources.{i}.value_maps", s.value_maps) for i, s in enumerate(settings.sources)
    ]:
        out += _value_map_problems(where, maps, rules)
    names = [s.name for s in settings.sources]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        out.append(("sources", f"source name {dup!r} is used twice: give each source its own name"))
    for role in sorted(rules.roles() - set(settings.roles)):
        out.append((f"roles.{role}", "rules alert this role but it has no address: add "
                    f"`{role}: [someone@example.org]` under roles"))
    for role, addresses in settings.roles.items():
        if not addresses:
            out.append((f"roles.{role}", "no address given: list at least one"))
        out += [(f"roles.{role}", f"{a!r} is not an email address: write it as "
                 "someone@example.org") for a in addresses if not valid_address(a)]
    for i, brief in enumerate(settings.mail.learning_briefs):
        out += [(f"mail.learning_briefs.{i}.to", f"{a!r} is not an email address: write it "
                 "as someone@example.org") for a in brief.to if not valid_address(a)]
    for name in ("weekly_review", "board_summary"):
        review = getattr(settings.governance, name)
        for who in review.to if review else []:
            if who not in settings.roles and not valid_address(who):
                out.append((f"governance.{name}.to", f"{who!r} is neither a role under "
                            "roles nor an email address: name a role or write someone@"
                            "example.org"))
    for key in ("sender", "reply_to"):
        value = getattr(settings.mail, key)
        # A display name is welcome ("Quality Team <quality@example.org>"); the address in
        # it must be one, or no server accepts the message and no reply comes back.
        if value is not None and not valid_address(parseaddr(value)[1]):
            out.append((f"mail.{key}", f"{value!r} has no email address in it: write "
                        "quality@example.org or Quality Team <quality@example.org>"))
    if google_apis(settings) and settings.google is None:
        out.append(("google", "a Google source, tracker or mail transport is configured: add a "
                    "`google:` section saying how to authenticate"))
    if uses_microsoft(settings) and settings.microsoft is None:
        out.append(("microsoft", "a Microsoft 365 source, tracker or mail transport is "
                    "configured: add a `microsoft:` section with the tenant and the app's "
                    "client_id"))
    if check_credentials:
        out += credential_problems(settings)
    return out


def _value_map_problems(where: str, maps: ValueMaps, rules: Rules) -> list[tuple[str, str]]:
    """A value map is for a field with fixed values, and maps only to those values."""
    out: list[tuple[str, str]] = []
    for field, values in maps.items():
        spec = rules.fields.get(field)
        if spec is None:
            out.append((f"{where}.{field}", f"unknown field {field!r}: value maps are keyed "
                        "by the rules' field names (`nearmiss check` lists them)"))
            continue
        if spec.type not in ("choice", "ordinal", "multi"):
            out.append((f"{where}.{field}", f"{field} is a {spec.type} field: only choice "
                        "fields have values to map"))
            continue
        allowed = rules.choices(field)
        for text, value in values.items():
            if value is not None and value not in allowed:
                out.append((f"{where}.{field}.{text}", f"{value!r} is not a {field} value: "
                            f"use one of {', '.join(allowed)} (or null for no answer)"))
    return out


# The Google API each kind of source, tracker and mail transport talks to; any other kind
# needs no Google credentials.
_GOOGLE_APIS: dict[type[BaseModel], str] = {
    GoogleFormsApi: "forms", GoogleSheetsTracker: "sheets", Gmail: "gmail"}


def google_api(part: BaseModel) -> str | None:
    """The Google API a source, tracker or mail transport uses (None: not a Google one)."""
    return _GOOGLE_APIS.get(type(part))


def google_apis(settings: Settings) -> list[str]:
    """The Google APIs a deployment uses, in a fixed order: its credentials get only their
    scopes, and no `google:` section or credential is needed when there are none."""
    used = {google_api(part) for part in (*settings.sources, settings.tracker,
                                          settings.mail.transport)}
    return [api for api in ("forms", "sheets", "gmail") if api in used]


def uses_microsoft(settings: Settings) -> bool:
    """Whether any source, the tracker or the mail transport goes through Graph."""
    return any(isinstance(part, MicrosoftFormsGraph | ExcelGraphTracker | GraphMail)
               for part in (*settings.sources, settings.tracker, settings.mail.transport))


def credential_problems(settings: Settings) -> list[tuple[str, str]]:
    """The secrets (database and SMTP password variables) and credential files (Google)
    that the connectors of `settings` need and that are missing, as `(key, message)`
    pairs."""
    out = store_credential_problems(settings.store)
    transport = settings.mail.transport
    if isinstance(transport, Smtp) and transport.password_env and not transport.password():
        out.append(("mail.transport.password_env", f"environment variable "
                    f"{transport.password_env} is not set: export the SMTP password in it"))
    if google_apis(settings) and settings.google is not None:
        out += _google_credentials(settings.google)
    if uses_microsoft(settings) and settings.microsoft is not None:
        out += _microsoft_credentials(settings.microsoft)
    return out


def _microsoft_credentials(ms: MicrosoftSettings) -> list[tuple[str, str]]:
    """The secret, certificate or signed-in token the app's authentication needs."""
    if ms.auth == "device":
        if not Path(ms.token_cache).is_file():
            return [("microsoft.token_cache", f"no Microsoft sign-in at {ms.token_cache}: "
                     "run `nearmiss auth microsoft` once to create it")]
        return []
    if ms.client_secret_env:
        if not ms.secret():
            return [("microsoft.client_secret_env", f"environment variable "
                     f"{ms.client_secret_env} is not set: export the app's client secret in "
                     "it")]
        return []
    assert ms.certificate_env is not None
    return _key_file_problems("microsoft.certificate_env", ms.certificate_env,
                              "the app's PEM certificate (private key and certificate)",
                              "put the app's PEM certificate there")


def _key_file_problems(key: str, variable: str, what: str, fix: str) -> list[tuple[str, str]]:
    """Whether the environment variable `variable` names an existing key file: if not, one
    problem for config key `key`, saying to export the path of `what`, or to `fix` it."""
    try:
        key_file(variable)
    except KeyFileError as exc:
        if exc.reason == "unset":
            return [(key, f"{exc.problem}: export the path of {what} in it")]
        # the variable's value as set (before ~ is expanded), as the user wrote it
        return [(key, f"{exc.variable} points at {exc.value}, which does not exist: {fix}")]
    return []


def store_credential_problems(store: StoreSettings) -> list[tuple[str, str]]:
    """The database password a PostgreSQL store needs, if its variable is not set; also
    what `nearmiss migrate` and `nearmiss store copy` check, which need no other secret."""
    if store.password_env and not store.password():
        return [("store.password_env", f"environment variable {store.password_env} is not "
                 "set: export the database password in it")]
    return []


def _google_credentials(google: GoogleSettings) -> list[tuple[str, str]]:
    """The credentials a Google connector needs are where the config says they are.

    Only where: the key file's content is judged by the connectors that load it (and by
    `nearmiss doctor`), so a config loads wherever the file is present.
    """
    if google.auth == "service_account":
        return _key_file_problems("google.key_file_env", google.key_file_env,
                                  "the service account's JSON key file",
                                  "download the service account's JSON key there")
    if not Path(google.token_file).is_file():
        return [("google.token_file", f"no Google user token at {google.token_file}: run "
                 "`nearmiss auth google` (with "
                 f"{google.client_secrets_env} set to the OAuth client file) to create it")]
    return []


# -- the one check of a credential file named by an environment variable --------------------

KeyKind = Literal["service_account", "oauth_client"]
KeyFileReason = Literal["unset", "missing", "unreadable", "not_json", "wrong_kind"]


class KeyFileError(Exception):
    """Why the credential file an environment variable names cannot be used.

    `reason`: the variable is "unset", the file is "missing", "unreadable" (cannot be
    opened), "not_json", or the "wrong_kind" of JSON. `problem` says it in one line without
    a fix: the config check, `nearmiss doctor` and the Google connectors each add the fix
    that suits where they report it.
    """

    def __init__(self, reason: KeyFileReason, variable: str, value: str = "",
                 path: Path | None = None, problem: str = "") -> None:
        super().__init__(problem)
        self.reason, self.variable, self.value, self.path = reason, variable, value, path
        self.problem = problem


_KEY_KINDS: dict[KeyKind, str] = {"service_account": "a service account key file",
                                  "oauth_client": "an OAuth client file"}


def key_file(variable: str, kind: KeyKind | None = None) -> Path:
    """The credential file environment variable `variable` names: the variable is set and
    the file exists; given `kind`, it is also read and must be JSON of that kind. Raises
    KeyFileError."""
    value = os.environ.get(variable) or ""
    if not value:
        raise KeyFileError("unset", variable, problem=f"environment variable {variable} is "
                           "not set")
    path = Path(value).expanduser()
    if not path.is_file():
        raise KeyFileError("missing", variable, value, path,
                           f"{variable} points at {path}, which does not exist")
    if kind is None:
        return path
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError too
        raise KeyFileError("unreadable" if isinstance(exc, OSError) else "not_json",
                           variable, value, path,
                           f"cannot read {path} as JSON ({type(exc).__name__})") from None
    if kind == "service_account":
        right = isinstance(info, dict) and info.get("type") == "service_account"
    else:  # google-auth-oauthlib takes the client of a desktop ("installed") or web app
        right = isinstance(info, dict) and ("installed" in info or "web" in info)
    if not right:
        raise KeyFileError("wrong_kind", variable, value, path,
                           f"{path} is not {_KEY_KINDS[kind]}")
    return path
