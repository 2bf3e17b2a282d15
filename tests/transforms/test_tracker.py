from datetime import date, datetime

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from domain.records import SheetWrite, merge_writes
from domain.text import sheet_text
from tests.fakes.patterns import long_pattern_rows
from transforms import tracker
from transforms.tracker import (
    ACTIONS,
    PATTERNS,
    REPORTS,
    archive_targets,
    archived_in,
    assign_ids,
    cell_text,
    family,
    manager_changes,
    manager_updates,
    plan_family,
    plan_sheet,
    read_sheet,
    read_states,
    stored_text,
)

HEADER = REPORTS.columns


def desired(*rows: dict) -> pd.DataFrame:
    frame = pd.DataFrame([{"Report ID": r["Report ID"], "Version": r.get("Version", 1),
                           "Category": r.get("Category", "Medication")} for r in rows])
    return frame.set_index("Report ID", drop=False)


def row(values: dict) -> list:
    return [values.get(title) for title in HEADER]


def test_new_sheet_gets_header_and_rows():
    state = read_sheet(REPORTS, None)
    write, added, restored = plan_sheet(state, desired({"Report ID": "NM-000001"}), {})
    assert write.create and write.header[1] == "Report ID"
    assert write.append[0][:2] == ["NM-000001", 1] and added == ["NM-000001"]
    assert restored == []


def test_only_changed_system_cells_are_written_and_manager_cells_never():
    sheet = [HEADER, row({"Report ID": "NM-000001", "Version": 1, "Category": "Medication",
                          "Triage status": "Triaged"})]
    state = read_sheet(REPORTS, sheet)
    same, _, _ = plan_sheet(state, desired({"Report ID": "NM-000001"}), {})
    assert not same
    changed, _, _ = plan_sheet(state, desired({"Report ID": "NM-000001", "Version": 2}), {})
    assert changed.cells == {(2, HEADER.index("Version") + 1): 2}


def test_rows_found_by_key_after_sorting_and_added_columns():
    header = ["My notes", *HEADER, "Also mine"]
    sheet = [header,
             ["call Sam", *row({"Report ID": "NM-000002", "Version": 1,
                                "Category": "Medication"}), "x"],
             ["", *row({"Report ID": "NM-000001", "Version": 1, "Category": "Transport"}), ""]]
    state = read_sheet(REPORTS, sheet)
    assert state.rows == {"NM-000002": 2, "NM-000001": 3}
    write, _, _ = plan_sheet(state, desired({"Report ID": "NM-000001"},
                                            {"Report ID": "NM-000002"}), {})
    assert write.cells == {(3, HEADER.index("Category") + 2): "Medication"}


def test_deleted_row_is_restored_with_stored_manager_values():
    state = read_sheet(REPORTS, [HEADER])
    manager = {"NM-000001": {"Triage status": "Closed", "Outcome for reporter": "New check"}}
    write, added, restored = plan_sheet(state, desired({"Report ID": "NM-000001"}), manager)
    assert restored == ["NM-000001"] and added == []
    line = write.append[0]
    assert line[HEADER.index("Triage status")] == "Closed"
    assert line[HEADER.index("Outcome for reporter")] == "New check"


def test_missing_known_column_is_added_at_the_end():
    header = [h for h in HEADER if h != "Priority"]
    state = read_sheet(REPORTS, [header])
    write, _, _ = plan_sheet(state, desired({"Report ID": "NM-000001"}), {})
    assert write.header == {len(header) + 1: "Priority"}


def test_manager_changes_are_detected_old_to_new():
    sheet = [HEADER, row({"Report ID": "NM-000001", "Triage status": "Closed",
                          "Closed on": "2026-11-20"})]
    state = read_sheet(REPORTS, sheet)
    merged, changes = manager_changes(state, {"NM-000001": {"Triage status": "Triaged"},
                                              "NM-000009": {"Triage status": "Closed"}})
    assert {(c.column, c.old, c.new) for c in changes} == {
        ("Triage status", "Triaged", "Closed"), ("Closed on", "", "2026-11-20")}
    assert merged["NM-000009"] == {"Triage status": "Closed"}  # deleted row keeps its values


