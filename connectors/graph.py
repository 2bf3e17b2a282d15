"""Microsoft Graph: tokens (msal), requests (office365-rest-python-client), where a workbook
is, and the one place Graph failures are judged retryable or not.

A deployment authenticates as its app registration (a certificate, or a client secret) or
as a person who signed in once with `nearmiss auth microsoft` (device code). Tokens are
cached in `microsoft.token_cache`, readable by its owner only, so a job every 15 minutes
asks for a token about once an hour.

Every Graph call goes through `GraphClients.call` (or `batch`, Graph's JSON batching): a
429 or 5xx is retried after the server's Retry-After, a workbook locked by desktop Excel a
few times with backoff, and anything else becomes one line naming what was being done.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests

from config.settings import GRAPH, MicrosoftSettings, Workbook, key_file
from connectors.endpoints import pointed
from connectors.errors import (
    ApiError,
    NearmissError,
    RetryableApiError,
    is_retryable,
    parse_retry_after,
)
from connectors.errors import with_retries as _with_retries

T = TypeVar("T")

SCOPE_APP = "/.default"  # app-only: every application permission an admin consented to
# Delegated: what a signed-in person lets the job do (offline_access: a refresh token).
SCOPES_DELEGATED = ("Files.ReadWrite.All", "Sites.ReadWrite.All", "Mail.Send")
BATCH_LIMIT = 20  # requests in one JSON $batch, as Graph documents
# Excel answers these while a workbook is open for editing elsewhere (desktop Excel with an
# exclusive lock) or its edit session cannot be had: worth a few more attempts.
_LOCKED = (423,)
_LOCK_CODES = ("editmodecannotacquirelock", "resourcelocked", "itemlocked", "locked",
               "notallowed")
_SESSION_GONE = ("invalidsessionrecreatable", "invalidsessionnotfound", "sessionnotfound",
                 "invalidsession")


class CredentialsRefused(ApiError):
    """The identity platform refused the app or the person: no Graph request was made."""


class SessionExpired(ApiError):
    """The workbook's edit session expired or was closed by Excel: start again."""


def classify(exc: BaseException, what: str) -> ApiError:
    """The single judgement of a Graph failure: retryable (429, 5xx, a locked workbook,
    time-outs, dropped connections) or not, with a message naming what was being done."""
    if isinstance(exc, ApiError):
        return exc
    response = getattr(exc, "response", None)
    if isinstance(response, requests.Response):
        return judge(response.status_code, _body(response), response.headers, what)
    if isinstance(exc, requests.ConnectionError | requests.Timeout | socket.timeout
                  | TimeoutError | ConnectionError | OSError):
        return RetryableApiError(f"{what}: cannot reach Microsoft Graph ({type(exc).__name__})")
    if isinstance(exc, NearmissError):
        return ApiError(str(exc))
    return ApiError(f"{what}: {(str(exc).splitlines() or [type(exc).__name__])[0]}")


def judge(status: int, body: Any, headers: Mapping[str, str], what: str) -> ApiError:
    """An error answer (a whole response, or one of a $batch) as an ApiError."""
    code, message = error_of(body)
    text = f"{what}: HTTP {status}: {message or code or 'no details'}"
    codes = " ".join(error_codes(body)).casefold()
    if any(c in codes for c in _SESSION_GONE):
        return SessionExpired(text, status)
    retry_after = parse_retry_after(_header(headers, "Retry-After"))
    if is_retryable(status) or status in _LOCKED or (
            status == 409 and any(c in codes for c in _LOCK_CODES)):
        return RetryableApiError(text, status, retry_after)
    return ApiError(text, status)


