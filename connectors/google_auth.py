"""Google credentials, clients and the one place Google errors are judged retryable or not.

A deployment authenticates either as a service account (key file path in an environment
variable; optional domain-wide delegation for Gmail) or as a user who consented once with
`nearmiss auth google`. Each connector asks only for the scopes it needs.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import requests

from config.settings import GoogleSettings, KeyFileError, KeyKind, key_file
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

SCOPES = {
    "forms": ["https://www.googleapis.com/auth/forms.body.readonly",
              "https://www.googleapis.com/auth/forms.responses.readonly"],
    "sheets": ["https://www.googleapis.com/auth/spreadsheets"],
    # only `nearmiss forms create` writes a form
    "forms_write": ["https://www.googleapis.com/auth/forms.body"],
    "gmail": ["https://www.googleapis.com/auth/gmail.send"],
}
HOSTS = {"forms": "https://forms.googleapis.com", "sheets": "https://sheets.googleapis.com",
         "gmail": "https://gmail.googleapis.com"}


class Pacer:
    """Spaces requests so a run stays under a per-user per-minute quota (Sheets: 60)."""

    def __init__(self, per_minute: int, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 60.0 / per_minute
        self.sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self._next > now:
                self.sleep(self._next - now)
            self._next = max(now, self._next) + self.interval


class GoogleClients:
    """Credentials and HTTP plumbing shared by the Forms, Sheets and Gmail connectors.

    `credentials` may be None for an unauthenticated client (local fakes); `endpoint`
    replaces the Google hosts (private endpoints, tests); `sleep` is what backoff and
    pacing wait with.
    """

    def __init__(self, credentials: Any = None, *, gmail_credentials: Any = None,
                 endpoint: str | None = None, max_requests_per_minute: int = 50,
                 sleep: Callable[[float], None] = time.sleep, timeout: float = 60,
                 attempts: int = 6, delegated_user: str | None = None) -> None:
        self.credentials = credentials
        self.gmail_credentials = gmail_credentials or credentials
        self.delegated_user = delegated_user  # whom a service account sends Gmail as
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.pacer = Pacer(max_requests_per_minute, sleep)
        self.sleep = sleep
        self.timeout = timeout
        self.attempts = attempts

    @classmethod
    def from_settings(cls, settings: GoogleSettings,
                      apis: Iterable[str] = ("forms", "sheets", "gmail"),
                      **options: Any) -> GoogleClients:
        """Clients for the APIs a deployment uses, each credential with only their scopes.

        `options` are passed on to the constructor (endpoint, sleep, ...) and win over the
        settings, so tests and private endpoints can reuse the real credential loading.
        """
        apis = list(apis)
        scopes = [s for api in apis if api != "gmail" for s in SCOPES[api]]
        options.setdefault("max_requests_per_minute", settings.max_requests_per_minute)
        if settings.endpoint:
            options.setdefault("endpoint", settings.endpoint)
        if settings.auth == "service_account":
            from google.oauth2 import service_account

            path = _key_file(settings.key_file_env, "service_account",
                             "the service account key file", _NOT_A_KEY)
            try:  # right kind, but google-auth may still miss a field it needs
                base = service_account.Credentials.from_service_account_file(str(path))
            except (ValueError, KeyError, AttributeError, TypeError):
                raise NearmissError(_NOT_A_KEY.format(path=path)) from None
            if options.get("endpoint"):  # the token endpoint moves with the APIs
                base = base.with_token_uri(str(options["endpoint"]).rstrip("/") + "/token")
            creds = base.with_scopes(scopes) if scopes else None
            gmail = None
            if "gmail" in apis:
                # Only the Gmail credentials act as the delegated user: Forms and Sheets are
                # shared with the service account itself.
                gmail = base.with_scopes(SCOPES["gmail"])
                if settings.delegated_user:
                    gmail = gmail.with_subject(settings.delegated_user)
            return cls(creds, gmail_credentials=gmail, delegated_user=settings.delegated_user,
                       **options)
        from google.oauth2.credentials import Credentials

        token = Path(settings.token_file)
        if not token.exists():
            raise NearmissError(f"no Google user token at {token}: run `nearmiss auth google` "
                                "once to create it")
        try:
            creds = Credentials.from_authorized_user_file(str(token))
        except (ValueError, KeyError, AttributeError, TypeError):
            raise NearmissError(f"{token} is not a Google user token: run `nearmiss auth "
                                "google` again") from None
        if options.get("endpoint"):
            # google-auth always refreshes user tokens at Google's own token_uri, whatever
            # the file says; an endpoint override must redirect that host too.
            creds = creds.with_token_uri(str(options["endpoint"]).rstrip("/") + "/token")
        return cls(creds, **options)

    @property
    def account(self) -> str:
        """Who the connectors act as, for messages such as "share the sheet with ..."."""
        email = getattr(self.credentials or self.gmail_credentials, "service_account_email",
                        None)
        return email or "the account that ran `nearmiss auth google`"

    def service(self, api: str, version: str) -> Any:
        """A google-api-python-client resource from the bundled discovery document (no
        network at build time), pointed at `endpoint` when one is set."""
        import httplib2
        from googleapiclient.discovery import build

        options = {"api_endpoint": self.endpoint + "/"} if self.endpoint else None
        creds = self.gmail_credentials if api == "gmail" else self.credentials
        if creds is None:
            return build(api, version, http=httplib2.Http(timeout=self.timeout),
                         client_options=options, static_discovery=True, cache_discovery=False)
        import google_auth_httplib2

        http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(
            timeout=self.timeout))
        return build(api, version, http=http, client_options=options, static_discovery=True,
                     cache_discovery=False)

    def session(self, api: str = "sheets") -> requests.Session:
        """A requests session (for gspread) authorised with the credentials."""
        if self.credentials is None:
            session = requests.Session()
        else:
            from google.auth.transport.requests import AuthorizedSession

            session = AuthorizedSession(self.credentials)
        return pointed(session, HOSTS[api], self.endpoint)

    def call(self, what: str, fn: Callable[[], T],
             explain: Callable[[ApiError], str | None] | None = None) -> T:
        """Run one request: paced, retried on quota and server errors with backoff
        (honouring Retry-After), and any failure turned into a one-line ApiError.

        `explain` may give the fix for a status the caller understands (403: share it).
        """
        def attempt() -> T:
            self.pacer.wait()
            try:
                return fn()
            except ApiError:
                raise
            except Exception as exc:  # every client library raises its own types
                raise classify(exc, what) from None

        try:
            return _with_retries(attempt, attempts=self.attempts, sleep=self.sleep)
        except ApiError as exc:
            fix = explain(exc) if explain else None
            if fix:
                raise ApiError(f"{what}: {fix}", exc.status) from None
            raise


class CredentialsRefused(ApiError):
    """The token endpoint refused the credentials (revoked key or token, delegation not
    granted for a scope): no API request was made, and retrying will not help."""


def forbidden_reason(exc: ApiError) -> str:
    """What a 403 means, from Google's message: "disabled" (the API is not enabled in the
    Cloud project), "scope" (the token lacks a scope the method needs) or "access" (the
    file is not shared with the account, or the user may not do this)."""
    text = str(exc).lower()
    if "has not been used in project" in text or "it is disabled" in text:
        return "disabled"
    if "insufficient authentication scopes" in text or "insufficient permission" in text:
        return "scope"
    return "access"


def classify(exc: BaseException, what: str) -> ApiError:
    """The single judgement of a Google failure: retryable (429, 5xx, time-outs, dropped
    connections) or not, with a message naming what was being done."""
    from google.auth import exceptions as auth_exceptions
    from googleapiclient.errors import HttpError

    status, message, retry_after = None, str(exc) or type(exc).__name__, None

    if isinstance(exc, HttpError):
        status = int(exc.resp.status)
        message = _google_message(exc.content) or exc.reason or message
        retry_after = parse_retry_after(exc.resp.get("retry-after"))
    elif isinstance(getattr(exc, "response", None), requests.Response):  # gspread, requests
        response = exc.response
        status = response.status_code
        message = _google_message(response.content) or message
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
    elif isinstance(exc, auth_exceptions.RefreshError):
        return CredentialsRefused(f"{what}: Google refused the credentials "
                                  f"({_first_line(exc)}): check the key file, or run "
                                  "`nearmiss auth google` again")
    elif isinstance(exc, requests.ConnectionError | requests.Timeout | socket.timeout
                    | TimeoutError | ConnectionError | auth_exceptions.TransportError
                    | OSError):
        return RetryableApiError(f"{what}: cannot reach Google ({type(exc).__name__})")
    if status is None:
        return ApiError(f"{what}: {_first_line(exc)}")
    text = f"{what}: HTTP {status}: {message}"
    if is_retryable(status):
        return RetryableApiError(text, status, retry_after)
    return ApiError(text, status)


def _google_message(body: bytes | str | None) -> str | None:
    try:
        data = json.loads(body or b"")
    except (ValueError, TypeError):
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return error.get("message")
    return data.get("error_description") if isinstance(data, dict) else None


def _first_line(exc: BaseException) -> str:
    # google-auth raises RefreshError(message, response_body): show the message only.
    text = exc.args[0] if len(exc.args) > 1 and isinstance(exc.args[0], str) else str(exc)
    return (text.splitlines() or [type(exc).__name__])[0]


_NOT_A_KEY = ("{path} is not a service account key file: download a JSON key for the service "
              "account")
_NOT_A_CLIENT = ("{path} is not an OAuth client file: download the JSON of a 'Desktop app' "
                 "OAuth client from the Cloud console")


def _key_file(variable: str, kind: KeyKind, what: str, wrong: str) -> Path:
    """The credential file `variable` names (config.settings.key_file), or one line saying
    what to do: `what` is the file as "export the path of ..." names it, `wrong` the
    message for a file that is not that kind of JSON."""
    try:
        return key_file(variable, kind)
    except KeyFileError as exc:
        if exc.reason == "unset":
            message = f"{exc.problem}: export the path of {what}"
        elif exc.reason == "missing":
            message = exc.problem
        elif exc.reason == "unreadable":
            message = f"{exc.problem}: give the user that runs nearmiss read access to it"
        else:  # not JSON, or JSON of another kind: worded as google-auth's refusal is
            message = wrong.format(path=exc.path)
        raise NearmissError(message) from None


def authorise_user(settings: GoogleSettings,
                   apis: Iterable[str] = ("forms", "sheets", "gmail"),
                   timeout_seconds: float | None = 600) -> Path:
    """The one-time OAuth consent of `nearmiss auth google`: a local redirect, then the
    token (with its refresh token) stored where the config says, readable by the owner only.

    The consent page must be opened in a browser on this machine (or through an SSH port
    forward), because Google redirects to http://localhost:<port>/ here.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow

    secrets = _key_file(settings.client_secrets_env, "oauth_client",
                        "the OAuth client secrets file", _NOT_A_CLIENT)
    scopes = [s for api in apis for s in SCOPES[api]]
    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(secrets), scopes=scopes)
    except (ValueError, KeyError, json.JSONDecodeError):
        raise NearmissError(_NOT_A_CLIENT.format(path=secrets)) from None
    try:
        creds = flow.run_local_server(port=0, open_browser=False,
                                      timeout_seconds=timeout_seconds)
    except Exception as exc:  # oauthlib, wsgiref and requests each raise their own types
        raise NearmissError(f"the Google consent did not complete ({_first_line(exc)}): run "
                            "`nearmiss auth google` again") from None
    token = Path(settings.token_file)
    token.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:  # never readable by others, not even for a moment
        fh.write(creds.to_json())
    token.chmod(0o600)
    return token
