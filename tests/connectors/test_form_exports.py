"""The file form sources on real files: every row is kept, a bad value marks only its row."""

import csv
import hashlib
import io
import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from connectors.errors import SourceError
from connectors.form_exports import (
    GoogleFormsCsvSource,
    MicrosoftFormsXlsxSource,
    parse_google_timestamp,
)

TZ = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
HEADER = ["Timestamp", "Email Address", "What happened?", "Which service?"]
UTC = "UTC"


def test_google_timestamps_in_summer_winter_and_sheet_locale():
    assert parse_google_timestamp("2026/09/14 9:41:12 PM GMT+1", TZ, True) == pd.Timestamp(
        "2026-09-14 20:41:12", tz="UTC")
    assert parse_google_timestamp("2026/11/14 12:05:00 AM GMT", TZ, True) == pd.Timestamp(
        "2026-11-14 00:05:00", tz="UTC")
    assert parse_google_timestamp("2026/11/14 10:00:00 AM GMT-5:30", TZ, True) == pd.Timestamp(
        "2026-11-14 15:30:00", tz="UTC")
    # a CSV saved from the linked sheet: the sheet's locale, in the deployment's zone
    assert parse_google_timestamp("03/07/2026 10:00:00", TZ, True) == pd.Timestamp(
        "2026-07-03 09:00:00", tz="UTC")
    assert parse_google_timestamp("not a time", TZ, True) is None
    # inside the hour repeated in autumn: read (first occurrence), never raised
    assert parse_google_timestamp("2026/10/25 1:30:00 AM", TZ, True) == pd.Timestamp(
        "2026-10-25 00:30", tz="UTC")