def error_of(body: Any) -> tuple[str, str]:
    """(code, message) of Graph's error envelope; the innermost message says most."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "").strip()


def error_codes(body: Any) -> list[str]:
    """Every code of the envelope and its nested innerError ("conflict", then the cause)."""
    out: list[str] = []
    error = body.get("error") if isinstance(body, dict) else None
    while isinstance(error, dict):
        if error.get("code"):
            out.append(str(error["code"]))
        error = error.get("innerError") or error.get("innererror")
    return out


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


# -- tokens ---------------------------------------------------------------------------------


class Tokens:
    """Access tokens from the Microsoft identity platform through msal, cached on disk.

    msal refuses an authority that is not https; a login endpoint given as http (a local
    test double) is named as https and the session sends it on as http.
    """

    def __init__(self, ms: MicrosoftSettings, *, session: requests.Session | None = None,
                 timeout: float = 30) -> None:
        self.ms = ms
        self.cache_path = Path(ms.token_cache)
        self._session = session or requests.Session()
        self._timeout = timeout
        self._app: Any = None
        self._cache: Any = None
        self._stale = False  # Graph refused the cached token: ask for a new one

    @property
    def authority(self) -> str:
        parts = urlsplit(self.ms.login_endpoint)
        return f"https://{parts.netloc}/{self.ms.tenant}"

    def _http(self) -> requests.Session:
        parts = urlsplit(self.ms.login_endpoint)
        if parts.scheme == "http":
            return pointed(self._session, f"https://{parts.netloc}", f"http://{parts.netloc}")
        return self._session

    def app(self) -> Any:
        """The msal application (built once: its constructor asks the authority for its
        OpenID configuration)."""
        if self._app is not None:
            return self._app
        import msal

        self._cache = msal.SerializableTokenCache()
        if self.cache_path.is_file():
            # an unreadable cache is only a cache: a new token is asked for
            with contextlib.suppress(OSError, ValueError):
                self._cache.deserialize(self.cache_path.read_text(encoding="utf-8"))
        options: dict[str, Any] = {"authority": self.authority, "token_cache": self._cache,
                                   "http_client": self._http(), "timeout": self._timeout,
                                   "instance_discovery": False}
        try:
            if self.ms.auth == "device":
                self._app = msal.PublicClientApplication(self.ms.client_id, **options)
            else:
                self._app = msal.ConfidentialClientApplication(
                    self.ms.client_id, client_credential=self._credential(), **options)
        except ValueError as exc:  # msal's refusal of a tenant it cannot find
            raise CredentialsRefused(f"Microsoft sign-in: {exc}: check microsoft.tenant") \
                from None
        except requests.RequestException as exc:
            raise RetryableApiError("Microsoft sign-in: cannot reach "
                                    f"{self.ms.login_endpoint} ({type(exc).__name__})") \
                from None
        return self._app

    def _credential(self) -> Any:
        if self.ms.client_secret_env:
            secret = self.ms.secret()
            if not secret:
                raise NearmissError(f"environment variable {self.ms.client_secret_env} is not "
                                    "set: export the app's client secret in it")
            return secret
        assert self.ms.certificate_env is not None
        return certificate_credential(key_file(self.ms.certificate_env))

    def scopes(self) -> list[str]:
        if self.ms.auth == "device":  # a national cloud's scopes name its own Graph
            prefix = _resource(self.ms) + "/" if _national(self.ms) else ""
            return [prefix + scope for scope in SCOPES_DELEGATED]
        return [_resource(self.ms) + SCOPE_APP]

    def __call__(self) -> dict[str, Any]:
        """A token for Graph (msal answers from its cache while one is valid)."""
        app = self.app()
        try:
            if self.ms.auth == "device":
                accounts = app.get_accounts()
                result = app.acquire_token_silent(self.scopes(), account=accounts[0],
                                                  force_refresh=self._stale) \
                    if accounts else None
                if not result:
                    raise CredentialsRefused(
                        f"no valid Microsoft sign-in in {self.cache_path}: run `nearmiss "
                        "auth microsoft` again")
            else:
                if self._stale:
                    app.remove_tokens_for_client()
                result = app.acquire_token_for_client(self.scopes())
            self._stale = False
        except requests.RequestException as exc:
            raise RetryableApiError("Microsoft sign-in: cannot reach "
                                    f"{self.ms.login_endpoint} ({type(exc).__name__})") \
                from None
        if "access_token" not in result:
            raise CredentialsRefused(f"Microsoft sign-in refused: {refusal(result, self.ms)}")
        self.save()
        return result

    def renew(self) -> None:
        """The next call asks the identity platform, not the cache: Graph refused the
        cached token (revoked, or the clocks disagree on its expiry)."""
        self._stale = True

    def save(self) -> None:
        """Write the cache when msal changed it: readable by its owner only."""
        if self._cache is None or not self._cache.has_state_changed:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.cache_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self._cache.serialize())
        self.cache_path.chmod(0o600)
        self._cache.has_state_changed = False

    def sign_in(self, show: Callable[[str], None]) -> str:
        """The device-code sign-in of `nearmiss auth microsoft`: `show` tells the person
        where to go and which code to type; returns who signed in."""
        app = self.app()
        flow = app.initiate_device_flow(scopes=self.scopes())
        if "user_code" not in flow:
            raise CredentialsRefused(f"Microsoft sign-in refused: {refusal(flow, self.ms)}")
        show(flow["message"])
        result = app.acquire_token_by_device_flow(flow)
        if "access_token" not in result:
            raise CredentialsRefused(f"Microsoft sign-in did not complete: "
                                     f"{refusal(result, self.ms)}")
        self.save()
        claims = result.get("id_token_claims") or token_claims(result["access_token"])
        return str(claims.get("preferred_username") or claims.get("upn") or "the account")


def _national(ms: MicrosoftSettings) -> bool:
    return ms.graph_endpoint.rstrip("/") != GRAPH and urlsplit(
        ms.graph_endpoint).scheme == "https"


def _resource(ms: MicrosoftSettings) -> str:
    """Tokens are for Graph's public resource URI unless a national cloud's Graph is set."""
    return ms.graph_endpoint.rstrip("/") if _national(ms) else GRAPH


def certificate_credential(path: Path) -> dict[str, str]:
    """msal's certificate credential from one PEM file holding the private key and the
    certificate (as `openssl req -x509 -newkey ... -nodes` writes them)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        pem = path.read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError) as exc:
        raise NearmissError(f"{path} is not a PEM certificate with its private key "
                            f"({type(exc).__name__}): put both in one PEM file") from None
    key = re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----.+?-----END [A-Z ]*PRIVATE KEY-----",
                    pem, re.S)
    if key is None:
        raise NearmissError(f"{path} holds a certificate but no private key: put both in one "
                            "PEM file")
    return {"private_key": key.group(0).decode(),
            "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),
            "public_certificate": pem.decode(errors="replace")}