def test_blank_rows_never_stored_are_not_stored_and_a_cell_emptied_since_is():
    sheet = [HEADER, row({"Report ID": "NM-000001"}), row({"Report ID": "NM-000002"}),
             row({"Report ID": "NM-000003", "Triage status": "Triaged"})]
    stored = {"NM-000002": {"Triage status": "Closed"}}
    merged, changes = manager_changes(read_sheet(REPORTS, sheet), stored)
    updates = manager_updates(merged, stored)
    assert set(updates) == {"NM-000002", "NM-000003"}  # NM-000001 was and is blank
    assert not any(updates["NM-000002"].values())
    # stored as updated, the next read of the same sheet changes nothing
    stored = {**stored, **updates}
    merged, changes = manager_changes(read_sheet(REPORTS, sheet), stored)
    assert manager_updates(merged, stored) == {} and changes == []


def test_new_action_rows_get_ids():
    header = ACTIONS.columns
    sheet = [header, [None, "NM-000003", "Add a MAR check at handover", "Jo"] + [None] * 10,
             [None] * 14]
    state = read_sheet(ACTIONS, sheet)
    write, assigned = assign_ids(state, ["A-0001"])
    assert assigned == {"A-0001": 2} and write.cells == {(2, 1): "A-0001"}
    assert state.values["A-0001"]["Action"] == "Add a MAR check at handover"


def test_cell_text():
    assert cell_text(3.0) == "3" and cell_text(None) == "" and cell_text(" a ") == "a"
    assert cell_text(pd.Timestamp("2026-11-20").to_pydatetime()) == "2026-11-20"


def test_writes_merge_per_sheet():
    a = read_sheet(REPORTS, [HEADER])
    w1, _, _ = plan_sheet(a, desired({"Report ID": "NM-000001"}), {})
    w2, _, _ = plan_sheet(a, desired({"Report ID": "NM-000002"}), {})
    merged = merge_writes(w1, w2)
    assert len(merged) == 1 and len(merged[0].append) == 2


# -- hostile text: written once, as the sheet can hold it -------------------------------------

HOSTILE = {"What happened": "left\x00right", "Immediate action": "tab\x0bbed\x1fend\ud800",
           "Contributing factors": "x" * 100_000, "Service": "\u202eשלום עולם",
           "Setting": "😀 ward", "Category": '=HYPERLINK("http://x","y")',
           "Reporter": "line\r\nbreak\rhere"}
SAFE = {"What happened": "left\ufffdright", "Immediate action": "tab\ufffdbed\ufffdend\ufffd",
        "Service": "\u202eשלום עולם", "Setting": "😀 ward",
        "Category": '=HYPERLINK("http://x","y")', "Reporter": "line\nbreak\nhere"}


def hostile_desired(**extra: str) -> pd.DataFrame:
    frame = pd.DataFrame([{"Report ID": "NM-000001", "Version": 1, **HOSTILE, **extra}])
    return frame.set_index("Report ID", drop=False)


def test_hostile_text_is_planned_as_the_sheet_holds_it_and_planned_once():
    write, added, _ = plan_sheet(read_sheet(REPORTS, None), hostile_desired(), {})
    line = dict(zip(HEADER, write.append[0], strict=True))
    assert added == ["NM-000001"]
    assert {k: line[k] for k in SAFE} == SAFE
    cut = line["Contributing factors"]
    assert len(cut) <= 32_767 and cut.endswith("[cut: 100,000 characters; the full text is "
                                               "in the store]")
    # The sheet now holds exactly what was written: a second run plans nothing.
    again, added, restored = plan_sheet(read_sheet(REPORTS, [HEADER, write.append[0]]),
                                        hostile_desired(), {})
    assert not again and added == [] and restored == []


