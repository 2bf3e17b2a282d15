"""Data-quality checks of normalised reports, run as one great-expectations suite built from rules.

Why great-expectations and not hand-written checks: the suite is a declarative, inspectable
record of what was checked (`suite_description` shows it in the CLI), and every flag a report
gets traces back to one named expectation result. The rules file stays the only place where
"what a report must contain" is defined; this module translates it.

How: the reports are copied into a *check frame* with a RangeIndex and one scalar column per
thing to check: list answers become helper columns (GX fingerprints the batch by hashing it,
and checks scalar cells), applicability of each `when` becomes a `__req_<n>` column computed
with `holds`, and timestamps become tz-aware UTC (GX 1.24 compares those correctly on pandas 3).
Each expectation carries its plan position in `meta`; the `unexpected_index_list` of its
COMPLETE result gives the row positions that failed, which map back to the input rows (and so
to report ids) one to one. A report failing anything is "incomplete"; it is flagged, never
dropped.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from config.conditions import holds
from config.rules import ANY_OF, Condition, Rules
from domain.address import EMAIL_REGEX

CheckKind = Literal[
    "unreadable", "required", "in_set", "unknown_items", "email", "time", "future",
    "after_submission",
]

TIME_REGEX = r"^(?:[01]\d|2[0-3]):[0-5]\d$"
_SEP = "\x1f"  # joins the unknown items of a multi answer inside one helper cell
_SUBMITTED = "__submitted_at"
_UNREADABLE = "__unreadable"
OUTPUT_COLUMNS = ["report_id", "dq_status", "missing", "invalid", "dq_messages", "blocked"]


@dataclass(frozen=True)
class _Check:
    """One planned expectation: what it tests, on which check-frame column, how to say it."""

    kind: CheckKind
    field: str
    label: str
    column: str
    description: str
    set_index: int | None = None
    set_name: str | None = None


def describe_condition(rules: Rules, cond: Condition) -> str:
    labels = " or ".join(rules.label(f) for f in cond.fields)
    if cond.operator == "equals":
        return f"{labels} is {cond.equals}"
    if cond.operator == "in":
        return f"{labels} is one of {', '.join(cond.in_ or [])}"
    if cond.operator == "at_least":
        return f"{labels} is at least {cond.at_least}"
    if cond.operator == "answered":
        return f"{labels} is {'' if cond.answered else 'not '}answered in substance"
    return f"{labels} mentions any of {', '.join(cond.keywords or [])}"


def _plan(rules: Rules) -> list[_Check]:
    """The expectations the rules call for, grouped by field in rules order.

    The order is the order of `missing`, `invalid` and `dq_messages`, so a reporter reads
    the form's questions in the order the form asks them.
    """
    fields = list(rules.fields)
    fields += [f for req in rules.required for f in req.names if f not in fields]
    # One expectation for every field: the normaliser lists the fields it could not read.
    plan = [_Check("unreadable", "", "", _UNREADABLE,
                   "every answer that was given can be read (dates, times)")]
    for field in fields:
        label = rules.label(field)
        spec = rules.fields.get(field)
        ftype = spec.type if spec else "text"
        for i, req in enumerate(rules.required):
            if field not in req.names:
                continue
            when = " and ".join(describe_condition(rules, c) for c in req.when)
            scope = f" when {when}" if when else ""
            plan.append(_Check("required", field, label, f"__given__{field}",
                               f"{label}: required{scope} ({req.name})", i, req.name))
        keys = list(rules.choices(field)) if spec else []
        if ftype in ("choice", "ordinal"):
            plan.append(_Check("in_set", field, label, field,
                               f"{label}: one of {', '.join(keys)}"))
        elif ftype == "multi":
            plan.append(_Check("unknown_items", field, label, f"__unknown__{field}",
                               f"{label}: every item one of {', '.join(keys)}"))
        elif ftype == "email":
            plan.append(_Check("email", field, label, field,
                               f"{label}: looks like an email address"))
        elif ftype == "time":
            plan.append(_Check("time", field, label, field, f"{label}: a time of day as HH:MM"))
        elif ftype == "datetime":
            plan.append(_Check("future", field, label, field, f"{label}: not in the future"))
            plan.append(_Check("after_submission", field, label, field,
                               f"{label}: not after the report was submitted"))
    return plan


def suite_description(rules: Rules) -> list[str]:
    """One human line per expectation of the suite, so the CLI can show what is checked.

    Cheap: it does not import great-expectations.
    """
    return [check.description for check in _plan(rules)]


# --- the check frame -------------------------------------------------------------------------


def _items(value: Any) -> list[str]:
    """The non-blank items of a multi answer; a bare string counts as one item."""
    if isinstance(value, str):
        value = [value]
    elif not isinstance(value, list | tuple | set | np.ndarray) or len(value) == 0:
        return []
    texts = (str(item).strip() for item in value if not _is_na(item))
    return [text for text in texts if text]


def _is_na(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _answered(series: pd.Series, ftype: str) -> np.ndarray:
    """True where an answer was given: blank text and empty lists count as not given."""
    if ftype == "multi":
        return np.array([bool(items) for items in _all_items(series)], dtype=bool)
    out = series.notna().to_numpy(dtype=bool, copy=True)
    if ftype == "datetime" or pd.api.types.is_datetime64_any_dtype(series.dtype):
        return out
    given = np.flatnonzero(out)
    values = series.to_numpy(dtype=object)[given]
    out[given] = [not isinstance(v, str) or (v != "" and not v.isspace()) for v in values]
    return out


def _all_items(series: pd.Series) -> list[list[str]]:
    return [_items(v) for v in series.to_numpy(dtype=object)]


def _category(values: Any) -> pd.Categorical:
    """Text helper cells as a categorical, NA where None.

    GX takes the matching rows of the whole batch several times per expectation; object
    columns make that take ~5x slower than categorical codes do.
    """
    cells = np.asarray(values, dtype=object)
    try:
        return pd.Categorical(cells)
    except TypeError:  # an unhashable cell (a list where one answer was expected): show it
        return pd.Categorical([c if c is None or isinstance(c, Hashable) else str(c)
                               for c in cells])


def _flag(mask: np.ndarray) -> np.ndarray:
    """1.0 where mask holds, NaN elsewhere: the shape the (not-)null expectations test.

    Plain float32 rather than the nullable boolean dtype: pandas keeps such columns in one
    block, and GX filters the whole batch several times per expectation, so this keeps
    100k rows fast.
    """
    return np.where(mask, np.float32(1.0), np.float32(np.nan))


def _utc(series: pd.Series) -> pd.Series:
    """Timestamps as tz-aware UTC: naive values are taken as UTC, unreadable ones become NaT."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC")
    return pd.to_datetime(series, errors="coerce", utc=True)