# AADSTS codes a deployment causes, and what fixes each.
_REFUSALS = {
    7000215: "the client secret is wrong or expired: create a new one in the app "
             "registration and export it",
    7000222: "the client secret has expired: create a new one in the app registration",
    700027: "the certificate is not the one uploaded to the app registration: upload its "
            "public part under Certificates & secrets",
    700016: "no app with this client_id in the tenant: check microsoft.client_id and "
            "microsoft.tenant",
    90002: "no such tenant: check microsoft.tenant",
    65001: "an admin has not consented to the app's permissions: {consent}",
    50076: "the account needs multi-factor sign-in: run `nearmiss auth microsoft` again",
    70008: "the sign-in has expired: run `nearmiss auth microsoft` again",
    50173: "the sign-in was revoked: run `nearmiss auth microsoft` again",
}


def consent_link(ms: MicrosoftSettings) -> str:
    """Where an admin grants the app's application permissions for the whole tenant."""
    return (f"{ms.login_endpoint.rstrip('/')}/{ms.tenant}/adminconsent?client_id="
            f"{ms.client_id}")


def refusal(result: Mapping[str, Any], ms: MicrosoftSettings) -> str:
    """One line for msal's error dict (msal returns errors, it does not raise them)."""
    for code in result.get("error_codes") or []:
        if code in _REFUSALS:
            return _REFUSALS[code].format(consent=f"an admin opens {consent_link(ms)}")
    text = str(result.get("error_description") or result.get("error") or "no details")
    return text.splitlines()[0]


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT access token (not verified: only read, to say which permissions
    it carries)."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


