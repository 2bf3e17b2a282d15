"""The small Protocols every connector implements, and the values that cross them."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Protocol

from domain.records import AuditEvent, Cell, SheetSpec, SheetWrite

__all__ = ["Answer", "AuditEvent", "Cell", "FormSource", "MailTransport", "Pull", "RawResponse",
           "Sender", "SheetSpec", "SheetWrite", "Tracker"]

Answer = str | list[str]


@dataclass(frozen=True)
class RawResponse:
    """One form submission as the form gave it: question key -> answer, nothing interpreted."""

    source: str
    response_id: str
    submitted_at: datetime | None  # aware; latest submission; None when unreadable
    answers: dict[str, Answer]
    respondent_email: str | None = None
    respondent_name: str | None = None
    # the form's own timestamp text when it could not be read (the response is kept, flagged)
    unreadable_timestamp: str | None = None
    # question id -> title when answers are keyed by id (API sources): the titles a response
    # was given under, so a later rename does not change how an old response is read
    titles: dict[str, str] | None = None
    # what the source noticed about this response ("invalid: Submitted: ...", "note: ...")
    notes: tuple[str, ...] = ()
    # why the source could not read this response as a whole (a broken line): it is kept
    # with its raw text and held until the export is corrected
    quarantined: str | None = None
    raw_text: str | None = None

    def payload(self) -> dict[str, Any]:
        """What is stored. Its hash, titles and notes aside, tells a real edit from a
        re-read."""
        payload: dict[str, Any] = {
            "answers": self.answers,
            "respondent_email": self.respondent_email,
            "respondent_name": self.respondent_name,
        }
        if self.unreadable_timestamp is not None:
            payload["unreadable_timestamp"] = self.unreadable_timestamp
        if self.titles is not None:
            payload["titles"] = self.titles
        if self.notes:
            payload["notes"] = list(self.notes)
        if self.quarantined is not None:
            payload["quarantined"] = self.quarantined
            payload["raw_text"] = self.raw_text
        return payload


@dataclass(frozen=True)
class Pull:
    """What one read of a form gave: its responses and the questions it currently asks."""

    responses: list[RawResponse]
    # question key -> title as the form shows it now (key is the title for exports)
    questions: dict[str, str] = field(default_factory=dict)
    # the high-water mark to resume from next time (sources that read incrementally)
    watermark: str | None = None
    # what the run line, the audit log and doctor should say about the read as a whole
    # (a column whose dates are in both orders, the encoding or delimiter found)
    warnings: list[str] = field(default_factory=list)
    # nothing changed since `watermark`: nothing was read (questions and warnings unknown)
    unchanged: bool = False


class FormSource(Protocol):
    name: str

    def pull(self, watermark: str | None) -> Pull:
        """Read responses submitted since `watermark` (everything when None or not supported)."""
        ...


class Tracker(Protocol):
    def read(self, specs: Sequence[SheetSpec]) -> dict[str, list[list[Cell]]]:
        """Every row (header first) of each sheet that exists; missing sheets are absent.
        Cells as the backend gives them (text, numbers, times, "" or None for empty):
        readers compare them as `transforms.tracker.cell_text` reads them."""
        ...

    def write(self, writes: Sequence[SheetWrite]) -> None:
        """Apply all changes in as few requests as the backend allows."""
        ...

    def version(self) -> str | None:
        """A token that changes whenever the tracker's content may have changed (an edit, a
        save, a restore), read without reading the sheets; None when the backend cannot
        tell cheaply, and then every run reads the sheets."""
        ...


class Sender(Protocol):
    def __call__(self, message: EmailMessage) -> str | None:
        """Send one message; return a note worth auditing (partial delivery) or None."""
        ...


class MailTransport(Protocol):
    def connect(self) -> AbstractContextManager[Sender]:
        """One connection for the whole run; the sender raises MailError on failure."""
        ...
