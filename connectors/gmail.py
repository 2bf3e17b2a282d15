"""Sending the outbox through the Gmail API (`users.messages.send` with a raw message).

A service account sends only through domain-wide delegation: it acts as a Workspace user
(`google.delegated_user`) who must hold the gmail.send scope in the Admin console. Without
it Google answers 400 "Precondition check failed" or refuses the token (unauthorized_client),
which says nothing about any one message: those, like 401/403, stop the run and keep the
messages queued. A 400 about a message (a bad address) fails that message for good.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

from connectors.base import Sender
from connectors.errors import ApiError, MailError, is_retryable
from connectors.google_auth import CredentialsRefused, GoogleClients, forbidden_reason
from connectors.mail import check_recipients

log = logging.getLogger(__name__)

# Quota or server errors that outlast the retries this many times in a row stop the run:
# Gmail is down or the daily sending limit is reached, and the rest would fail the same way.
STOP_AFTER_TEMPORARY_FAILURES = 3


def raw_message(message: EmailMessage) -> str:
    """The RFC 5322 bytes, base64url-encoded, as `Message.raw` wants them."""
    return base64.urlsafe_b64encode(bytes(message)).decode("ascii")


def delegation_fix(clients: GoogleClients) -> str:
    """How to let the configured account send with Gmail."""
    user = clients.delegated_user
    if getattr(clients.gmail_credentials, "service_account_email", None):
        if not user:
            return ("set google.delegated_user to the Workspace address to send as, and grant "
                    "the gmail.send scope to the service account's domain-wide delegation "
                    "for it")
        return ("grant the gmail.send scope to the service account's domain-wide delegation "
                f"for {user} (Admin console > Security > API controls > Domain-wide "
                "delegation)")
    return "run `nearmiss auth google` again and allow sending email"


def mail_error(exc: ApiError, clients: GoogleClients) -> MailError:
    """The MailError for a failed send: whether to keep the message and whether to go on."""
    if isinstance(exc, CredentialsRefused):
        return MailError(f"{exc}; to send with Gmail: {delegation_fix(clients)}", stop_run=True)
    status = exc.status
    if status == 400:
        if "precondition" in str(exc).lower():  # no delegation, or no Gmail for the user
            return MailError(f"{exc}: {delegation_fix(clients)}", stop_run=True)
        return MailError(f"Gmail refused the message: {exc}", retry_later=False)
    if status == 401:
        return MailError(f"{exc}: {delegation_fix(clients)}", stop_run=True)
    if status == 403:
        if forbidden_reason(exc) == "disabled":
            return MailError(f"{exc}: enable the Gmail API in the Cloud project of the "
                             "credentials", stop_run=True)
        return MailError(f"{exc}: {delegation_fix(clients)}", stop_run=True)
    if status is None:  # unreachable after the retries: nothing else will get through
        return MailError(str(exc), stop_run=True)
    if is_retryable(status):
        return MailError(str(exc), retry_later=True)
    return MailError(str(exc), retry_later=False)


class GmailTransport:
    """MailTransport over the Gmail API; `user_id` "me" is the authenticated (or delegated)
    user. Gmail sets the From of a message to that user unless it is one of their send-as
    aliases, so `mail.sender` should be that address or an alias."""

    def __init__(self, clients: GoogleClients, user_id: str = "me") -> None:
        self.clients = clients
        self.user_id = user_id

    @contextmanager
    def connect(self) -> Iterator[Sender]:
        service = self.clients.service("gmail", "v1")  # no network until the first send
        who = self.clients.delegated_user or self.user_id
        temporary = 0

        def send(message: EmailMessage) -> None:
            nonlocal temporary
            check_recipients(message)
            request = service.users().messages().send(
                userId=self.user_id, body={"raw": raw_message(message)})
            try:
                result = self.clients.call(f"Gmail (sending as {who})", request.execute)
            except ApiError as exc:
                error = mail_error(exc, self.clients)
                temporary = temporary + 1 if error.retry_later and not error.stop_run else 0
                if temporary >= STOP_AFTER_TEMPORARY_FAILURES:
                    error.stop_run = True
                raise error from None
            temporary = 0
            log.debug("Gmail accepted %s as %s", message["X-Nearmiss-Key"], result.get("id"))
            return None

        yield send