# -- requests -------------------------------------------------------------------------------


class GraphClients:
    """The Graph client of a deployment: office365's GraphClient (its session pointed at
    `endpoint` when that is not the public Graph), retries and one-line failures."""

    def __init__(self, token: Callable[[], dict[str, Any]], *, endpoint: str = GRAPH,
                 session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, timeout: float = 60,
                 attempts: int = 6) -> None:
        from office365.graph_client import GraphClient

        self.token = token
        self.endpoint = endpoint.rstrip("/")
        self.sleep, self.attempts = sleep, attempts
        session = pointed(session or requests.Session(), GRAPH, self.endpoint)
        self.client = GraphClient(token_callback=token).with_transport(session=session,
                                                                        timeout=timeout)
        self.requests = 0  # sent, retries and batches included (for the run's figures)

    @classmethod
    def from_settings(cls, ms: MicrosoftSettings, **options: Any) -> GraphClients:
        login_session = options.pop("login_session", None)
        options.setdefault("endpoint", ms.graph_endpoint)
        return cls(Tokens(ms, session=login_session), **options)

    def request(self, method: str, path: str, body: Any = None,
                headers: Mapping[str, str] | None = None) -> requests.Response:
        """One attempt. `path` is relative to /v1.0 (or a full URL)."""
        from office365.runtime.http.http_method import HttpMethod
        from office365.runtime.http.request_options import RequestOptions

        url = path if "://" in path else f"{GRAPH}/v1.0{path}"
        options = RequestOptions(url, HttpMethod(method.upper()), headers=dict(headers or {}))
        if body is not None:
            options.data = body
            if not isinstance(body, bytes | str):
                options.set_header("Content-Type", "application/json")
        self.requests += 1
        return self.client.pending_request().execute_request_direct(options)

    def call(self, what: str, method: str, path: str, body: Any = None,
             headers: Mapping[str, str] | None = None,
             explain: Callable[[ApiError], str | None] | None = None) -> Any:
        """One request with retries; its JSON answer (None when it has no body)."""
        def send() -> Any:
            response = self.request(method, path, body, headers)
            return _body(response) if response.content else None

        return self.retried(what, send, explain)

    def retried(self, what: str, send: Callable[[], T],
                explain: Callable[[ApiError], str | None] | None = None) -> T:
        """`send` (which makes requests) until it succeeds or fails for good: retryable
        failures after a pause, a refused token once after asking for a new one; then one
        line naming `what`, with the fix `explain` knows."""
        def attempt() -> T:
            for renewed in (False, True):
                try:
                    return send()
                except Exception as exc:  # office365, requests and msal each raise their own
                    error = classify(exc, what)
                    renew = getattr(self.token, "renew", None)
                    if error.status == 401 and not renewed and renew is not None:
                        renew()  # a token refused once is replaced once, then it counts
                        continue
                    raise error from None
            raise AssertionError("unreachable")

        try:
            return _with_retries(attempt, attempts=self.attempts, sleep=self.sleep)
        except ApiError as exc:
            raise _explained(exc, explain) from None

    def batch(self, what: str, items: Sequence[dict[str, Any]],
              explain: Callable[[ApiError], str | None] | None = None
              ) -> list[tuple[int, Any]]:
        """Requests sent as JSON $batch, 20 at a time: each (status, body) in the order of
        `items`. Sub-requests Graph throttled or failed for a while are sent again (after
        the longest Retry-After among them); any other failure is returned to the caller.
        Each item is {"method", "url" (relative to /v1.0), "body"?, "headers"?}."""
        out: dict[int, tuple[int, Any]] = {}
        for start in range(0, len(items), BATCH_LIMIT):
            chunk = list(enumerate(items[start:start + BATCH_LIMIT], start))
            for attempt in range(self.attempts):
                body = {"requests": [{"id": str(i), **_sub(item)} for i, item in chunk]}
                answer = self.call(what, "POST", "/$batch", body, explain=explain)
                again: list[tuple[int, dict[str, Any]]] = []
                pause = 0.0
                for response in (answer or {}).get("responses") or []:
                    i = int(response["id"])
                    status = int(response.get("status") or 0)
                    failed = judge(status, response.get("body"), response.get("headers") or {},
                                   what) if status >= 400 else None
                    if isinstance(failed, RetryableApiError):
                        again.append((i, items[i]))
                        pause = max(pause, failed.retry_after or min(60.0, 2.0 ** attempt))
                        if attempt == self.attempts - 1:
                            failed = ApiError(f"{failed} (gave up after {self.attempts} "
                                              "attempts)", status)
                            raise _explained(failed, explain)
                    out[i] = (status, response.get("body"))
                if not again:
                    break
                self.sleep(min(pause, 60.0))
                chunk = again
        return [out[i] for i in range(len(items))]