def _unreadable(reports: pd.DataFrame, fields: Sequence[str]) -> tuple[dict[str, np.ndarray],
                                                                       np.ndarray]:
    """Answers listed in `invalid_fields` (given, but the normaliser could not read them).

    Returns a row mask per field, and per row the unreadable field keys in rules order joined
    into one helper cell (None when every answer could be read). Unknown keys are ignored.
    """
    n = len(reports)
    masks = {f: np.zeros(n, dtype=bool) for f in fields}
    joined = np.full(n, None, dtype=object)
    if "invalid_fields" not in reports.columns or n == 0:
        return masks, joined
    lists = pd.Series(reports["invalid_fields"].map(_items).to_numpy(), dtype=object)
    exploded = lists.explode().dropna()
    for field, positions in exploded.groupby(exploded).groups.items():
        if field in masks:
            masks[field][np.asarray(positions, dtype=np.int64)] = True
    any_unreadable = np.zeros(n, dtype=bool)
    for mask in masks.values():
        any_unreadable |= mask
    for row in np.flatnonzero(any_unreadable):
        joined[row] = _SEP.join(f for f in fields if masks[f][row])
    return masks, joined


def _text(series: pd.Series) -> pd.Categorical:
    """Stripped text, NA when blank or unanswered."""
    text = series.astype("string").str.strip()
    return _category(text.astype(object).where(text.notna() & text.ne(""), None))


def _check_frame(reports: pd.DataFrame, rules: Rules, plan: list[_Check]) -> pd.DataFrame:
    """The batch GX validates: RangeIndex (position = input row), scalar helper columns only."""
    n = len(reports)
    src = reports.reset_index(drop=True)
    fields = list(dict.fromkeys(c.field for c in plan if c.field))
    unreadable, unreadable_joined = _unreadable(src, fields)
    empty = pd.Series([None] * n, dtype=object)
    cols: dict[str, Any] = {}
    answered: dict[str, np.ndarray] = {}

    def given(field: str, series: pd.Series, ftype: str) -> np.ndarray:
        if field not in answered:  # several checks of one field share it
            answered[field] = _answered(series, ftype)
        return answered[field]

    for i, req in enumerate(rules.required):
        if req.when:
            cols[f"__req_{i}"] = holds(src, req.when, rules).to_numpy(dtype=bool)
    for check in plan:
        if check.column in cols:
            continue
        spec = rules.fields.get(check.field)
        ftype = spec.type if spec else "text"
        series = src[check.field] if check.field in src.columns else empty
        if check.kind == "unreadable":
            cols[check.column] = _category(unreadable_joined)
        elif check.kind == "required" and ANY_OF in check.field:  # any one of them will do
            given_any = np.zeros(n, dtype=bool)
            for name in check.field.split(ANY_OF):
                spec = rules.fields[name]
                member = src[name] if name in src.columns else empty
                given_any |= given(name, member, spec.type) | unreadable.get(
                    name, np.zeros(n, dtype=bool))
            cols[check.column] = _flag(given_any)
        elif check.kind == "required":
            cols[check.column] = _flag(given(check.field, series, ftype) | unreadable[check.field])
        elif check.kind == "in_set":
            shown = given(check.field, series, ftype)
            cols[check.column] = _category(series.astype(object).where(shown, None))
        elif check.kind == "unknown_items":
            known = set(rules.choices(check.field))
            cols[check.column] = _category([
                _SEP.join(i for i in items if i not in known) or None
                for items in _all_items(series)
            ])
        elif check.kind in ("email", "time"):
            cols[check.column] = _text(series)
        elif check.kind in ("future", "after_submission"):
            cols[check.column] = _utc(series)
    submitted = src["submitted_at"] if "submitted_at" in src.columns else empty
    cols[_SUBMITTED] = _utc(submitted)
    return pd.DataFrame(cols, index=pd.RangeIndex(n))


