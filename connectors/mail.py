"""Building RFC 5322 messages from outbox rows, and the local mail transports.

Every transport receives the same `EmailMessage`; the Message-ID is derived from the
outbox idempotency key, so even a message sent twice after a crash is recognisable as one.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import smtplib
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from pathlib import Path
from typing import Any

from connectors.base import Sender
from connectors.errors import MailError
from connectors.files import remove_stale_temp_files
from domain.text import header_text, safe_text

log = logging.getLogger(__name__)

# Subjects quote report fields (in overriding templates, any field): one pasted answer must
# not become a 100 kB header, which the email package folds but never cuts.
SUBJECT_LIMIT = 250


def message_id(key: str, sender: str) -> str:
    domain = parseaddr(sender)[1].rpartition("@")[2] or "nearmiss.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def build_message(item: dict[str, Any], sender: str, reply_to: str | None,
                  now: datetime) -> EmailMessage:
    """An outbox row as a multipart/alternative message (text first, HTML second).

    Values that came from submissions or sheet cells are made safe first: the email package
    raises on a line break in a header (and on any surrogate), and passes a NUL through raw.
    """
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(header_text(r) for r in item["recipients"])
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = header_text(item["subject"], SUBJECT_LIMIT)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id(item["key"], sender)
    msg["X-Nearmiss-Key"] = header_text(item["key"])
    msg.set_content(safe_text(item["body_text"]))
    if item.get("body_html"):
        msg.add_alternative(safe_text(item["body_html"]), subtype="html")
        html = msg.get_payload()[1]
        for image in item.get("images") or []:
            # multipart/related: the HTML shows its charts by Content-ID, as mail clients
            # that block remote and data: images still display attached ones
            html.add_related(base64.b64decode(image["png"]), "image", "png",
                             cid=f"<{image['cid']}>", filename=image["name"])
    return msg


def check_recipients(message: EmailMessage) -> None:
    """Refuse, for good, a message an API would reject whole for one bad address: the
    rest of the outbox still goes."""
    recipients = getaddresses([str(v) for h in ("To", "Cc", "Bcc")
                               for v in message.get_all(h) or []])
    bad = [addr or name for name, addr in recipients if not _valid_address(addr)]
    if bad or not recipients:
        raise MailError(f"not an email address: {(bad or [''])[0]!r}", retry_later=False)


def _valid_address(address: str) -> bool:
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError):
        return False
    return "@" in address


# Messages carry names, email addresses and what happened to whom: the outbox folder the
# transport creates, and every message file, are for their owner only, whatever the umask.
OUTBOX_FOLDER_MODE = 0o700
MESSAGE_FILE_MODE = 0o600

# A message is written to a temporary file, then renamed to `<key>.eml`. The temporary name
# (tempfile's eight random characters between this prefix and suffix) never ends in .eml,
# so nothing collecting `*.eml` picks up a message half written.
_TEMP_PREFIX, _TEMP_SUFFIX = ".sending-", ".eml.tmp"
_TEMP_NAMES = re.compile(
    rf"{re.escape(_TEMP_PREFIX)}[a-z0-9_]{{8}}{re.escape(_TEMP_SUFFIX)}"
    # earlier versions' name: no message is named so, as every key starts with its kind
    r"|\.[a-z0-9_]{8}\.eml")


class EmlFolderTransport:
    """Writes each message as `<key>.eml` into a folder: the default "outbox" transport.

    The file name comes from the idempotency key, so re-sending rewrites the same file.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _make_folder(self) -> None:
        """Create the outbox folder owner-only; an existing folder keeps the mode it has."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        if not self.folder.is_dir():
            self.folder.mkdir()
            os.chmod(self.folder, OUTBOX_FOLDER_MODE)  # mkdir's mode is cut by the umask

    @contextmanager
    def connect(self) -> Iterator[Sender]:
        try:
            self._make_folder()
        except OSError as exc:
            raise MailError(f"cannot create the outbox folder {self.folder}: {exc.strerror}",
                            stop_run=True) from None
        remove_stale_temp_files(self.folder, _TEMP_NAMES)

        def send(message: EmailMessage) -> None:
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(message["X-Nearmiss-Key"]))
            target = self.folder / f"{name}.eml"
            try:
                fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=_TEMP_PREFIX,
                                           suffix=_TEMP_SUFFIX)
            except OSError as exc:
                raise MailError(f"cannot write {target}: {exc.strerror}", stop_run=True) from None
            try:
                with os.fdopen(fd, "wb") as fh:
                    os.fchmod(fh.fileno(), MESSAGE_FILE_MODE)
                    fh.write(bytes(message))
                os.replace(tmp, target)
            except OSError as exc:
                raise MailError(f"cannot write {target}: {exc.strerror}", stop_run=True) from None
            finally:
                # Every failure, an interrupt included, removes the temporary file.
                if os.path.lexists(tmp):
                    os.unlink(tmp)

        yield send


class SmtpTransport:
    """One SMTP connection per run: STARTTLS (587), implicit TLS (465) or plain (relay)."""

    def __init__(self, host: str, port: int, security: str = "starttls",
                 username: str | None = None, password: str | None = None,
                 timeout: float = 30, ca_file: Path | None = None) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self.context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def _open(self) -> smtplib.SMTP:
        where = f"{self.host}:{self.port}"
        try:
            if self.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                      context=self.context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    smtp.starttls(context=self.context)
            if self.username:
                smtp.login(self.username, self.password or "")
            return smtp
        except smtplib.SMTPAuthenticationError:
            raise MailError(f"the SMTP server {where} refused the login of {self.username}: "
                            "check the user and the password variable", stop_run=True) from None
        except smtplib.SMTPNotSupportedError:
            raise MailError(f"the SMTP server {where} does not offer STARTTLS: set "
                            "mail.transport.security to tls or none", stop_run=True) from None
        except ssl.SSLError as exc:
            raise MailError(f"TLS with the SMTP server {where} failed: {exc.reason}",
                            stop_run=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"cannot connect to the SMTP server {where}: {exc}",
                            stop_run=True) from None

    @contextmanager
    def connect(self) -> Iterator[Sender]:
        smtp = self._open()

        def send(message: EmailMessage) -> str | None:
            bad = [a for a in message["To"].split(", ") if not _valid_address(a.strip())]
            if bad:
                raise MailError(f"not an email address: {bad[0]!r}", retry_later=False)
            try:
                refused = smtp.send_message(message)
            except smtplib.SMTPRecipientsRefused as exc:
                codes = {code for code, _ in exc.recipients.values()}
                raise MailError("recipients refused: " + ", ".join(
                    f"{to} ({code} {_text(said)})" for to, (code, said) in exc.recipients.items()),
                    retry_later=any(c < 500 for c in codes)) from None
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code == 421:  # service closing: the connection is gone
                    raise MailError(f"the SMTP server closed the session: {exc.smtp_error!r}",
                                    stop_run=True) from None
                raise MailError(f"the SMTP server refused the message: {_reply(exc)}",
                                retry_later=exc.smtp_code < 500) from None
            except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
                raise MailError(f"the SMTP connection was lost: {exc}", stop_run=True) from None
            if refused:
                # Delivered to the others already: sending again would duplicate it for them.
                return f"not delivered to {', '.join(refused)}"
            return None

        try:
            yield send
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


def _text(said: bytes | str) -> str:
    """A server's reply text on one line (it may be multi-line, and is bytes)."""
    text = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
    return " ".join(text.split())


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"
