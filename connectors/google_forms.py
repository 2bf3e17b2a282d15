"""A Google Form read through the Forms API v1 (google-api-python-client).

Answers are keyed by question id, which survives renames; each response also carries the
id -> title map of the form as it was read, so the mapping may name questions by title.

The incremental read asks for `timestamp >= watermark - overlap`. The API documents the
filter as "submitted after N" without saying whether N is compared with `createTime` or
`lastSubmittedTime`, so the read re-asks for a margin, keeps the latest version of each
response id, and leaves "is this new or an edit" to the store's content hashes. New
responses are safe under either reading. If Google compares `createTime`, an edit to a
response created before the margin is not listed by an incremental read; a read with no
watermark finds it, and the pipeline makes one such full read a day.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

import pandas as pd

from connectors.base import Answer, Pull, RawResponse
from connectors.errors import ApiError
from connectors.google_auth import GoogleClients, forbidden_reason
from domain.times import EARLIEST_YEAR, LATEST_YEAR

log = logging.getLogger(__name__)

PAGE_SIZE = 5000  # the documented default and the largest page the API returns


def zulu(ts: pd.Timestamp) -> str:
    """RFC 3339 UTC "Zulu" text with nanoseconds, the only form the filter accepts."""
    ts = ts.tz_convert("UTC")
    return f"{ts.strftime('%Y-%m-%dT%H:%M:%S')}.{ts.microsecond * 1000 + ts.nanosecond:09d}Z"


# RFC 3339 as the API writes it; anything else (a word pandas would read as the machine's
# clock, such as "now") is not a time the form gave.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?"
                      r"(?:[Zz]|[+-]\d{2}:?\d{2})?$")


def parse_time(text: str | None) -> pd.Timestamp | None:
    """A FormResponse timestamp (0, 3, 6 or 9 fractional digits) as aware UTC, or None.

    Never raises: garbage, an impossible date or a year outside 1900-2100 (a 9999 would
    overflow later arithmetic) give None, so one response cannot stop the read.
    """
    if not isinstance(text, str) or not _RFC3339.match(text.strip()):
        return None
    try:
        ts = pd.Timestamp(text.strip())
        if pd.isna(ts) or not EARLIEST_YEAR <= ts.year <= LATEST_YEAR:
            return None
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    except (ValueError, TypeError, OverflowError):
        return None


def form_questions(form: dict[str, Any]) -> tuple[dict[str, str], set[str]]:
    """Question id -> title from a `forms.get` body, and the ids that take several answers.

    Grid rows are separate questions: "Grid title [Row title]". Items without a question
    (section headers, images, videos, page breaks) are skipped.
    """
    titles: dict[str, str] = {}
    multi: set[str] = set()
    for item in form.get("items") or []:
        title = (item.get("title") or "").strip()
        if "questionItem" in item:
            question = item["questionItem"].get("question") or {}
            qid = question.get("questionId")
            if not qid:
                continue
            titles[qid] = title or f"untitled question {qid}"
            if (question.get("choiceQuestion") or {}).get("type") == "CHECKBOX":
                multi.add(qid)
        elif "questionGroupItem" in item:
            group = item["questionGroupItem"]
            grid_multi = ((group.get("grid") or {}).get("columns") or {}).get(
                "type") == "CHECKBOX"
            for question in group.get("questions") or []:
                qid = question.get("questionId")
                if not qid:
                    continue
                row = ((question.get("rowQuestion") or {}).get("title") or "").strip()
                titles[qid] = f"{title} [{row}]" if row else title or f"untitled question {qid}"
                if grid_multi:
                    multi.add(qid)
    return titles, multi


def answer_value(answer: dict[str, Any], multi: bool) -> Answer | None:
    """One Answer as text: a list for checkbox questions (and whenever several values came
    back), file uploads as their file names; grades alone are not an answer."""
    if "fileUploadAnswers" in answer:
        values = [f.get("fileName") or f.get("fileId") or ""
                  for f in answer["fileUploadAnswers"].get("answers") or []]
    else:
        values = [a.get("value", "") for a in
                  (answer.get("textAnswers") or {}).get("answers") or []]
    values = [v for v in values if v != ""]
    if not values:
        return None
    return values if multi or len(values) > 1 else values[0]


def form_problem(exc: ApiError, form_id: str, account: str) -> tuple[str, str] | None:
    """(problem, fix) for the refusals an administrator can fix; None for the others."""
    if exc.status == 403:
        reason = forbidden_reason(exc)
        if reason == "disabled":
            return ("the Google Forms API is not enabled",
                    "enable it in the Cloud project of the credentials (APIs & Services > "
                    "Library > Google Forms API)")
        if reason == "scope":
            return ("the credentials lack the Forms read scopes",
                    "run `nearmiss auth google` again and allow reading forms")
        return (f"the account {account} cannot read form {form_id}",
                "share the form with it (or add it as a collaborator)")
    if exc.status == 404:
        return (f"form {form_id} not found",
                "check sources[..].form_id (the id between /d/ and /edit in the form's "
                "edit address)")
    if exc.status == 401:
        return ("Google did not accept the credentials",
                "check the key file, or run `nearmiss auth google` again")
    return None


class GoogleFormsSource:
    """FormSource over the Forms API: one `forms.get`, then `forms.responses.list` pages."""

    def __init__(self, name: str, form_id: str, clients: GoogleClients,
                 overlap_minutes: float = 10, page_size: int = PAGE_SIZE) -> None:
        self.name, self.form_id, self.clients = name, form_id, clients
        self.overlap = timedelta(minutes=overlap_minutes)
        self.page_size = page_size
        self._service: Any = None

    @property
    def service(self) -> Any:
        if self._service is None:
            self._service = self.clients.service("forms", "v1")
        return self._service

    def _call(self, doing: str, fn: Any, explain: bool = True) -> Any:
        def fix(exc: ApiError) -> str | None:
            found = form_problem(exc, self.form_id, self.clients.account)
            return f"{found[0]}: {found[1]}" if found else None

        return self.clients.call(f"source {self.name} ({doing})", fn,
                                 explain=fix if explain else None)

    def form(self, explain: bool = True) -> dict[str, Any]:
        """The form's `forms.get` body (its title and items)."""
        request = self.service.forms().get(formId=self.form_id)
        return self._call("reading the form", request.execute, explain)

    def list_request(self, filter_text: str | None, page_size: int) -> Any:
        kwargs: dict[str, Any] = {"formId": self.form_id, "pageSize": page_size}
        if filter_text:
            kwargs["filter"] = filter_text
        return self.service.forms().responses().list(**kwargs)

    def pull(self, watermark: str | None = None, *, full: bool = False) -> Pull:
        """Responses submitted since `watermark` minus the overlap (all when None or
        `full`), the form's questions now, and the new watermark (the latest
        lastSubmittedTime seen; the old one when nothing came back)."""
        titles, multi = form_questions(self.form())
        since = None if full else parse_time(watermark)
        if watermark and since is None and not full:
            log.warning("%s: unreadable watermark %r: reading every response", self.name,
                        watermark)
        filter_text = f"timestamp >= {zulu(since - self.overlap)}" if since is not None else None

        latest: dict[str, tuple[pd.Timestamp | None, dict[str, Any]]] = {}
        request = self.list_request(filter_text, self.page_size)
        pages = 0
        while request is not None:
            page = self._call("listing responses", request.execute)
            pages += 1
            for item in page.get("responses") or []:  # absent when empty
                rid = item.get("responseId")
                if not rid:
                    continue
                when = parse_time(item.get("lastSubmittedTime"))
                kept = latest.get(rid)
                if kept is None or (when is not None and (kept[0] is None or when > kept[0])):
                    latest[rid] = (when, item)
            request = self.service.forms().responses().list_next(request, page)
        log.info("%s: %d responses in %d page(s) (filter %s)", self.name, len(latest), pages,
                 filter_text or "none")

        responses = [self._raw(item, titles, multi) for _, item in latest.values()]
        responses.sort(key=lambda r: (r.submitted_at or pd.Timestamp.max.tz_localize("UTC"),
                                      r.response_id))
        stamps = [(when, item["lastSubmittedTime"]) for when, item in latest.values()
                  if when is not None]
        new_mark = max(stamps, key=lambda s: s[0])[1] if stamps else None
        if new_mark is None or (since is not None and parse_time(new_mark) < since):
            new_mark = watermark  # never move the watermark backwards
        return Pull(responses=responses, questions=titles, watermark=new_mark)

    def _raw(self, item: dict[str, Any], titles: dict[str, str], multi: set[str]
             ) -> RawResponse:
        answers: dict[str, Answer] = {}
        for qid, answer in (item.get("answers") or {}).items():
            value = answer_value(answer, qid in multi)
            if value is not None:
                answers[qid] = value
        stamp = item.get("lastSubmittedTime") or item.get("createTime")
        submitted = parse_time(stamp)
        return RawResponse(
            source=self.name, response_id=item["responseId"], submitted_at=submitted,
            answers=answers, respondent_email=item.get("respondentEmail") or None,
            unreadable_timestamp=None if submitted is not None else str(stamp),
            titles={q: titles[q] for q in answers if q in titles})

    def check(self) -> tuple[str, dict[str, str]]:
        """Read the form and at most one response, changing nothing (`nearmiss doctor`).

        Returns a one-line description and the questions. Raises the ApiError as Google
        gave it, so the caller can ask `form_problem` for the fix.
        """
        form = self.form(explain=False)
        titles, _ = form_questions(form)
        page = self._call("listing responses", self.list_request(None, 1).execute, False)
        some = "has responses" if page.get("responses") else "has no responses yet"
        title = (form.get("info") or {}).get("title") or self.form_id
        return (f"form {title!r} ({len(titles)} questions) is readable by "
                f"{self.clients.account} and {some}", titles)
