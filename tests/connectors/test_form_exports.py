from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from openpyxl import Workbook

from connectors.errors import SourceError
from connectors.form_exports import (
    GoogleFormsCsvSource,
    MicrosoftFormsXlsxSource,
    parse_google_timestamp,
)

TZ = ZoneInfo("Europe/London")


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


def write_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_csv_rows_become_responses_with_stable_ids(tmp_path):
    path = write_csv(tmp_path / "g.csv", [
        {"Timestamp": "2026/09/14 9:41:12 AM GMT+1", "Email Address": "a@x.org",
         "What happened?": "Wrong label", "Which service?": ""},
        {"Timestamp": "2026/09/14 9:41:12 AM GMT+1", "Email Address": "a@x.org",
         "What happened?": "Second one in the same second", "Which service?": "Oak House"},
        {"Timestamp": "garbled", "Email Address": "", "What happened?": "x",
         "Which service?": ""},
    ])
    source = GoogleFormsCsvSource("g", path, TZ)
    first, second = source.pull(), source.pull()
    ids = [r.response_id for r in first.responses]
    assert ids == [r.response_id for r in second.responses] and len(set(ids)) == 3
    a, _, c = first.responses
    assert a.respondent_email == "a@x.org" and a.answers == {"What happened?": "Wrong label"}
    assert c.submitted_at is None and c.unreadable_timestamp == "garbled"
    assert set(first.questions) == {"What happened?", "Which service?"}


def test_missing_and_foreign_files_say_which_file(tmp_path):
    with pytest.raises(SourceError, match=r"g: export file not found: .*nope\.csv"):
        GoogleFormsCsvSource("g", tmp_path / "nope.csv", TZ).pull()
    other = write_csv(tmp_path / "other.csv", [{"a": 1}])
    with pytest.raises(SourceError, match="no 'Timestamp' column"):
        GoogleFormsCsvSource("g", other, TZ).pull()
    (tmp_path / "latin.csv").write_bytes("Timestamp,Q\n2026/09/14 9:41:12 AM GMT,caf\xe9\n"
                                         .encode("latin-1"))
    with pytest.raises(SourceError, match="not UTF-8"):
        GoogleFormsCsvSource("g", tmp_path / "latin.csv", TZ).pull()
    (tmp_path / "fake.xlsx").write_text("not a workbook")
    with pytest.raises(SourceError, match="not a readable Excel workbook"):
        MicrosoftFormsXlsxSource("m", tmp_path / "fake.xlsx", TZ).pull()
    with pytest.raises(SourceError, match="export file not found"):
        MicrosoftFormsXlsxSource("m", tmp_path / "nope.xlsx", TZ).pull()


def write_xlsx(path: Path, header: list[str], rows: list[list]) -> Path:
    wb = Workbook()
    ws = wb.active
    ws.append(header)
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def test_microsoft_export_anonymous_edited_and_multiselect(tmp_path):
    header = ["ID", "Start time", "Completion time", "Email", "Name", "Last modified time",
              "What contributed? (tick all that apply)", "When did it happen?"]
    path = write_xlsx(tmp_path / "m.xlsx", header, [
        [1, datetime(2026, 9, 14, 9, 0), datetime(2026, 9, 14, 9, 5), "anonymous", None, None,
         "Handover;Time pressure;", datetime(2026, 9, 13)],
        [2, datetime(2026, 11, 2, 9, 0), datetime(2026, 11, 2, 9, 5), "kim@x.org", "Kim Lee",
         datetime(2026, 11, 3, 12, 0), "Equipment;", datetime(2026, 11, 1)],
    ])
    pulled = MicrosoftFormsXlsxSource("m", path, TZ).pull()
    anon, edited = pulled.responses
    assert anon.response_id == "1" and anon.respondent_email is None
    assert anon.submitted_at == pd.Timestamp("2026-09-14 08:05", tz="UTC")  # BST
    assert anon.answers["When did it happen?"] == "2026-09-13"
    assert edited.respondent_name == "Kim Lee"
    assert edited.submitted_at == pd.Timestamp("2026-11-03 12:00", tz="UTC")  # GMT, last edit
    assert edited.answers["What contributed? (tick all that apply)"] == "Equipment;"


def test_microsoft_export_without_its_columns_is_refused(tmp_path):
    path = write_xlsx(tmp_path / "m.xlsx", ["Name", "Q"], [["a", "b"]])
    with pytest.raises(SourceError, match="no 'ID', 'Completion time' column"):
        MicrosoftFormsXlsxSource("m", path, TZ).pull()