def test_a_hostile_change_to_an_existing_row_is_written_once():
    sheet = [HEADER, row({"Report ID": "NM-000001", "Version": 1, "What happened": "old"})]
    write, _, _ = plan_sheet(read_sheet(REPORTS, sheet), hostile_desired(), {})
    col = HEADER.index("What happened") + 1
    assert write.cells[(2, col)] == "left\ufffdright"
    for (r, c), value in write.cells.items():
        sheet[r - 1][c - 1] = value
    again, _, _ = plan_sheet(read_sheet(REPORTS, sheet), hostile_desired(), {})
    assert not again


def test_a_restored_row_carries_safe_manager_values():
    manager = {"NM-000001": {"Outcome for reporter": "New check\x00 at handover"}}
    write, _, restored = plan_sheet(read_sheet(REPORTS, [HEADER]), hostile_desired(), manager)
    assert restored == ["NM-000001"]
    assert write.append[0][HEADER.index("Outcome for reporter")] == "New check\ufffd at handover"


# -- equal values are never changes ------------------------------------------------------------


def test_values_compare_as_the_sheet_gives_them_back():
    long = "NM-000001, " * 3000
    held = stored_text(long)
    assert held == cell_text(sheet_text(long)) and len(held) <= 32_767 and held != long.strip()
    assert stored_text("line\r\nbreak ") == "line\nbreak"
    assert stored_text(np.int64(3000)) == cell_text(3000.0) == "3000"  # calamine: floats
    assert stored_text(np.bool_(True)) == "TRUE" and stored_text(np.float64("nan")) == ""
    assert stored_text(pd.NaT) == stored_text(None) == ""


def test_a_pattern_whose_report_ids_pass_the_cell_limit_is_planned_once():
    desired = long_pattern_rows()
    first, added, _ = plan_sheet(read_sheet(PATTERNS, None), desired, {})
    assert added == ["PT-0001"]
    line = first.append[0]
    ids = line[PATTERNS.columns.index("Report IDs")]
    assert len(ids) == 32_767 and ids.endswith("[cut: 32,998 characters; the full text is in "
                                               "the store]")
    # The sheet holds what was written; the count reads back as a float from calamine.
    held = [v if not isinstance(v, int) else float(v) for v in line]
    again, added, restored = plan_sheet(read_sheet(PATTERNS, [PATTERNS.columns, held]),
                                        desired, {})
    assert not again and added == restored == []
    # A pattern that grew is written again, cut the same way.
    grown = desired.assign(**{"Report IDs": desired["Report IDs"] + ", NM-003001"})
    write, _, _ = plan_sheet(read_sheet(PATTERNS, [PATTERNS.columns, held]), grown, {})
    col = PATTERNS.columns.index("Report IDs") + 1
    assert list(write.cells) == [(2, col)] and "[cut: 33,009 characters" in write.cells[(2, col)]


# -- yearly archives ---------------------------------------------------------------------------

CLOSED = {"Triage status": "Closed", "Closed on": "2025-04-01",
          "Outcome for reporter": "Double signature on the MAR at handover"}


def closed_row(key: str, **extra) -> list:
    return row({"Report ID": key, "Version": 1, "Category": "Medication", **CLOSED, **extra})


def test_archive_sheets_are_named_by_year_and_found_as_spreadsheets_compare_names():
    assert REPORTS.archive(2025).title == "Reports 2025"
    assert REPORTS.archive(2025).columns == REPORTS.columns
    assert REPORTS.archive(2025).dropdowns == REPORTS.dropdowns
    assert not REPORTS.archive(2025).archives  # no archive of an archive
    assert REPORTS.archive_year("Reports 2025") == 2025
    assert REPORTS.archive_year("reports  2024") == 2024
    assert PATTERNS.archive_year("Patterns 2025") == 2025
    for other in ("Reports", "Reports 25", "Reports 2025 old", "Old Reports 2025",
                  "Patterns 2025"):
        assert REPORTS.archive_year(other) is None
    assert ACTIONS.archive_year("Actions 2025") is None  # actions are never archived