def _explained(exc: ApiError, explain: Callable[[ApiError], str | None] | None) -> ApiError:
    """The failure with the caller's fix for it, when the caller knows one."""
    fix = explain(exc) if explain else None
    return ApiError(f"{str(exc).split(': HTTP ')[0]}: {fix}", exc.status) if fix else exc


def _sub(item: Mapping[str, Any]) -> dict[str, Any]:
    sub = {"method": item["method"], "url": item["url"]}
    headers = dict(item.get("headers") or {})
    if "body" in item and item["body"] is not None:
        sub["body"] = item["body"]
        headers.setdefault("Content-Type", "application/json")
    if headers:
        sub["headers"] = headers
    return sub


def explain_workbook(exc: ApiError, what: str, key: str) -> str | None:
    """The fix for a workbook Graph refuses (403: access; 404: the place is wrong)."""
    if exc.status == 403:
        return (f"the app may not open {what}: grant it access to the site (Sites.Selected "
                "with a site permission) or consent to Files.ReadWrite.All; `nearmiss "
                "doctor` says which")
    if exc.status == 404:
        return f"{what} was not found: check {key} (site, path, ids or link)"
    if exc.status == 401:
        return "Microsoft Graph refused the token: check the microsoft: section"
    return None


def ok(status: int, body: Any, what: str) -> Any:
    """A $batch answer that must have succeeded."""
    if status >= 400:
        raise judge(status, body, {}, what)
    return body


# -- where a workbook is --------------------------------------------------------------------

_ITEM_FIELDS = "id,name,cTag,eTag,webUrl,parentReference"


@dataclass(frozen=True)
class Item:
    """A file in a drive, as Graph names it, with its change tags."""

    drive_id: str
    item_id: str
    name: str = ""
    ctag: str = ""  # changes when the content changes
    etag: str = ""
    web_url: str = ""

    @property
    def path(self) -> str:
        return f"/drives/{quote(self.drive_id, safe='')}/items/{quote(self.item_id, safe='')}"

    @property
    def workbook(self) -> str:
        return self.path + "/workbook"


def item_of(body: Mapping[str, Any]) -> Item:
    parent = body.get("parentReference") or {}
    return Item(str(parent.get("driveId") or ""), str(body.get("id") or ""),
                str(body.get("name") or ""), str(body.get("cTag") or ""),
                str(body.get("eTag") or ""), str(body.get("webUrl") or ""))