def google_text(rows: list[list[str]], header: list[str] = HEADER, delimiter: str = ",") -> str:
    """CSV text as Google Forms writes it: every cell quoted, CRLF line ends."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def google_id(stamp: str, email: str = "", n: int = 1) -> str:
    """The id a Google CSV row has always had; stores hold responses under it."""
    return "g-" + hashlib.sha256(f"{stamp}|{email}|{n}".encode()).hexdigest()[:20]


def pull_csv(path: Path, dayfirst: bool = True):
    return GoogleFormsCsvSource("g", path, TZ, dayfirst).pull()


SUMMER = "2026/09/14 9:41:12 AM GMT+1"


def test_csv_rows_become_responses_with_stable_ids(tmp_path):
    path = write_csv(tmp_path / "g.csv", [
        {"Timestamp": SUMMER, "Email Address": "a@x.org",
         "What happened?": "Wrong label", "Which service?": ""},
        {"Timestamp": SUMMER, "Email Address": "a@x.org",
         "What happened?": "Second one in the same second", "Which service?": "Oak House"},
        {"Timestamp": "garbled", "Email Address": "", "What happened?": "x",
         "Which service?": ""},
    ])
    source = GoogleFormsCsvSource("g", path, TZ)
    first, second = source.pull(), source.pull()
    ids = [r.response_id for r in first.responses]
    assert ids == [r.response_id for r in second.responses] and len(set(ids)) == 3
    # the ids stores already hold: sha256 of timestamp|email|n
    assert ids == [google_id(SUMMER, "a@x.org", 1), google_id(SUMMER, "a@x.org", 2),
                   google_id("garbled")]
    a, _, c = first.responses
    assert a.respondent_email == "a@x.org" and a.answers == {"What happened?": "Wrong label"}
    assert c.submitted_at is None and c.unreadable_timestamp == "garbled"
    assert c.notes == ("invalid: Submitted: 'garbled' is not a date and time; dated by when "
                       "it was first received",)
    assert set(first.questions) == {"What happened?", "Which service?"}
    assert first.warnings == []


def test_missing_and_foreign_files_say_which_file(tmp_path):
    with pytest.raises(SourceError, match=r"g: export file not found: .*nope\.csv"):
        GoogleFormsCsvSource("g", tmp_path / "nope.csv", TZ).pull()
    other = write_csv(tmp_path / "other.csv", [{"a": 1}])
    with pytest.raises(SourceError, match="no 'Timestamp' column") as raised:
        GoogleFormsCsvSource("g", other, TZ).pull()
    message = str(raised.value)
    assert "commas, semicolons or tabs" in message and "'a'" in message
    assert "Google Forms responses export" in message and "\n" not in message
    (tmp_path / "fake.xlsx").write_text("not a workbook")
    with pytest.raises(SourceError, match="not a readable Excel workbook"):
        MicrosoftFormsXlsxSource("m", tmp_path / "fake.xlsx", TZ).pull()
    with pytest.raises(SourceError, match="export file not found"):
        MicrosoftFormsXlsxSource("m", tmp_path / "nope.xlsx", TZ).pull()


def test_a_workbook_or_binary_file_in_place_of_the_csv_is_refused_in_one_line(tmp_path):
    book = write_xlsx(tmp_path / "m.xlsx", ["ID", "Completion time"], [])
    with pytest.raises(SourceError, match=r"is a zip file .*not CSV text"):
        pull_csv(book)
    binary = write_bytes(tmp_path / "b.csv", b"\x00\x01\x02\x03binary\x00\x00\x00\x00\x10")
    with pytest.raises(SourceError, match="is not a text file"):
        pull_csv(binary)


def test_an_empty_file_gives_no_responses_and_says_so(tmp_path):
    empty = pull_csv(write_bytes(tmp_path / "e.csv", b""))
    assert empty.responses == [] and empty.warnings == ["e.csv is empty: no responses"]
    only_header = pull_csv(write_bytes(tmp_path / "h.csv", google_text([]).encode()))
    assert only_header.responses == [] and only_header.warnings == []
    assert set(only_header.questions) == {"What happened?", "Which service?"}


# -- encodings and delimiters -----------------------------------------------------------------

ROWS = [[SUMMER, "kim@x.org", "Café: the label said “twice”", "Oak House"],
        ["2026/09/15 10:00:00 AM GMT+1", "", "Pickup moved", ""]]


def test_utf8_with_bom_and_utf16_read_alike(tmp_path):
    text = google_text(ROWS)
    plain = pull_csv(write_bytes(tmp_path / "plain.csv", text.encode("utf-8")))
    variants = {
        "bom.csv": ("\ufeff" + text).encode("utf-8"),
        "utf16le-bom.csv": ("\ufeff" + text).encode("utf-16-le"),
        "utf16be-bom.csv": ("\ufeff" + text).encode("utf-16-be"),
        "utf16le.csv": text.encode("utf-16-le"),  # Excel's "Unicode text" may lack the mark
        "utf16be.csv": text.encode("utf-16-be"),
    }
    for name, data in variants.items():
        pulled = pull_csv(write_bytes(tmp_path / name, data))
        assert pulled.responses == plain.responses, name
        assert pulled.questions == plain.questions, name
        assert all("UTF-16" in w for w in pulled.warnings), name
        assert bool(pulled.warnings) == name.startswith("utf16"), name
    assert plain.responses[0].answers["What happened?"] == "Café: the label said “twice”"
    # a broken character (a lone surrogate) in a cell: read, with the damage said once
    data = ("\ufeff" + text).encode("utf-16-le").replace(
        "Oak".encode("utf-16-le"), "Oak".encode("utf-16-le") + b"\x00\xd8")
    damaged = pull_csv(write_bytes(tmp_path / "damaged.csv", data))
    assert damaged.responses[0].answers["Which service?"] == "Oak\ufffd House"
    assert damaged.responses[1] == plain.responses[1]
    assert damaged.warnings == ["read as damaged UTF-16 text, not UTF-8 (damaged.csv): bytes "
                                "that could not be read are shown as �"]


def test_windows_1252_file_is_read_with_a_warning(tmp_path):
    # é (0xE9), ’ (0x92) and 0x81, which Windows-1252 leaves undefined
    data = (google_text([[SUMMER, "", "caf\xe9 \u2019x\u2019", "Oak"]]).encode("cp1252")
            .replace(b"Oak", b"Oak\x81"))
    pulled = pull_csv(write_bytes(tmp_path / "win.csv", data))
    (response,) = pulled.responses
    assert response.answers == {"What happened?": "café ’x’", "Which service?": "Oak\x81"}
    assert response.response_id == google_id(SUMMER)
    (warning,) = pulled.warnings
    assert warning.startswith("read as Windows-1252 text, not UTF-8 (win.csv)")


@pytest.mark.parametrize(("delimiter", "called"), [(";", "semicolon"), ("\t", "tab")])
def test_semicolon_and_tab_separated_files_are_read(tmp_path, delimiter, called):
    header = ["Timestamp", "Email Address", "What happened, briefly?", "Which service?"]
    rows = [["14/09/2026 09:41:12", "kim@x.org", "Label; then, a second one", "Oak House"]]
    path = write_bytes(tmp_path / "s.csv", google_text(rows, header, delimiter).encode())
    pulled = pull_csv(path)
    (response,) = pulled.responses
    assert response.answers == {"What happened, briefly?": "Label; then, a second one",
                                "Which service?": "Oak House"}
    assert response.submitted_at == pd.Timestamp("2026-09-14 08:41:12", tz=UTC)
    assert pulled.warnings == [f"s.csv is {called}-separated, not comma-separated as Google "
                               "Forms writes it (re-saved by a spreadsheet?)"]


# -- broken lines -----------------------------------------------------------------------------


def broken_export(fix: bool = False) -> str:
    """Rows with line breaks inside quoted cells, then one line with a field too many and one
    with a field too few; `fix` writes those two as they should be."""
    good = google_text([
        [SUMMER, "a@x.org", "Two\r\nlines", "Oak"],
        ["2026/09/14 9:50:00 AM GMT+1", "", "Three\r\nlines\r\nhere", "Elm"],
    ])
    extra = '"2026/09/14 10:00:00 AM GMT+1","b@x.org","Too","many","fields"\r\n'
    short = '"2026/09/14 10:05:00 AM GMT+1","c@x.org","Too few"\r\n'
    if fix:
        extra = '"2026/09/14 10:00:00 AM GMT+1","b@x.org","Too, many","fields"\r\n'
        short = '"2026/09/14 10:05:00 AM GMT+1","c@x.org","Too few",""\r\n'
    tail = google_text([["2026/09/14 11:00:00 AM GMT+1", "", "After", "Ash"]]).split("\r\n", 1)[1]
    return good + extra + "\r\n" + short + tail


def test_broken_lines_are_kept_with_their_line_numbers_and_the_rest_is_read(tmp_path):
    pulled = pull_csv(write_bytes(tmp_path / "b.csv", broken_export().encode()))
    first, second, extra, short, after = pulled.responses
    assert first.answers == {"What happened?": "Two\r\nlines", "Which service?": "Oak"}
    assert second.answers["What happened?"] == "Three\r\nlines\r\nhere"
    assert after.answers == {"What happened?": "After", "Which service?": "Ash"}
    assert first.quarantined is second.quarantined is after.quarantined is None
    # physical lines: header 1, rows on 2-3 and 4-6, the bad ones on 7 and 9 (8 is blank)
    assert extra.quarantined == "line 7 has 5 fields where the header has 4"
    assert extra.raw_text == '"2026/09/14 10:00:00 AM GMT+1","b@x.org","Too","many","fields"'
    assert short.quarantined == "line 9 has 3 fields where the header has 4"
    assert short.raw_text == '"2026/09/14 10:05:00 AM GMT+1","c@x.org","Too few"'
    for bad in (extra, short):
        assert bad.answers == {} and bad.submitted_at is not None
    assert extra.respondent_email == "b@x.org"
    assert pulled.warnings == [
        "line 7 has 5 fields where the header has 4: kept as written, its report held until "
        "the export is corrected",
        "line 9 has 3 fields where the header has 4: kept as written, its report held until "
        "the export is corrected"]

    # Corrected in the export, each becomes a new version of the same response.
    fixed = pull_csv(write_bytes(tmp_path / "fixed.csv", broken_export(fix=True).encode()))
    assert [r.response_id for r in fixed.responses] == [r.response_id for r in pulled.responses]
    assert all(r.quarantined is None for r in fixed.responses) and fixed.warnings == []
    assert fixed.responses[2].answers == {"What happened?": "Too, many",
                                          "Which service?": "fields"}


def test_a_quote_never_closed_costs_its_own_line_not_the_next_report(tmp_path):
    rows = [[f"2026/09/14 {h}:00:00 AM GMT+1", "", f"Report {h}", "Oak"] for h in range(1, 7)]
    text = google_text(rows).replace('"Report 2"', '"Report "2"')  # read, but shown
    text = text.replace('"Report 3","Oak"', '"Report 3,Oak')  # the closing quote lost
    text = text.replace('"Report 5","Oak"', '"Report 5,"Oak"')  # cells run together
    pulled = pull_csv(write_bytes(tmp_path / "q.csv", text.encode()))
    kept = [r.answers["What happened?"] for r in pulled.responses if not r.quarantined]
    assert kept == ["Report 1", 'Report 2"', "Report 4", "Report 6"]
    unclosed, joined = [r for r in pulled.responses if r.quarantined]
    assert unclosed.quarantined == "line 4 has a quote mark that is not closed"
    assert unclosed.raw_text == '"2026/09/14 3:00:00 AM GMT+1","","Report 3,Oak'
    assert unclosed.submitted_at == pd.Timestamp("2026-09-14 02:00", tz=UTC)
    assert joined.quarantined == "line 6 has 3 fields where the header has 4"
    assert [r.response_id for r in pulled.responses] == [
        google_id(row[0]) for row in rows]  # each line keeps the id its report will have
    (misquoted,) = [r for r in pulled.responses if r.answers.get("What happened?") ==
                    'Report 2"']
    assert misquoted.notes == ("note: Row: line 3 has a quote mark out of place; its cells "
                               "were read as well as they could be: check them against the "
                               "export",)


def test_a_long_record_of_the_wrong_width_stays_whole(tmp_path):
    """Lines inside quoted cells are not taken for reports when the record is too wide."""
    text = google_text([[SUMMER, "", "one", "two"]])
    text += f'"{SUMMER}","","first\r\n2026/09/14 9:41:12 AM GMT+1,x,y,z","Oak","extra"\r\n'
    pulled = pull_csv(write_bytes(tmp_path / "w.csv", text.encode()))
    good, bad = pulled.responses
    assert good.answers == {"What happened?": "one", "Which service?": "two"}
    assert bad.quarantined == "line 3 has 5 fields where the header has 4"
    assert bad.raw_text.count("\r\n") == 1


def test_control_characters_and_nul_inside_cells_are_kept(tmp_path):
    odd = "a\x00b\x01c\x0bd\x1fe\x7f\u202eevil\u202c"
    text = google_text([[SUMMER, "", odd, "tab\there"], [SUMMER, "", "\x00", " \t "]])
    pulled = pull_csv(write_bytes(tmp_path / "c.csv", text.encode()))
    first, second = pulled.responses
    assert first.answers == {"What happened?": odd, "Which service?": "tab\there"}
    assert second.answers == {"What happened?": "\x00"}  # a NUL is not blank; spaces are
    assert pulled.warnings == []


def test_na_words_are_answers_not_blanks_in_csv(tmp_path):
    words = ["N/A", "NA", "None", "null", "NULL", "nan", "-", "#N/A"]
    rows = [[f"2026/09/14 9:{m:02d}:00 AM GMT+1", "", w, w] for m, w in enumerate(words)]
    pulled = pull_csv(write_bytes(tmp_path / "na.csv", google_text(rows).encode()))
    assert [r.answers for r in pulled.responses] == [
        {"What happened?": w, "Which service?": w} for w in words]


def test_an_empty_timestamp_is_marked_not_filled_in(tmp_path):
    text = google_text([["", "kim@x.org", "No time", ""], ["  ", "", "Spaces", ""]])
    first, second = pull_csv(write_bytes(tmp_path / "t.csv", text.encode())).responses
    for response in (first, second):
        assert response.submitted_at is None and response.unreadable_timestamp == ""
        assert response.notes == ("invalid: Submitted: no date and time given; dated by when "
                                  "it was first received",)
    assert first.response_id == google_id("", "kim@x.org")


# -- clock changes and day orders -------------------------------------------------------------


def test_london_clock_changes_in_a_google_export(tmp_path):
    text = google_text([
        ["2026/10/25 1:30:00 AM", "", "autumn, no zone", ""],
        ["2026/10/25 1:30:00 AM GMT", "", "autumn, GMT", ""],
        ["2026/10/25 1:30:00 AM GMT+1", "", "autumn, GMT+1", ""],
        ["2026/03/29 1:30:00 AM", "", "spring gap", ""],
        ["2026/11/14 9:00:00 AM", "", "ordinary", ""],
    ])
    pulled = pull_csv(write_bytes(tmp_path / "clock.csv", text.encode()))
    got = {r.answers["What happened?"]: r for r in pulled.responses}
    assert got["autumn, no zone"].submitted_at == pd.Timestamp("2026-10-25 00:30", tz=UTC)
    assert got["autumn, no zone"].notes == (
        "note: Submitted: '2026/10/25 1:30:00 AM' is in the hour repeated when the clocks "
        "went back: read as the first 01:30 (BST, 00:30 UTC)",)
    assert got["autumn, GMT"].submitted_at == pd.Timestamp("2026-10-25 01:30", tz=UTC)
    assert got["autumn, GMT+1"].submitted_at == pd.Timestamp("2026-10-25 00:30", tz=UTC)
    assert got["autumn, GMT"].notes == got["autumn, GMT+1"].notes == ()
    assert got["spring gap"].submitted_at == pd.Timestamp("2026-03-29 01:30", tz=UTC)
    assert got["spring gap"].notes == (
        "note: Submitted: '2026/03/29 1:30:00 AM' is in the hour skipped when the clocks "
        "went forward: read as 02:30 BST",)
    assert got["ordinary"].notes == () and pulled.warnings == []


def test_a_timestamp_column_in_both_day_orders_is_named_once(tmp_path):
    text = google_text([["25/09/2026 10:00:00", "", "day first", ""],
                        ["09/13/2026 10:00:00", "", "month first", ""],
                        ["03/04/2026 10:00:00", "", "either", ""]])
    pulled = pull_csv(write_bytes(tmp_path / "d.csv", text.encode()))
    day, month, either = pulled.responses
    assert day.submitted_at == pd.Timestamp("2026-09-25 09:00", tz=UTC)
    assert month.submitted_at == pd.Timestamp("2026-09-13 09:00", tz=UTC)
    assert either.submitted_at is None and either.unreadable_timestamp == "03/04/2026 10:00:00"
    assert either.notes[0].startswith("invalid: Submitted: '03/04/2026 10:00:00' could be "
                                      "either 3 April or 4 March")
    (warning,) = pulled.warnings
    assert warning.startswith("the Timestamp column has dates in both day orders (")
    assert "'25/09/2026 10:00:00'" in warning and "'09/13/2026 10:00:00'" in warning


# -- the round trip, for any text -------------------------------------------------------------

CELL = st.text(st.characters(exclude_categories=["Cs"]), max_size=20) | st.sampled_from(
    ["", " ", "N/A", "None", "null", "NA", "\r\n", "\r", "\n", '"', '""', ",", ";", "\t",
     "\x00", "a\x00b", "\ufeff", "=1+1"])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(CELL, min_size=2, max_size=2), min_size=1, max_size=4),
       delimiter=st.sampled_from([",", ";", "\t"]))
def test_any_cell_text_comes_back_as_written(tmp_path, rows, delimiter):
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(HEADER)
    writer.writerows([[SUMMER, "", *cells] for cells in rows])
    pulled = pull_csv(write_bytes(tmp_path / "any.csv", out.getvalue().encode()))
    assert [r.answers for r in pulled.responses] == [
        {q: v.strip() for q, v in zip(HEADER[2:], cells, strict=True) if v.strip()}
        for cells in rows]
    assert all(r.quarantined is None and not r.notes for r in pulled.responses)


def test_header_names_match_what_pandas_called_them(tmp_path):
    """Stored answers are keyed by these names: they must not change under existing stores."""
    header = ["Timestamp", "Q", "Q", "", "  ", "Q.1", "Email Address", "Score"]
    text = google_text([[SUMMER, *"abcdefg"]], header)
    path = write_bytes(tmp_path / "h.csv", text.encode())
    pandas_names = list(pd.read_csv(path, dtype=str, keep_default_na=False).columns)
    pulled = pull_csv(path)
    (response,) = pulled.responses
    assert list(response.answers) == [n for n in pandas_names
                                      if n not in ("Timestamp", "Email Address", "Score")]
    assert response.respondent_email == "f" and "Score" not in pulled.questions


# -- Microsoft Forms workbooks ----------------------------------------------------------------

MS_HEADER = ["ID", "Start time", "Completion time", "Email", "Name", "Last modified time",
             "What happened?", "Which service?"]


def write_xlsx(path: Path, header: list[str], rows: list[list]) -> Path:
    """A Forms workbook: answers are typed text, as Microsoft writes them (openpyxl alone
    would store "#N/A" as an error and "=1" as a formula)."""
    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for row in rows:
        ws.append(row)
        for cell in ws[ws.max_row]:
            if isinstance(cell.value, str):
                cell.data_type = "s"
    wb.save(path)
    return path


def pull_xlsx(path: Path, tz: ZoneInfo = TZ, **kwargs):
    return MicrosoftFormsXlsxSource("m", path, tz, **kwargs).pull()


def test_microsoft_export_anonymous_edited_and_multiselect(tmp_path):
    header = ["ID", "Start time", "Completion time", "Email", "Name", "Last modified time",
              "What contributed? (tick all that apply)", "When did it happen?"]
    path = write_xlsx(tmp_path / "m.xlsx", header, [
        [1, datetime(2026, 9, 14, 9, 0), datetime(2026, 9, 14, 9, 5), "anonymous", None, None,
         "Handover;Time pressure;", datetime(2026, 9, 13)],
        [2, datetime(2026, 11, 2, 9, 0), datetime(2026, 11, 2, 9, 5), "kim@x.org", "Kim Lee",
         datetime(2026, 11, 3, 12, 0), "Equipment;", datetime(2026, 11, 1)],
        [None, None, None, None, None, None, None, None],  # a blank line under the table
    ])
    pulled = MicrosoftFormsXlsxSource("m", path, TZ).pull()
    anon, edited = pulled.responses
    assert anon.response_id == "1" and anon.respondent_email is None
    assert anon.submitted_at == pd.Timestamp("2026-09-14 08:05", tz="UTC")  # BST
    assert anon.answers["When did it happen?"] == "2026-09-13"
    assert edited.respondent_name == "Kim Lee"
    assert edited.submitted_at == pd.Timestamp("2026-11-03 12:00", tz="UTC")  # GMT, last edit
    assert edited.answers["What contributed? (tick all that apply)"] == "Equipment;"
    assert anon.notes == edited.notes == () and pulled.warnings == []


def test_microsoft_export_without_its_columns_is_refused(tmp_path):
    path = write_xlsx(tmp_path / "m.xlsx", ["Name", "Q"], [["a", "b"]])
    with pytest.raises(SourceError, match="no 'ID', 'Completion time' column"):
        MicrosoftFormsXlsxSource("m", path, TZ).pull()


def test_microsoft_export_missing_sheet_is_named(tmp_path):
    path = write_xlsx(tmp_path / "m.xlsx", MS_HEADER, [])
    with pytest.raises(SourceError, match=r"m: .* has no sheet 'Responses'"):
        pull_xlsx(path, sheet="Responses")
    assert pull_xlsx(path, sheet="Sheet").responses == []


def test_microsoft_header_names_match_what_pandas_called_them(tmp_path):
    header = ["ID", "Completion time", "Q", "Q", None, "Q.1", "Email"]
    row = [1, datetime(2026, 9, 14, 9, 0), "a", "b", "c", "d", "e@x.org", "beyond"]
    path = write_xlsx(tmp_path / "h.xlsx", header, [row])
    pandas_names = [str(c) for c in pd.read_excel(path, dtype=object, engine="openpyxl").columns]
    pulled = pull_xlsx(path)
    (response,) = pulled.responses
    assert list(response.answers) == [n for n in pandas_names
                                      if n not in ("ID", "Completion time", "Email")]
    assert response.answers["Unnamed: 7"] == "beyond"  # a cell beyond the header is kept
    assert response.respondent_email == "e@x.org"


def test_na_words_are_answers_not_blanks_in_xlsx(tmp_path):
    words = ["N/A", "NA", "None", "null", "NULL", "nan", "-", "#N/A"]
    start = datetime(2026, 9, 14, 9, 0)
    rows = [[n, start, start, "anonymous", None, None, w, w] for n, w in enumerate(words, 1)]
    rows.append([99, start, start, "anonymous", None, None, "   ", None])
    responses = pull_xlsx(write_xlsx(tmp_path / "na.xlsx", MS_HEADER, rows)).responses
    assert [r.answers for r in responses] == [
        {"What happened?": w, "Which service?": w} for w in words] + [{}]


def test_new_york_clock_changes_in_a_microsoft_export(tmp_path):
    rows = [
        [1, None, datetime(2026, 11, 1, 1, 30), "anonymous", None, None, "autumn", None],
        [2, None, datetime(2026, 3, 8, 2, 30), "anonymous", None, None, "spring", None],
        [3, None, datetime(2026, 7, 4, 12, 0), "anonymous", None, None, "summer", None],
    ]
    autumn, spring, summer = pull_xlsx(write_xlsx(tmp_path / "ny.xlsx", MS_HEADER, rows),
                                       NEW_YORK).responses
    assert autumn.submitted_at == pd.Timestamp("2026-11-01 05:30", tz=UTC)  # the first, EDT
    assert autumn.notes == ("note: Submitted: '2026-11-01 01:30' is in the hour repeated "
                            "when the clocks went back: read as the first 01:30 (EDT, 05:30 "
                            "UTC)",)
    assert spring.submitted_at == pd.Timestamp("2026-03-08 07:30", tz=UTC)
    assert spring.notes == ("note: Submitted: '2026-03-08 02:30' is in the hour skipped when "
                            "the clocks went forward: read as 03:30 EDT",)
    assert summer.submitted_at == pd.Timestamp("2026-07-04 16:00", tz=UTC)
    assert summer.notes == ()


@pytest.mark.parametrize("dayfirst", [True, False])
def test_microsoft_text_times_in_month_first_order_whatever_the_tie_breaker(tmp_path, dayfirst):
    rows = [
        [1, None, "9/14/2026 9:05:00 AM", "anonymous", None, None, "proves the order", None],
        [2, None, "3/4/2026 10:00:00 AM", "anonymous", None, None, "ambiguous alone", None],
        [3, None, "2/3/2026 1:00:00 PM", "anonymous", None, "3/5/2026 8:00:00 AM", "edited",
         None],
        [4, None, "sometime", "anonymous", None, None, "unreadable", None],
    ]
    path = write_xlsx(tmp_path / "text.xlsx", MS_HEADER, rows)
    proves, ambiguous, edited, unreadable = pull_xlsx(path, dayfirst=dayfirst).responses
    assert proves.submitted_at == pd.Timestamp("2026-09-14 08:05", tz=UTC)
    assert ambiguous.submitted_at == pd.Timestamp("2026-03-04 10:00", tz=UTC)
    assert edited.submitted_at == pd.Timestamp("2026-03-05 08:00", tz=UTC)
    assert unreadable.submitted_at is None and unreadable.unreadable_timestamp == "sometime"
    assert unreadable.notes == ("invalid: Submitted: 'sometime' is not a date and time; dated "
                                "by when it was first received",)


def test_microsoft_time_columns_in_both_day_orders_are_named(tmp_path):
    rows = [[1, "14/9/2026 9:00:00 AM", "9/14/2026 9:05:00 AM", "anonymous", None, None,
             "proven", None],
            [2, None, "3/4/2026 10:00:00 AM", "anonymous", None, None, "ambiguous", None]]
    pulled = pull_xlsx(write_xlsx(tmp_path / "both.xlsx", MS_HEADER, rows))
    proven, ambiguous = pulled.responses
    assert proven.submitted_at == pd.Timestamp("2026-09-14 08:05", tz=UTC)
    assert ambiguous.submitted_at is None
    assert ambiguous.unreadable_timestamp == "3/4/2026 10:00:00 AM"
    assert pulled.warnings == [
        "the time columns have dates in both day orders ('14/9/2026 9:00:00 AM' is day-first "
        "but '9/14/2026 9:05:00 AM' is month-first); the ambiguous ones are marked unreadable"]


def test_thirty_rows_sharing_an_id_are_thirty_reports_whatever_the_row_order(tmp_path):
    first_start = datetime(2026, 9, 1, 8, 0)
    starts = [first_start + timedelta(days=d, minutes=d) for d in range(30)]
    rows = [[7, s, s + timedelta(minutes=5), "anonymous", None, None, f"report {d}", None]
            for d, s in enumerate(starts)]
    # ID 8 twice with one start time: one response, the later submission read as its edit
    same = datetime(2026, 9, 2, 9, 0)
    rows += [[8, same, same + timedelta(minutes=5), "anonymous", None,
              datetime(2026, 9, 3, 9, 0), "edited", None],
             [8, same, same + timedelta(minutes=5), "anonymous", None, None, "original", None]]
    shuffled = rows[:]
    random.Random(4).shuffle(shuffled)
    pulls = [pull_xlsx(write_xlsx(tmp_path / f"{n}.xlsx", MS_HEADER, r))
             for n, r in enumerate([rows, shuffled, rows])]
    ids = [{r.answers["What happened?"]: r.response_id for r in p.responses} for p in pulls]
    assert ids[0] == ids[1] == ids[2]
    assert len(pulls[0].responses) == 31 and len(set(ids[0].values())) == 31
    assert ids[0]["report 0"] == "7"
    assert ids[0]["report 1"] == "7@20260902T080100"
    assert ids[0]["report 29"] == "7@20260930T082900"
    assert ids[0]["edited"] == "8" and "original" not in ids[0]
    notes = {r.answers["What happened?"]: r.notes for r in pulls[1].responses}
    assert all(notes[f"report {d}"] == (
        "note: ID: response ID 7 is on 30 rows with different start times; each is kept as "
        "a separate report",) for d in range(30))
    assert notes["edited"] == ("note: ID: response ID 8 is on 2 rows with the same start "
                               "time; they are read as one response, the last submitted row "
                               "as its latest edit",)
    assert pulls[0].warnings == [
        "response ID 7 is on 30 rows with different start times; each is kept as a separate "
        "report",
        "response ID 8 is on 2 rows with the same start time; they are read as one response, "
        "the last submitted row as its latest edit"]


def test_a_damaged_time_cell_marks_its_row_only(tmp_path):
    rows = [[1, None, datetime(2026, 9, 14, 9, 0), "anonymous", None, None, "fine", None],
            [2, None, None, "anonymous", None, None, "no time", None],
            [3, None, datetime(2026, 9, 14, 9, 0).time(), "anonymous", None, None, "time only",
             None],
            # Excel holds no date before 1900 as a date: such a time is text
            [4, None, "1850-01-01", "anonymous", None, None, "year", None]]
    fine, none, time_only, year = pull_xlsx(write_xlsx(tmp_path / "t.xlsx", MS_HEADER,
                                                       rows)).responses
    assert fine.submitted_at is not None and fine.notes == ()
    assert none.unreadable_timestamp == "" and none.notes[0].startswith(
        "invalid: Submitted: no date and time given")
    assert time_only.unreadable_timestamp == "09:00"
    assert year.notes[0].startswith("invalid: Submitted: '1850-01-01': the year 1850 is out")


def test_an_export_unchanged_since_its_watermark_is_not_read_again(tmp_path):
    csv_path = write_csv(tmp_path / "g.csv", [
        {"Timestamp": "2026/09/14 9:41:12 AM GMT+1", "What happened?": "Wrong label"}])
    xlsx_path = write_xlsx(tmp_path / "m.xlsx", ["ID", "Start time", "Completion time", "Q"],
                           [[1, datetime(2026, 9, 14, 9), datetime(2026, 9, 14, 9, 5), "a"]])
    marks = {}
    for source in (GoogleFormsCsvSource("g", csv_path, TZ),
                   MicrosoftFormsXlsxSource("m", xlsx_path, TZ)):
        first = source.pull(None)
        assert len(first.responses) == 1
        again = source.pull(first.watermark)
        assert again.unchanged and again.responses == [] and again.watermark == first.watermark
        marks[source.name] = first.watermark
    # a watermark from before resume points (the digest alone) still says "unchanged"
    old = json.loads(marks["g"])["digest"]
    assert GoogleFormsCsvSource("g", csv_path, TZ).pull(old).unchanged
    csv_path.write_text(csv_path.read_text() + "2026/09/15 9:00:00 AM GMT+1,Another\n")
    changed = GoogleFormsCsvSource("g", csv_path, TZ).pull(marks["g"])
    assert not changed.unchanged and [r.answers for r in changed.responses] == [
        {"What happened?": "Another"}]  # only the line added
    # read whole from a digest alone, or a resume point damaged by hand
    assert len(GoogleFormsCsvSource("g", csv_path, TZ).pull(old).responses) == 2
    for damage in ({"header": None}, {"header": [5, 6]}, {"proofs": 3}, {"end": "x"}):
        damaged = json.loads(marks["g"])
        damaged["resume"].update(damage)
        assert len(GoogleFormsCsvSource("g", csv_path, TZ).pull(
            json.dumps(damaged)).responses) == 2, damage


# -- read in parts: only what was appended, as a whole read gives it ---------------------------

def in_parts(pull, write, rows: list, cuts: list[int]) -> None:
    """The export grows through `cuts` (row counts) to `rows`; each read from the last
    one's watermark must leave the store holding, for every response, what a whole read of
    that version gives, and say what it says."""
    watermark = None
    held: dict[str, object] = {}
    for n in [*cuts, len(rows)]:
        write(rows[:n])
        part = pull(watermark)
        if part.unchanged:  # the same version again: what its read said still holds
            continue
        whole = pull(None)
        watermark = part.watermark
        by_id = {r.response_id: r for r in whole.responses}
        assert all(by_id.get(r.response_id) == r for r in part.responses)
        held |= {r.response_id: r for r in part.responses}
        assert {k: held.get(k) for k in by_id} == by_id
        assert (part.questions, part.warnings) == (whole.questions, whole.warnings)


STAMPS = st.sampled_from([
    "2026/09/14 9:41:12 AM GMT+1", "2026/09/14 9:41:13 AM GMT+1", "2026/10/25 1:30:00 AM",
    "2026/10/25 1:30:00 AM GMT", "03/04/2026 10:00:00", "25/09/2026 10:00:00",
    "09/13/2026 10:00:00", "garbled", "", "2026/11/02 23:59:59 PM GMT"])


@st.composite
def growing_csv(draw):
    """Lines of a Google export, in time order as Google writes them, with repeated and
    unreadable stamps, both day orders, hostile answers and broken lines."""
    rows = []
    minute = 0
    for _ in range(draw(st.integers(1, 12))):
        minute += draw(st.integers(0, 2))
        stamp = draw(STAMPS | st.just(f"2026/11/20 {10 + minute // 60}:{minute % 60:02d}:00"
                                      " AM GMT"))
        email = draw(st.sampled_from(["", "a@x.org", "b@x.org"]))
        cells = draw(st.lists(CELL, min_size=2, max_size=2))
        broken = draw(st.sampled_from([None, None, None, "extra", "quote"]))
        out = io.StringIO(newline="")
        csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerow(
            [stamp, email, *cells, *(["x"] if broken == "extra" else [])])
        line = out.getvalue()
        rows.append(f'"{stamp}","{email}","unclosed\r\n' if broken == "quote" else line)
    return rows


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=growing_csv(), data=st.data(), dayfirst=st.booleans(),
       tz=st.sampled_from([TZ, NEW_YORK]),
       titles=st.sampled_from([HEADER[2:], ["¿Qué pasó?", "Service\tname "], ["", "Score"]]))
def test_a_growing_csv_read_in_parts_reads_as_a_whole_read(tmp_path, rows, data, dayfirst,
                                                           tz, titles):
    """Other question titles (an untitled column, a Score column) and zones too."""
    path = tmp_path / "grow.csv"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=2)))
    header = google_text([], ["Timestamp", "Email Address", *titles])
    source = GoogleFormsCsvSource("g", path, tz, dayfirst)
    in_parts(source.pull, lambda part: path.write_bytes(
        (header + "".join(part)).encode("utf-8")), rows, cuts)


MS_TIMES = st.sampled_from([
    datetime(2026, 9, 14, 9, 0), datetime(2026, 10, 25, 1, 30), "03/04/2026 10:00",
    "25/09/2026 10:00", "09/13/2026 10:00", "garbled", None])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(1, 12), MS_TIMES, MS_TIMES, MS_TIMES, CELL),
                     min_size=1, max_size=10),
       data=st.data(), dayfirst=st.booleans(), tz=st.sampled_from([TZ, NEW_YORK]))
def test_a_growing_workbook_read_in_parts_reads_as_a_whole_read(tmp_path, rows, data,
                                                                 dayfirst, tz):
    """Repeated IDs (merged exports, edits), both day orders, hostile answers, zones."""
    path = tmp_path / "grow.xlsx"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=2)))
    source = MicrosoftFormsXlsxSource("m", path, tz, dayfirst=dayfirst)
    in_parts(source.pull, lambda part: write_xlsx(path, MS_HEADER, [
        [rid, start, done, "anonymous", None, edited, ILLEGAL_CHARACTERS_RE.sub("", text), None]
        for rid, start, done, edited, text in part]), rows, cuts)


def test_an_export_changed_above_its_new_lines_is_read_whole(tmp_path):
    rows = [[f"2026/11/2{d} 9:00:00 AM GMT", "", f"report {d}", ""] for d in range(4)]
    path = write_bytes(tmp_path / "g.csv", google_text(rows[:3]).encode())
    source = GoogleFormsCsvSource("g", path, TZ)
    first = source.pull(None)
    rows[0][2] = "report 0, edited"  # a response edited in the form: its line changes
    write_bytes(path, google_text(rows).encode())
    assert [r.answers["What happened?"] for r in source.pull(first.watermark).responses] == [
        "report 0, edited", "report 1", "report 2", "report 3"]

    book = [[i, datetime(2026, 9, 14, 9), datetime(2026, 9, 14, 9, i), "anonymous", None, None,
             f"answer {i}", None] for i in (1, 2, 3)]
    xlsx = write_xlsx(tmp_path / "m.xlsx", MS_HEADER, book[:2])
    source = MicrosoftFormsXlsxSource("m", xlsx, TZ)
    first = source.pull(None)
    write_xlsx(xlsx, MS_HEADER, book)
    assert [r.response_id for r in source.pull(first.watermark).responses] == ["3"]
    book[0][6] = "answer 1, edited"
    write_xlsx(xlsx, MS_HEADER, book)
    assert [r.response_id for r in source.pull(first.watermark).responses] == ["1", "2", "3"]


def test_a_quote_left_open_at_the_end_is_read_again_with_what_is_appended(tmp_path):
    """The export ends inside a quoted cell that happens to give the header's number of
    cells: the lines appended next go on in that cell, so the next read is a whole one."""
    path = tmp_path / "grow.csv"
    header = google_text([], ["Timestamp", "Email Address", *HEADER[2:]])
    rows = ['"2026/09/14 9:41:12 AM GMT+1","","unclosed\r\n', '"","a@x.org","unclosed\r\n',
            '"2026/11/20 10:00:00 AM GMT","","",""\r\n']
    source = GoogleFormsCsvSource("g", path, TZ, False)
    in_parts(source.pull, lambda part: path.write_bytes((header + "".join(part)).encode()),
             rows, [2])
