from datetime import date

import pandas as pd

from transforms.actions import (
    action_state,
    linked_ids,
    linked_members,
    parse_day,
    pattern_closures,
    report_closure,
)

TODAY = date(2026, 11, 25)


def test_parse_day_reads_what_spreadsheets_give():
    assert parse_day("2026-11-20") == date(2026, 11, 20)
    assert parse_day("20/11/2026") == date(2026, 11, 20)
    assert parse_day("03/04/2026", dayfirst=False) == date(2026, 3, 4)
    assert parse_day("next week") is None and parse_day("") is None


def test_report_closed_only_with_an_outcome_or_a_reason():
    ids = pd.Series(["NM-1", "NM-2", "NM-3", "NM-4", "NM-5"])
    manager = {
        "NM-1": {"Triage status": "Closed", "Closed on": "2026-11-24",
                 "Outcome for reporter": "New check"},
        "NM-2": {"Triage status": "Closed"},
        "NM-3": {"Closed on": "2026-11-24", "No further action reason": "Already fixed",
                 "Just-culture classification": "at-risk behaviour"},
        "NM-4": {"Closed on": "soon", "Outcome for reporter": "x"},
    }
    out = report_closure(manager, ids).set_index("report_id")
    assert out["closed"].to_dict() == {"NM-1": True, "NM-2": False, "NM-3": True,
                                       "NM-4": False, "NM-5": False}
    assert "closed without an outcome" in out.loc["NM-2", "check"]
    assert "'Closed on' is not a date" in out.loc["NM-4", "check"]
    assert out.loc["NM-1", "closed_on"] == date(2026, 11, 24)
    assert out.loc["NM-3", "suggested_response"].startswith("Supervision reinforcement")


def test_linked_ids_tolerate_how_people_type_them():
    assert linked_ids("NM-12, nm 000013 and PT-3") == (["NM-000012", "NM-000013"],
                                                      ["PT-0003"])


def actions(**rows: dict) -> dict[str, dict[str, str]]:
    return {aid: {"Action": "Add a reconciliation check at handover", **row}
            for aid, row in rows.items()}


def test_overdue_done_and_verification_overdue(tz):
    out = action_state(actions(**{
        "A-1": {"Due": "2026-11-20", "Status": "Open"},
        "A-2": {"Due": "2026-11-20", "Status": "Verified effective", "Verified on": "2026-11-21"},
        "A-3": {"Due": "2026-11-30", "Status": "in progress"},
        "A-4": {"Due": "2026-11-10", "Status": "Done - awaiting verification",
                "Verification due": "2026-11-24"},
    }), {}, TODAY, tz).set_index("action_id")
    assert out["overdue"].to_dict() == {"A-1": True, "A-2": False, "A-3": False, "A-4": False}
    assert out.loc["A-4", "verification_overdue"]
    assert out.loc["A-3", "status"] == "In progress"
    assert "overdue since 2026-11-20" in out.loc["A-1", "tracking"]


def test_not_effective_or_recurrence_after_verification_reopens(tz):
    members = {"PT-0001": (["NM-000001", "NM-000009"],
                           [pd.Timestamp("2026-11-01", tz="UTC"),
                            pd.Timestamp("2026-11-22 10:00", tz="UTC")])}
    out = action_state(actions(**{
        "A-1": {"Linked to": "PT-1", "Status": "Verified effective", "Verified on": "2026-11-20",
                "Due": "2026-11-15"},
        "A-2": {"Linked to": "PT-1", "Status": "Verified effective", "Verified on": "2026-11-23"},
        "A-3": {"Linked to": "NM-1", "Status": "Not effective", "Due": "2026-11-21"},
    }), members, TODAY, tz).set_index("action_id")
    assert "NM-000009 joined PT-0001 on 2026-11-22" in out.loc["A-1", "reopened"]
    assert not out.loc["A-1", "done"]  # reopened: treated as open again
    # ... and due again two weeks after it reopened, not overdue from its old due date
    assert out.loc["A-1", "reopened_on"] == date(2026, 11, 22)
    assert out.loc["A-1", "due_now"] == date(2026, 12, 6) and not out.loc["A-1", "overdue"]
    assert out.loc["A-2", "reopened"] == ""
    assert out.loc["A-3", "reopened"] == "verification found it not effective"
    later = action_state(actions(**{
        "A-1": {"Linked to": "PT-1", "Status": "Verified effective", "Verified on": "2026-11-20",
                "Due": "2026-11-15"},
        "A-4": {"Linked to": "NM-1", "Status": "Not effective", "Verified on": "2026-11-10",
                "Due": "2026-12-20"}}), members, date(2026, 12, 9), tz).set_index("action_id")
    assert later.loc["A-1", "overdue"] and "overdue since 2026-12-06" in later.loc[
        "A-1", "tracking"]
    assert later.loc["A-4", "due_now"] == date(2026, 12, 20)  # a later due a manager set


def test_members_are_made_for_the_patterns_an_action_links_to(tz):
    """Those alone (a long history has thousands); a member the reports lack has no time,
    and a verification's reopening test passes over it."""
    manager = actions(**{"A-1": {"Linked to": "PT-1, NM-4", "Status": "Verified effective",
                                 "Verified on": "2026-11-20"},
                         "A-2": {"Linked to": "\x00 n/a ", "Status": "Open"}})
    occurred = pd.Series(pd.to_datetime(["2026-11-01 08:00", "2026-11-22 10:00"], utc=True),
                         index=["NM-000001", "NM-000009"])
    members = linked_members(manager, [("PT-0001", ["NM-000001", "NM-000009", "NM-000404"]),
                                       ("PT-0002", ["NM-000001"])], occurred)
    assert list(members) == ["PT-0001"]
    ids, times = members["PT-0001"]
    assert ids == ["NM-000001", "NM-000009", "NM-000404"] and pd.isna(times[2])
    out = action_state(manager, members, TODAY, tz).set_index("action_id")
    assert "NM-000009 joined PT-0001 on 2026-11-22" in out.loc["A-1", "reopened"]


def test_reminders_alone_are_pointed_out(tz):
    out = action_state(actions(**{"A-1": {"Action": "Reminded staff to check the MAR"},
                                  "A-2": {"Action": "Reminder added to the handover checklist"}}),
                       {}, TODAY, tz).set_index("action_id")
    assert "rarely a control" in out.loc["A-1", "tracking"]
    assert "rarely a control" not in out.loc["A-2", "tracking"]


def test_pattern_closed_by_review_or_by_a_verified_action(tz):
    acts = actions(**{"A-1": {"Linked to": "PT-2", "Status": "verified EFFECTIVE",
                              "Verified on": "2026-11-20"},
                      "A-2": {"Linked to": "PT-3", "Status": "Done - awaiting verification",
                              "Verified on": "2026-11-20"}})
    out = pattern_closures({"PT-0001": {"Review status": "Closed", "Closed on": "2026-11-18"},
                            "PT-0003": {"Review status": "Under review"}}, acts, tz)
    closed = dict(zip(out["pattern_id"], out["closed_at"], strict=True))
    assert set(closed) == {"PT-0001", "PT-0002"}
    # a date typed by a manager means the whole of that local day
    assert closed["PT-0001"] == pd.Timestamp("2026-11-18 23:59:59.999999", tz="UTC")