def locate(clients: GraphClients, where: Workbook, what: str,
           explain: Callable[[ApiError], str | None] | None = None) -> Item:
    """The workbook's ids and change tags, in one request (two for a site and path)."""
    select = f"?$select={_ITEM_FIELDS}"
    if where.drive_id and where.item_id:
        path = Item(where.drive_id, where.item_id).path
    elif where.link:
        path = f"/shares/{share_id(where.link)}/driveItem"
    elif where.user:
        path = f"/users/{quote(where.user, safe='@')}/drive/root:/{_path(where.path)}"
    else:
        assert where.site is not None
        host, _, site_path = where.site.removeprefix("https://").partition("/")
        site = clients.call(what, "GET", f"/sites/{host}:/{_path(site_path)}?$select=id",
                            explain=explain)
        path = f"/sites/{site['id']}/drive/root:/{_path(where.path)}"
    body = clients.call(what, "GET", path + select, explain=explain)
    item = item_of(body)
    if not item.drive_id:  # a share's driveItem names its drive; a by-id answer may not
        item = Item(where.drive_id or "", item.item_id, item.name, item.ctag, item.etag,
                    item.web_url)
    return item


def tags(clients: GraphClients, item: Item, what: str,
         explain: Callable[[ApiError], str | None] | None = None) -> Item:
    """The item again, for its change tags (one small request)."""
    body = clients.call(what, "GET", f"{item.path}?$select={_ITEM_FIELDS}", explain=explain)
    found = item_of(body)
    return Item(item.drive_id, item.item_id, found.name or item.name, found.ctag, found.etag,
                found.web_url or item.web_url)


def share_id(link: str) -> str:
    """A sharing link as Graph's shares/{id}: "u!" and the URL in unpadded base64url."""
    encoded = base64.urlsafe_b64encode(link.strip().encode()).decode().rstrip("=")
    return "u!" + encoded


def _path(path: str | None) -> str:
    return quote((path or "").strip("/"), safe="/")


# -- cells ------------------------------------------------------------------------------------

EXCEL_EPOCH = datetime(1899, 12, 30)  # serial 0, as Excel counts (its 1900 leap year aside)
_DATE_TOKENS = re.compile(r"[dmyhs]", re.I)
_QUOTED = re.compile(r'"[^"]*"|\\.|\[[^\]]*\]')


def is_date_format(number_format: Any) -> bool:
    """Whether an Excel number format shows a date or time ("m/d/yyyy h:mm", "[$-409]d-mmm")
    rather than a number ("0.00", "General", "@")."""
    if not isinstance(number_format, str) or number_format in ("General", "@", ""):
        return False
    return bool(_DATE_TOKENS.search(_QUOTED.sub("", number_format)))


def from_serial(value: float) -> datetime:
    """An Excel serial date as the naive wall-clock time it shows (to the second)."""
    return EXCEL_EPOCH + timedelta(seconds=round(float(value) * 86400))


def sheet_path(workbook: str, sheet_id: str) -> str:
    """A worksheet's URL under a workbook, by its id (Excel's ids are braced GUIDs)."""
    return f"{workbook}/worksheets/{quote(sheet_id, safe='')}"


def range_path(workbook: str, sheet_id: str, address: str) -> str:
    return f"{sheet_path(workbook, sheet_id)}/range(address='{quote(address, safe=':')}')"


def cells(used: dict[str, Any]) -> list[list[object]]:
    """A workbookRange's values as openpyxl gives cells: "" empty (None), a number shown as
    a date a naive datetime, a time of day a time (Excel stores serial days)."""
    values = used.get("values") or []
    formats = used.get("numberFormat") or []
    out: list[list[object]] = []
    for r, row in enumerate(values):
        fmt = formats[r] if r < len(formats) else []
        line: list[object] = []
        for c, value in enumerate(row):
            if value == "" or value is None:
                line.append(None)
            elif isinstance(value, int | float) and not isinstance(value, bool) and (
                    c < len(fmt) and is_date_format(fmt[c])):
                # Under one day: a time of day alone ("20:00"), as openpyxl reads it too.
                line.append(from_serial(value).time() if 0 <= value < 1
                            else from_serial(value))
            else:
                line.append(value)
        out.append(line)
    return out