def test_read_states_includes_archives_and_family_orders_them_oldest_first():
    tables = {"Reports": [HEADER], "Reports 2025": [HEADER, closed_row("NM-000002")],
              "Reports 2024": [HEADER, closed_row("NM-000001")], "Notes 2025": [["x"]]}
    states = read_states([REPORTS, ACTIONS], tables)
    assert set(states) == {"Reports", "Actions", "Reports 2025", "Reports 2024"}
    assert not states["Actions"].exists
    assert [s.spec.title for s in family(states, REPORTS)] == [
        "Reports", "Reports 2024", "Reports 2025"]
    assert archived_in(family(states, REPORTS)) == {"NM-000001": 2024, "NM-000002": 2025}
    assert [s.spec.title for s in family(states, ACTIONS)] == ["Actions"]


def test_archive_targets_move_only_rows_closed_before_the_cutoff():
    closed = {"NM-1": date(2025, 4, 1), "NM-2": date(2026, 6, 1), "NM-3": None,
              "NM-4": date(2024, 12, 31), "NM-5": None, "NM-6": date(2026, 6, 1)}
    archived = {"NM-4": 2025, "NM-5": 2025, "NM-6": 2025}
    assert archive_targets(closed, archived, date(2025, 11, 23)) == {
        "NM-1": 2025,  # closed over the age: to the year it was closed
        "NM-4": 2024,  # its closing date corrected: to that year's archive
        "NM-6": 2025,  # closed again, recently: stays archived
    }  # NM-2 closed recently stays live; NM-3 open; NM-5 reopened: back to the live sheet
    assert archive_targets(closed, archived, None) == {"NM-4": 2025, "NM-6": 2025}


def test_a_row_closed_long_ago_moves_with_its_manager_values_and_own_columns():
    header = [*HEADER, "My notes"]
    live = read_sheet(REPORTS, [header, [*closed_row("NM-000001"), "called the pharmacy"],
                                [*row({"Report ID": "NM-000002", "Version": 1,
                                       "Category": "Medication"}), None]])
    plan = plan_family([live], desired({"Report ID": "NM-000001"},
                                       {"Report ID": "NM-000002", "Version": 2}),
                       {}, {"NM-000001", "NM-000002"}, {"NM-000001": 2025})
    assert plan.moved == [("NM-000001", "Reports", "Reports 2025")]
    assert plan.added == plan.restored == []
    live_write, archive = plan.writes
    assert live_write.delete_rows == [2] and not live_write.append
    assert live_write.cells == {(3, HEADER.index("Version") + 1): 2}  # rows as read
    assert archive.spec.title == "Reports 2025" and archive.create
    assert archive.header == {**dict(enumerate(HEADER, 1)), len(HEADER) + 1: "My notes"}
    line = dict(zip(archive.header.values(), archive.append[0], strict=True))
    assert {k: line[k] for k in CLOSED} == CLOSED
    assert line["Report ID"] == "NM-000001" and line["My notes"] == "called the pharmacy"


def applied(state_rows: dict[str, list[list]], writes: list[SheetWrite]) -> dict[str, list]:
    """What a tracker holds after `writes` (as the contract says: deletions last)."""
    out = {k: [list(r) for r in v] for k, v in state_rows.items()}
    for w in writes:
        rows = out.setdefault(w.spec.title, [])
        for col, title in w.header.items():
            if not rows:
                rows.append([])
            rows[0] += [None] * (col - len(rows[0]))
            rows[0][col - 1] = title
        for (r, c), value in w.cells.items():
            rows[r - 1] += [None] * (c - len(rows[r - 1]))
            rows[r - 1][c - 1] = value
        rows += [list(line) for line in w.append]
        for r in w.deleted():
            del rows[r - 1]
    return out