# --- the great-expectations suite ------------------------------------------------------------


def _build_suite(gx: Any, plan: list[_Check], rules: Rules, now: pd.Timestamp) -> Any:
    """One suite per call: `now` is baked into the not-in-the-future expectations.

    Expectations go in through the constructor: `add_expectation` compares each new one with
    all earlier ones (quadratic) and silently drops any equal to an earlier one but for `meta`.
    """
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import (
        Column,
        ComparisonCondition,
        Operator,
    )

    expectations = []
    for pos, check in enumerate(plan):
        common: dict[str, Any] = {"meta": {"check": pos}, "description": check.description}
        if check.kind in ("unreadable", "unknown_items"):
            exp = gxe.ExpectColumnValuesToBeNull(column=check.column, **common)
        elif check.kind == "required":
            req = rules.required[check.set_index or 0]
            if req.when:
                # GX >= 1.9 deprecates string row_conditions; a Condition object renders to
                # the pandas query `__req_<n> == True`.
                common["row_condition"] = ComparisonCondition(
                    column=Column(f"__req_{check.set_index}"), operator=Operator.EQUAL,
                    parameter=True,
                )
            exp = gxe.ExpectColumnValuesToNotBeNull(column=check.column, **common)
        elif check.kind == "in_set":
            exp = gxe.ExpectColumnValuesToBeInSet(
                column=check.column, value_set=list(rules.choices(check.field)), **common)
        elif check.kind in ("email", "time"):
            regex = EMAIL_REGEX if check.kind == "email" else TIME_REGEX
            exp = gxe.ExpectColumnValuesToMatchRegex(column=check.column, regex=regex, **common)
        elif check.kind == "future":
            exp = gxe.ExpectColumnValuesToBeBetween(column=check.column, max_value=now, **common)
        else:
            exp = gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=_SUBMITTED, column_B=check.column, or_equal=True,
                ignore_row_if="either_value_is_missing", **common)
        expectations.append(exp)
    return gx.ExpectationSuite(name="nearmiss_reports", expectations=expectations)


def _raised(result: Any) -> str | None:
    """The exception message when GX swallowed an error inside an expectation, else None."""
    info = result.exception_info or {}
    candidates = [info, *(v for v in info.values() if isinstance(v, dict))]
    for item in candidates:
        if item.get("raised_exception"):
            return str(item.get("exception_message") or "unknown error")
    return None


