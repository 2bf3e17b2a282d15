
import numpy as np
import pandas as pd

from domain.text import sheet_text
from tests.fakes.patterns import long_pattern_rows
from transforms.tracker import (
    ACTIONS,
    PATTERNS,
    REPORTS,
    assign_ids,
    cell_text,
    manager_changes,
    merge_writes,
    plan_sheet,
    read_sheet,
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
