"""Sending the outbox through Exchange Online: Graph's `POST /users/{sender}/sendMail` with
the message's own MIME (base64, `Content-Type: text/plain`), so the Message-ID, the text and
HTML parts and the headers stay exactly as built. Graph answers 202 Accepted: the message
is queued in the mailbox's Outbox, which is all a sender can know.

The app needs the Mail.Send permission; as an application it may send as any mailbox
unless an Exchange application access policy limits it to the sender's (the README says
how). 401 and 403 say nothing about one message: they stop the run and keep the messages
queued. A 400 about a message (a bad address) fails that message for good.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from urllib.parse import quote

from connectors.base import Sender
from connectors.errors import ApiError, MailError, is_retryable
from connectors.graph import CredentialsRefused, GraphClients
from connectors.mail import check_recipients

log = logging.getLogger(__name__)

# Throttling or server errors that outlast the retries this many times in a row stop the
# run: Exchange is down or the mailbox's sending limit is reached.
STOP_AFTER_TEMPORARY_FAILURES = 3
PERMISSION_FIX = ("give the app the Mail.Send permission (an admin consents to it), or sign "
                  "in again with `nearmiss auth microsoft`")


def mail_error(exc: ApiError) -> MailError:
    """Whether to keep a message that was not sent, and whether to go on with the others."""
    if isinstance(exc, CredentialsRefused) or exc.status in (401, 403):
        return MailError(f"{exc}: {PERMISSION_FIX}", stop_run=True)
    if exc.status == 404:  # no such mailbox: every message would fail alike
        return MailError(f"{exc}: check mail.sender (or mail.transport.user): it must be a "
                         "mailbox in the tenant", stop_run=True)
    if exc.status is None:  # unreachable after the retries
        return MailError(str(exc), stop_run=True)
    if is_retryable(exc.status):
        return MailError(str(exc), retry_later=True)
    return MailError(f"Exchange refused the message: {exc}", retry_later=False)


class GraphMailTransport:
    """MailTransport over Graph's sendMail, as the mailbox `user`."""

    def __init__(self, clients: GraphClients, user: str) -> None:
        self.clients, self.user = clients, user

    @contextmanager
    def connect(self) -> Iterator[Sender]:
        temporary = 0
        path = f"/users/{quote(self.user, safe='@')}/sendMail"

        def send(message: EmailMessage) -> None:
            nonlocal temporary
            check_recipients(message)
            mime = base64.b64encode(bytes(message))
            try:
                self.clients.call(f"Exchange Online (sending as {self.user})", "POST", path,
                                  mime, headers={"Content-Type": "text/plain"})
            except ApiError as exc:
                error = mail_error(exc)
                temporary = temporary + 1 if error.retry_later and not error.stop_run else 0
                if temporary >= STOP_AFTER_TEMPORARY_FAILURES:
                    error.stop_run = True
                raise error from None
            temporary = 0
            log.debug("Exchange accepted %s", message["X-Nearmiss-Key"])
            return None

        yield send