def test_an_archived_row_is_neither_restored_nor_archived_twice():
    tables = {"Reports": [HEADER, closed_row("NM-000001"),
                          row({"Report ID": "NM-000002", "Version": 1,
                               "Category": "Medication"})]}
    want = desired({"Report ID": "NM-000001"}, {"Report ID": "NM-000002"})
    known = {"NM-000001", "NM-000002"}
    manager = {"NM-000001": CLOSED}
    for _ in range(2):  # the first plan moves it, the second finds nothing to do
        states = read_states([REPORTS], tables)
        plan = plan_family(family(states, REPORTS), want, manager, known, {"NM-000001": 2025})
        tables = applied(tables, plan.writes)
    assert not any(plan.writes) and plan.moved == plan.restored == plan.added == []
    assert [r[0] for r in tables["Reports"]] == ["Report ID", "NM-000002"]
    assert [r[0] for r in tables["Reports 2025"]] == ["Report ID", "NM-000001"]


def test_a_reopened_row_moves_back_to_the_live_sheet():
    reopened = closed_row("NM-000001", **{"Triage status": "In review", "Closed on": None})
    states = read_states([REPORTS], {"Reports": [HEADER],
                                     "Reports 2025": [HEADER, reopened]})
    plan = plan_family(family(states, REPORTS), desired({"Report ID": "NM-000001"}), {},
                       {"NM-000001"}, {})
    assert plan.moved == [("NM-000001", "Reports 2025", "Reports")]
    live, archive = plan.writes
    assert archive.delete_rows == [2] and not archive.create
    line = dict(zip(HEADER, live.append[0], strict=True))
    assert line["Triage status"] == "In review" and line["Outcome for reporter"] == CLOSED[
        "Outcome for reporter"]


def test_a_key_in_the_live_sheet_and_an_archive_keeps_the_live_copy_once():
    """A copy left behind (a move the spreadsheet applied only in part, or a manager who
    copied the row back): the live copy's values count, and one row remains."""
    live_copy = closed_row("NM-000001", **{"Just-culture classification": "Human error"})
    tables = {"Reports": [HEADER, live_copy], "Reports 2025": [HEADER, closed_row("NM-000001")]}
    states = read_states([REPORTS], tables)
    merged, _ = manager_changes(states["Reports"], {}, family(states, REPORTS)[1:])
    assert merged["NM-000001"]["Just-culture classification"] == "Human error"
    plan = plan_family(family(states, REPORTS), desired({"Report ID": "NM-000001"}), merged,
                       {"NM-000001"}, {"NM-000001": 2025})
    after = applied(tables, plan.writes)
    assert [r[0] for r in after["Reports"]] == ["Report ID"]
    assert len(after["Reports 2025"]) == 2
    assert after["Reports 2025"][1][HEADER.index("Just-culture classification")] == "Human error"


def test_manager_edits_in_an_archive_are_seen_as_changes_to_the_report():
    edited = closed_row("NM-000001", **{"Just-culture classification": "Human error"})
    states = read_states([REPORTS], {"Reports": [HEADER], "Reports 2025": [HEADER, edited]})
    stored = {"NM-000001": dict(CLOSED)}
    merged, changes = manager_changes(states["Reports"], stored, family(states, REPORTS)[1:])
    assert [(c.sheet, c.key, c.column, c.old, c.new) for c in changes] == [
        ("Reports", "NM-000001", "Just-culture classification", "", "Human error")]
    assert merged["NM-000001"]["Outcome for reporter"] == CLOSED["Outcome for reporter"]


def test_system_cells_of_an_archived_row_are_updated_in_place():
    states = read_states([REPORTS], {"Reports": [HEADER],
                                     "Reports 2025": [HEADER, closed_row("NM-000001")]})
    plan = plan_family(family(states, REPORTS), desired({"Report ID": "NM-000001",
                                                         "Version": 2}),
                       {}, {"NM-000001"}, {"NM-000001": 2025})
    assert plan.moved == [] and not plan.writes[0]
    assert plan.writes[1].cells == {(2, HEADER.index("Version") + 1): 2}