def import_great_expectations() -> Any:
    """great-expectations, imported (seconds, the first time): a checks worker does it as
    it starts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GX imports deprecated stdlib modules
        import great_expectations

    return great_expectations


def _validate(frame: pd.DataFrame, plan: list[_Check], rules: Rules,
              now: pd.Timestamp) -> dict[int, list[int]]:
    """Run the suite on the check frame; plan position -> failing row positions."""
    gx_logger = logging.getLogger("great_expectations")
    old_level = gx_logger.level
    gx_logger.setLevel(logging.ERROR)
    try:
        gx = import_great_expectations()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GX's own deprecations, as it validates
            from great_expectations.data_context.types.base import ProgressBarsConfig

            # GX sets this module's logger to INFO itself; its one line per run is noise.
            logging.getLogger("great_expectations.data_context.types.base").setLevel(
                logging.WARNING)
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            batch_definition = (
                context.data_sources.add_pandas("nearmiss")
                .add_dataframe_asset("reports")
                .add_batch_definition_whole_dataframe("all reports")
            )
            suite = _build_suite(gx, plan, rules, now)
            batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
            outcome = batch.validate(
                suite,
                result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False},
            )
    finally:
        gx_logger.setLevel(old_level)

    failures: dict[int, list[int]] = {}
    for result in outcome.results:
        pos = int(result.expectation_config.meta["check"])
        error = _raised(result)
        if error is not None:
            # A check that could not run must not pass silently as "complete".
            raise RuntimeError(f"data-quality check failed to run: {plan[pos].description}: "
                               f"{error}")
        if not result.success:
            failures[pos] = [int(i) for i in result.result.get("unexpected_index_list") or []]
    return failures


# --- from results to per-report flags --------------------------------------------------------


def _quote(value: Any) -> str:
    return repr(value) if isinstance(value, str) else repr(str(value))


def _findings(check: _Check, value: Any, labels: dict[str, str]) -> list[tuple[str, str]]:
    """(field, message) for one failed expectation on one row, worded with field labels.

    `value` is the row's cell of the column the expectation tested.
    """
    label = check.label
    if check.kind == "unreadable":
        return [(f, f"{labels[f]}: the answer could not be read") for f in value.split(_SEP)]
    if check.kind == "required":
        message = f"{label}: missing ({check.set_name})"
    elif check.kind == "in_set":
        message = f"{label}: {_quote(value)} is not a known value"
    elif check.kind == "unknown_items":
        items = value.split(_SEP)
        verb = "is not a known value" if len(items) == 1 else "are not known values"
        message = f"{label}: {', '.join(_quote(i) for i in items)} {verb}"
    elif check.kind == "email":
        message = f"{label}: {_quote(value)} is not an email address"
    elif check.kind == "time":
        message = f"{label}: {_quote(value)} is not a time of day (HH:MM)"
    elif check.kind == "future":
        message = f"{label}: in the future"
    else:
        message = f"{label}: after the report was submitted"
    return [(check.field, message)]


def check_reports(reports: pd.DataFrame, rules: Rules, now: pd.Timestamp) -> pd.DataFrame:
    """Flag each report complete or incomplete, naming missing and invalid fields.

    Returns one row per input row (same index): report_id, dq_status, missing (field keys
    required for this report and not given, rules order), invalid (field keys given but
    unreadable, unknown or implausible), dq_messages (human, with field labels) and blocked
    ("cannot proceed without: ..." or None). Reports are never dropped; a field listed in
    `invalid_fields` is reported invalid, not missing. `now` bounds "not in the future"
    (a naive `now` is taken as UTC).
    """
    now = pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    plan = _plan(rules)
    n = len(reports)
    frame = _check_frame(reports, rules, plan)
    failures = _validate(frame, plan, rules, now) if n else {}

    labels = {f: rules.label(f) for f in dict.fromkeys(c.field for c in plan if c.field)}
    order = {f: i for i, f in enumerate(labels)}
    found: dict[int, list[tuple[int, int, str, bool, str]]] = {}
    for pos, rows in failures.items():
        check = plan[pos]
        cells = frame[check.column].to_numpy(dtype=object)
        for row in rows:
            for field, message in _findings(check, cells[row], labels):
                found.setdefault(row, []).append(
                    (order[field], pos, field, check.kind == "required", message))

    missing: list[list[str]] = []
    invalid: list[list[str]] = []
    messages: list[list[str]] = []
    blocked: list[str | None] = []
    for row in range(n):
        row_missing: list[str] = []
        row_invalid: list[str] = []
        row_messages: list[str] = []
        for _, _, field, is_missing, message in sorted(found.get(row, ())):
            target = row_missing if is_missing else row_invalid
            if is_missing and field in target:
                continue  # required by two sets (e.g. staff involved): say it once
            if field not in target:
                target.append(field)
            row_messages.append(message)
        missing.append(row_missing)
        invalid.append(row_invalid)
        messages.append(row_messages)
        blockers = sorted({*row_missing, *row_invalid}, key=order.__getitem__)
        blocked.append("cannot proceed without: " + ", ".join(labels[f] for f in blockers)
                       if blockers else None)
    report_ids = (reports["report_id"].array if "report_id" in reports.columns
                  else pd.Series([None] * n, dtype=object))
    out = pd.DataFrame({
        "report_id": report_ids,
        "dq_status": pd.Series(["incomplete" if b else "complete" for b in blocked], dtype="str"),
        # Explicit object dtype: pandas 3 would infer "str" and turn None into NaN.
        "missing": pd.Series(missing, dtype=object),
        "invalid": pd.Series(invalid, dtype=object),
        "dq_messages": pd.Series(messages, dtype=object),
        "blocked": pd.Series(blocked, dtype=object),
    }, columns=OUTPUT_COLUMNS)
    out.index = reports.index  # set, not aligned: duplicate labels stay row for row
    return out