def test_a_closed_pattern_moves_to_its_year_like_a_report():
    columns = PATTERNS.columns
    line = [{"Pattern ID": "PT-0001", "Review status": "Closed", "Closed on": "2025-05-02",
             "Review notes": "New handover checklist"}.get(c) for c in columns]
    states = read_states([PATTERNS], {"Patterns": [columns, line]})
    want = pd.DataFrame([{"Pattern ID": "PT-0001", "Status": "closed"}]).set_index(
        "Pattern ID", drop=False)
    plan = plan_family(family(states, PATTERNS), want, {}, {"PT-0001"}, {"PT-0001": 2025})
    assert plan.moved == [("PT-0001", "Patterns", "Patterns 2025")]
    moved = dict(zip(columns, plan.writes[1].append[0], strict=False))
    assert moved["Review notes"] == "New handover checklist" and moved["Status"] == "closed"


def test_deletions_merge_per_sheet():
    a = SheetWrite(spec=REPORTS, delete_rows=[3])
    b = SheetWrite(spec=REPORTS, delete_rows=[5, 3])
    (merged,) = merge_writes(a, b)
    assert merged.deleted() == [5, 3] and bool(SheetWrite(spec=REPORTS, delete_rows=[2]))
    assert SheetWrite(spec=REPORTS, delete_rows=[1, 0]).deleted() == []  # never the header


def test_a_copied_row_is_told_which_row_counts_once():
    first = row({"Report ID": "NM-000001", "Version": 1, "Category": "Medication",
                 "Triage status": "Triaged"})
    copy = row({"Report ID": "NM-000001", "Version": 1, "Category": "Medication",
                "Triage status": "Closed"})  # typed into the copy: not read
    state = read_sheet(REPORTS, [HEADER, first, copy])
    plan = plan_family([state], desired({"Report ID": "NM-000001"}), {})
    check = HEADER.index("Check") + 1
    note = plan.writes[0].cells[(3, check)]
    assert note.startswith("copy of NM-000001: row 2 is the one read")
    assert plan.copies == [("Reports", "NM-000001", 3, 2)]
    values, _ = manager_changes(state, {})
    assert values["NM-000001"]["Triage status"] == "Triaged"
    copy[check - 1] = note  # as the sheet now shows it: said once
    again = plan_family([read_sheet(REPORTS, [HEADER, first, copy])],
                        desired({"Report ID": "NM-000001"}), {})
    assert not again.writes[0] and again.copies == []


def test_a_deleted_row_comes_back_with_the_managers_own_columns():
    header = [*HEADER, "Follow-up call"]
    sheet = [header, [*row({"Report ID": "NM-000001", "Version": 1, "Category": "Medication",
                            "Triage status": "Triaged"}), "rang Kim on Tuesday"]]
    values, _ = manager_changes(read_sheet(REPORTS, sheet), {})
    assert values["NM-000001"]["Follow-up call"] == "rang Kim on Tuesday"
    state = read_sheet(REPORTS, [header])  # the manager deleted the row
    plan = plan_family([state], desired({"Report ID": "NM-000001"}), values, {"NM-000001"})
    assert plan.restored == ["NM-000001"]
    line = plan.writes[0].append[0]
    assert line[header.index("Triage status")] == "Triaged"
    assert line[header.index("Follow-up call")] == "rang Kim on Tuesday"
    emptied = [header, [*row({"Report ID": "NM-000001", "Version": 1}), ""]]
    again, _ = manager_changes(read_sheet(REPORTS, emptied), values)
    assert "Follow-up call" not in again["NM-000001"]  # cleared since: not brought back


@given(st.lists(st.one_of(st.none(), st.datetimes(min_value=datetime(1990, 1, 1),
                                                    max_value=datetime(2100, 1, 1))),
                max_size=20), st.booleans())
def test_times_made_text_for_a_whole_column_compare_as_each_would(values, to_minute):
    column = pd.Series(values, dtype="datetime64[us]")
    if to_minute:  # as the job writes them; others are left to stored_text
        column = column.dt.floor("min")
    for value, text in zip(column.astype(object).where(column.notna(), None),
                           tracker._minute_texts(column), strict=True):
        assert text is None or text == tracker.stored_text(value)
        assert text is not None or value.second or value.microsecond


@given(st.datetimes(min_value=datetime(1000, 1, 1)), st.booleans())
def test_a_time_is_the_text_its_sheet_shows(value, timestamp):
    cell = pd.Timestamp(value) if timestamp and value.year > 1677 and value.year < 2262 \
        else value
    midnight = value.hour == value.minute == value.second == value.microsecond == 0
    assert tracker.cell_text(cell) == (f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
                                       + ("" if midnight else
                                          f" {value.hour:02d}:{value.minute:02d}"))


# Cells as the trackers give them: openpyxl's and calamine's types, Sheets' text (dates at
# midnight as text), whitespace, control characters and the "N/A" managers type.
_CELLS = st.one_of(
    st.none(), st.just(""), st.text(max_size=8), st.sampled_from(
        [" N/A ", "\t", "2026-11-20 00:00", " 2026-11-20 00:00 ", "2026-11-20 00:00:00",
         "=SUM(A1)", "\x00", "at 00:00\n"]),
    st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=False),
    st.booleans(), st.dates(min_value=date(1000, 1, 1)),
    st.datetimes(min_value=datetime(1000, 1, 1)))


@given(st.lists(_CELLS, max_size=30))
def test_a_column_reads_as_each_of_its_cells_would(values):
    """`column_texts` skips the per-cell call for columns of one type: never the result."""
    assert tracker.column_texts(values) == [cell_text(v) for v in values]
    for kind in (str, int, float, datetime, date):  # each kind as a whole column of it
        alike = [v for v in values if type(v) is kind]
        assert tracker.column_texts(alike) == [cell_text(v) for v in alike]


@given(st.lists(st.datetimes(timezones=st.none() | st.timezones()), min_size=1, max_size=20))
def test_a_column_of_times_reads_as_each_of_its_times_would(values):
    """Midnight, seconds, microseconds, years before 1000 and time zones included."""
    assert tracker.column_texts(values) == [cell_text(v) for v in values]


@given(st.lists(st.dates() | st.datetimes(), min_size=1, max_size=20))
def test_a_column_of_times_and_days_reads_as_each_would(values):
    """As calamine gives a column of times: a time at midnight as its day (any year)."""
    assert tracker.column_texts(values) == [cell_text(v) for v in values]


@given(st.lists(st.floats() | st.sampled_from([1e20, 2.0**53, -0.0, 3.0]), min_size=1,
                max_size=20))
def test_a_column_of_numbers_reads_as_each_would(values):
    """As calamine gives every number: a float, whole or not, NaN and infinities too."""
    assert tracker.column_texts(values) == [cell_text(v) for v in values]


@given(st.lists(_CELLS, max_size=30))
def test_a_desired_column_compares_as_each_of_its_values_would(values):
    """`_plain_texts` passes text columns and whole numbers through as they are."""
    expected = [v if type(v) is str else "" if v is None else tracker.stored_text(v)
                for v in values]
    assert tracker._plain_texts(values) == expected
    numbers = [v for v in values if type(v) is int]
    assert tracker._plain_texts(numbers) == [tracker.stored_text(v) for v in numbers]


@given(st.lists(st.lists(_CELLS, max_size=len(HEADER) + 2), max_size=8))
def test_a_sheet_with_short_rows_reads_as_the_same_rows_padded(body):
    """Sheets leaves out a row's empty cells at its end; an Excel reader gives every cell."""
    rows = [HEADER, *body]
    width = max(map(len, rows))
    padded = [[*r, *[None] * (width - len(r))] for r in rows]
    short, full = read_sheet(REPORTS, rows), read_sheet(REPORTS, padded)
    assert (short.rows, short.values, short.unkeyed, short.duplicates) == (
        full.rows, full.values, full.unkeyed, full.duplicates)
    for key, values in short.values.items():
        assert values == {t: cell_text(body[short.rows[key] - 2][c - 1])
                          if c - 1 < len(body[short.rows[key] - 2]) else ""
                          for t, c in short.columns.items()}
