"""Synthetic near-miss submissions, written as Google Forms and Microsoft Forms exports.

Two uses:
- `generate_reports` / `generate_exports`: any number of realistic, seeded submissions for
  tests and benchmarks (100k reports in well under a minute);
- `write_samples`: the curated demo set shipped in config/samples/, with scripted situations
  taken from the source articles (a repeat pattern, incomplete reports and a follow-up that
  completes one, a same-day safeguarding concern, an edited response, anonymous reports),
  kept as data in bench/sample_situations.yaml.

A generated report is a flat dict: question title (exactly as in config/demo.yaml
`mapping`) -> answer, plus the metadata keys in `META_KEYS`. Answers are typed so that each
writer can format them the way its platform does: choice answers are the option label text
("Mealtime / nutrition"), multi-select answers a list of labels, "When did it happen?" a
naive local `datetime`, time questions a `time`, everything else `str`. Unanswered questions
are absent.

    python bench/generate.py --reports 100000 --out /tmp/nm [--seed 7]
    python bench/generate.py --samples config/samples
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import random
import sys
import time as clock
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

if __package__ in (None, ""):  # run as `python bench/generate.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from openpyxl import Workbook

import config
from config import load_config

TZ = ZoneInfo("Europe/London")
DEMO_CONFIG = Path(config.__file__).resolve().parent / "demo.yaml"
GOOGLE_SOURCE = "google-form"  # source names as in config/demo.yaml: they order report ids
MICROSOFT_SOURCE = "microsoft-form"
GOOGLE_FILE = "near-miss-google-form.csv"
MICROSOFT_FILE = "near-miss-microsoft-form.xlsx"
EMAIL_DOMAIN = "oakfield-care.example"
SAMPLE_START = date(2026, 9, 7)
SAMPLE_END = date(2026, 11, 20)

# Metadata carried next to the answers of a generated report.
SOURCE = "source"  # GOOGLE_SOURCE or MICROSOFT_SOURCE
SUBMITTED = "submitted_at"  # naive local datetime: Google Timestamp / Microsoft Completion time
STARTED = "started_at"  # naive local datetime: Microsoft Start time
EDITED = "edited_at"  # naive local datetime of a later edit (Microsoft Last modified time)
REPORTER = "reporter"  # the reporter's name, None when anonymous
EMAIL = "email"  # the address the platform recorded (Google Email Address, Microsoft Email)
ANONYMOUS = "anonymous"
TAG = "tag"  # name of a scripted sample situation, None for background reports
META_KEYS = (SOURCE, SUBMITTED, STARTED, EDITED, REPORTER, EMAIL, ANONYMOUS, TAG)

GOOGLE_META = ("Timestamp", "Email Address")
MICROSOFT_META = ("ID", "Start time", "Completion time", "Email", "Name", "Last modified time")


# -- the form: question titles and option labels, read from the shipped configuration ----------


@dataclass(frozen=True)
class _Form:
    titles: dict[str, str]  # report field -> question title, in form order
    types: dict[str, str]  # report field -> field type of the rules file
    labels: dict[str, dict[str, str]]  # report field -> option key -> label
    required: dict[str, tuple[str, ...]]  # category -> required fields beyond the minimum
    minimum: tuple[str, ...]
    repeats: tuple[tuple[str, tuple[str, ...], int, float], ...]  # id, key, threshold, days


@cache
def _form() -> _Form:
    cfg = load_config(DEMO_CONFIG)
    rules = cfg.rules
    titles = {f: q for q, f in cfg.settings.mapping.items() if f != "ignore"}
    required: dict[str, tuple[str, ...]] = {}
    minimum: tuple[str, ...] = ()
    for req in rules.required:
        if not req.when:
            minimum = tuple(req.fields)
        elif len(req.when) == 1 and req.when[0].fields == ["category"] and req.when[0].equals:
            required[req.when[0].equals] = tuple(f for f in req.fields if f not in minimum)
    return _Form(
        titles=titles,
        types={f: rules.fields[f].type for f in titles},
        labels={f: rules.choices(f) for f in titles},
        required=required,
        minimum=minimum,
        repeats=tuple((r.id, tuple(r.key), r.threshold, r.window_days) for r in rules.repeats),
    )


def question_titles() -> list[str]:
    """Every question of the demo forms, in form order (the export columns after metadata)."""
    return list(_form().titles.values())


def title(field_name: str) -> str:
    """The question title that asks for a report field."""
    return _form().titles[field_name]


# -- services, people and staff -------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    name: str
    prefix: str  # of the person references, e.g. OH-014
    base: str  # the setting key where support is usually given
    settings: tuple[str, ...]
    hours: tuple[int, int]  # first and last hour of the day staff are working
    weight: float
    weekdays_only: bool = False


SERVICES = (
    Service("Oak House", "OH", "residential", ("residential", "community", "vehicle"),
            (0, 23), 0.24),
    Service("Riverside Supported Living", "RS", "supported_living",
            ("supported_living", "community", "vehicle"), (0, 23), 0.22),
    Service("Northgate Home Care", "NG", "home_visit", ("home_visit", "community", "vehicle"),
            (7, 22), 0.24),
    Service("Elm Court Day Service", "EC", "day_service", ("day_service", "community", "vehicle"),
            (8, 16), 0.15, weekdays_only=True),
    Service("Community Outreach East", "CO", "community", ("community", "home_visit", "vehicle"),
            (8, 20), 0.15),
)
_SERVICE = {s.name: s for s in SERVICES}


def _in_hours(service: Service, hour: int) -> bool:
    first, last = service.hours
    return first <= hour <= last

CATEGORY_WEIGHTS = {
    "medication": 0.22, "transport": 0.11, "mealtime": 0.12, "escalation": 0.10,
    "safeguarding": 0.07, "environment": 0.14, "behaviour": 0.13, "workflow": 0.11,
}
HARM_LEVELS = ("none", "low", "moderate", "severe", "catastrophic")
DEFAULT_HARM = (0.1, 0.5, 0.34, 0.055, 0.005)

_FIRST = ("Priya", "Tom", "Grace", "Liam", "Aisha", "Dan", "Sophie", "Marek", "Chloe", "Femi",
          "Hannah", "Rhys", "Joanne", "Sam", "Ewa", "Nadia", "Gareth", "Becky", "Kwame", "Lucy",
          "Owen", "Zara", "Callum", "Mandeep", "Ruth", "Adeel", "Kirsty", "Bogdan", "Siobhan",
          "Jordan", "Amara", "Ian", "Leanne", "Tariq", "Megan", "Stuart")
_LAST = ("Shah", "Hughes", "Okafor", "Murphy", "Begum", "Whitfield", "Clarke", "Nowak", "Evans",
         "Adeyemi", "Price", "Morgan", "Kerr", "Patel", "Kowalska", "Hussain", "Lloyd", "Turner",
         "Mensah", "Bennett", "Doyle", "Ahmed", "Fraser", "Kaur", "Walsh", "Iqbal", "Reid",
         "Popescu", "Gallagher", "Brooks")
_LETTERS = "ABCDEFGHJKLMNPRSTWY"
# Initials that read as words in free text ("NO was about to...") are not used.
_WORDISH = frozenset({"AM", "AN", "AS", "AT", "BE", "BY", "DO", "GO", "HE", "IF", "IN", "IS", "IT",
                      "ME", "MY", "NO", "OF", "OK", "ON", "OR", "PM", "SO", "TO", "UP", "US", "WE"})


@dataclass(frozen=True)
class Staff:
    name: str
    initials: str
    email: str


def _staff(name: str) -> Staff:
    first, last = name.split(" ", 1)
    return Staff(name, first[0] + last[0], f"{first.lower()}.{last.lower()}@{EMAIL_DOMAIN}")


@cache
def _roster(service: str, size: int = 24) -> tuple[Staff, ...]:
    """A service's staff team: the same fictional people for every seed."""
    rng = random.Random(f"roster:{service}")
    names: list[str] = []
    while len(names) < size:
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        if name not in names and _staff(name).initials not in _WORDISH:
            names.append(name)
    return tuple(_staff(n) for n in names)


# -- what happened: scenario templates per category, after the source articles --------------

_MEDS = ("Amlodipine 5mg", "Sodium valproate 500mg", "Levetiracetam 750mg", "Metformin 500mg",
         "Sertraline 100mg", "Risperidone 1mg", "Lansoprazole 30mg", "Paracetamol 1g",
         "Warfarin (dose per INR chart)", "Quetiapine 25mg", "Lamotrigine 100mg",
         "Furosemide 40mg", "Donepezil 10mg", "Laxido sachet", "Apixaban 5mg",
         "Levothyroxine 75 micrograms", "Carbamazepine 200mg", "Co-careldopa 25/100",
         "Oxybutynin 5mg", "Atorvastatin 20mg")
_DUE = ((8, 0), (9, 0), (12, 0), (13, 0), (17, 0), (18, 0), (20, 0), (21, 0), (22, 0))
_DESTS = ("the dentist", "the GP surgery", "outpatients at the General", "the eye clinic",
          "physio at the health centre", "college", "swimming at the leisure centre",
          "the dialysis unit", "a benefits assessment", "the memory clinic", "the hearing clinic",
          "the bowling club", "work experience at the garden centre")
_PLACES = ("the retail park", "the town centre", "the library", "the park café", "the market",
           "the bus station", "the leisure centre", "the garden centre", "the cinema",
           "the seafront", "the shopping centre")
_SYSTEMS = ("Rota app", "Electronic care record app", "Paper handover sheet", "Shared team diary",
            "Call monitoring system", "eMAR tablet", "Office scheduling system")


@dataclass(frozen=True)
class Scenario:
    """One kind of near miss: when and where it tends to happen and how staff describe it.

    `fields` maps a report field to alternative templates (one is picked) formatted with the
    report's context: {p} person; {s1} (the reporter), {s2}, {s3} staff initials; {ag} an
    agency worker; {med}, {due}, {appt}, {dest}, {place}, {mins}, {ref}, {system}, {day}; and
    the scenario's own `extra` picks (a dict option adds all its keys). Choice fields are given
    as option keys.
    """

    name: str
    category: str
    fields: dict[str, tuple[str, ...]]
    factors: tuple[str, ...]  # most likely first
    stages: tuple[str, ...]
    hours: tuple[int, ...] = ()  # typical hours; () = the service's whole day
    anchor: str | None = None  # "due" (medication round) or "appt" (appointment)
    settings: tuple[str, ...] = ("base",)  # "base" = the service's own setting
    harm: tuple[float, ...] = DEFAULT_HARM
    extra: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    services: tuple[str, ...] = ()  # person-reference prefixes of the services it fits; () = all

    def fits(self, service: Service) -> bool:
        """Whether it can happen at `service` (its kind of support and working hours)."""
        if self.services and service.prefix not in self.services:
            return False
        if self.anchor == "due":
            return any(_in_hours(service, h) for h, _ in self.extra.get("due_override", _DUE))
        return not self.hours or any(_in_hours(service, h) for h in self.hours)


S = Scenario
SCENARIOS: tuple[Scenario, ...] = (
    # -- medication ---------------------------------------------------------------------------
    S("mar-blister-mismatch", "medication", anchor="due", factors=(
        "pharmacy", "documentation", "communication", "handover"), stages=("preparation",),
      fields={
        "description": (
            "Preparing the {due} meds for {p} I noticed the MAR and the blister pack label did "
            "not match: the MAR says {med} but the new pack from the pharmacy has a different "
            "strength on it. I stopped and did not give the dose.",
            "Blister pack label for {p}'s {med} didn't match the MAR chart at the {due} round. "
            "Looks like a prescriber change went to the pharmacy but the MAR wasn't updated. "
            "Dose held until checked.",
            "At the {due} round the pharmacy label on {p}'s {med} showed a different dose from "
            "the printed MAR. Paused and followed stop and check.",
        ),
        "immediate_action": (
            "Held the dose, rang the on-call senior and the pharmacy to confirm the current "
            "prescription, then gave the correct dose {mins} minutes late.",
            "Did not give it. Phoned the on-call nurse, who checked the GP record and confirmed "
            "the dose. MAR annotated and countersigned, handover book updated.",
            "Held the dose and called the on-call manager; the pharmacy confirmed the new "
            "strength and the MAR was corrected with two signatures.",
        ),
        "conditions": (
            "New prescription came in the monthly delivery but nobody reconciled the MAR "
            "against it.",
            "The dose was changed after a hospital appointment and the change only reached the "
            "pharmacy, not the team.",
            "The pharmacy substituted a different strength and our MAR print-out was from last "
            "month.",
        ),
        "record_discrepancy": (
            "MAR showed the previous dose; blister pack label showed the new strength.",
            "Pack label and MAR disagree on the strength of {med}.",
            "MAR not updated after the prescriber change; pack label correct.",
        ),
        "clinical_advice": ("sought", "sought", "not_required"),
        "supervisor_notified": ("yes", "yes", "yes", "no"),
    }),
    S("duplicate-signature", "medication", anchor="due", factors=(
        "documentation", "time_pressure", "environment", "handover"), stages=("recording",),
      fields={
        "description": (
            "Went to give {p} the {due} {med} and found the MAR already signed for that time, "
            "but the tablets were still in the blister. Whoever came next could have given a "
            "second dose or skipped it.",
            "{p}'s MAR had initials in the {due} box for {med} but the pod was still sealed. "
            "{s2} had signed in the wrong box – it was meant for the earlier dose.",
            "Found two sets of initials for {p}'s {med} in the {due} slot. The pack count showed "
            "only one dose given. Stopped before giving another.",
        ),
        "immediate_action": (
            "Counted the stock with a second member of staff, confirmed the dose had not been "
            "given, gave it and wrote a dated late entry. Told the shift lead.",
            "Stock count with {s2}, rang the on-call senior, corrected the record with a "
            "signed and dated note.",
        ),
        "conditions": (
            "Signing is done at the end of the round instead of at the point of giving.",
            "Interrupted during the round by the phone and the doorbell.",
            "The MAR has two similar rows for the same medicine at different times.",
        ),
        "record_discrepancy": (
            "MAR signed for the {due} dose but the dose was still in the pack.",
            "Duplicate signature in the {due} slot; stock count showed one dose given.",
            "Signature in the wrong time box for {med}.",
        ),
        "clinical_advice": ("not_required", "not_required", "sought"),
        "supervisor_notified": ("yes", "yes", "no"),
    }),
    S("late-dose-handover", "medication", services=("OH", "RS"), anchor="due", factors=(
        "handover", "staffing", "time_pressure", "scheduling"), stages=("handover", "delivery"),
      extra={"due_override": ((8, 0), (20, 0), (21, 0), (22, 0))},
      fields={
        "description": (
            "{p}'s {due} {med} was nearly missed: handover ran over and the round started "
            "{mins} minutes late. Picked up when I checked the MAR against the list.",
            "The {due} dose of {med} for {p} wasn't on the handover sheet and I only saw it "
            "during the final MAR check. Given {mins} minutes late.",
            "Time-critical {med} for {p} due at {due} almost missed because the round was split "
            "between two staff and each thought the other had done it.",
        ),
        "immediate_action": (
            "Gave the dose as soon as it was spotted after checking the timing with the "
            "on-call senior; recorded the actual time.",
            "Rang the on-call pharmacist to check it was safe to give late, then gave it and "
            "logged the time.",
            "Checked with the senior it was still within the safe window, gave it and recorded.",
        ),
        "conditions": (
            "Handover was rushed because two staff left early, and the sheet doesn't list "
            "time-critical medicines.",
            "One fewer staff on shift than the rota planned, so the round started late.",
            "Two people doing the round with no clear split of who gives what.",
        ),
        "record_discrepancy": (
            "MAR unsigned at {due}; dose still in the pack.",
            "Handover sheet did not mention the {due} dose.",
            "Dose given {mins} minutes after the scheduled time.",
        ),
        "clinical_advice": ("sought", "not_required"),
        "supervisor_notified": ("yes", "yes", "no"),
    }),
    S("stock-running-out", "medication", anchor="due", factors=(
        "pharmacy", "scheduling", "communication"), stages=("planning",),
      harm=(0.1, 0.55, 0.3, 0.05, 0.0),
      fields={
        "description": (
            "Only two doses of {p}'s {med} left in the cupboard at the {due} round and the "
            "repeat prescription had not been ordered.",
            "Went to give {p} their {med} and found the box nearly empty with no new supply in "
            "the delivery. It would have run out by tomorrow morning.",
            "The pharmacy delivery was missing {p}'s {med}; noticed at the {due} round with one "
            "dose left.",
        ),
        "immediate_action": (
            "Rang the GP surgery and the pharmacy for an urgent supply; the pharmacy is "
            "delivering before the next dose. Told the shift lead.",
            "Ordered an emergency supply through the pharmacy and arranged for {s2} to collect "
            "it before the morning round.",
        ),
        "conditions": (
            "Repeat ordering is done by one person, who was on leave.",
            "The delivery sheet wasn't checked against the order when it arrived.",
            "The medicine was changed mid-cycle so quantities were out of step with the "
            "28-day order.",
        ),
        "record_discrepancy": (
            "Stock balance on the MAR didn't match what was in the cupboard.",
            "Delivery sheet listed {med} but it wasn't in the bag.",
            "No record of the repeat order being sent.",
        ),
        "clinical_advice": ("not_required", "not_required", "sought"),
        "supervisor_notified": ("yes", "no"),
    }),
    S("discharge-reconciliation", "medication", anchor="due", factors=(
        "communication", "documentation", "pharmacy", "handover"),
      stages=("transition", "preparation"), harm=(0.02, 0.3, 0.5, 0.17, 0.01),
      fields={
        "description": (
            "{p} came back from hospital yesterday. The discharge letter says {med} was stopped "
            "but it's still in the blister pack and on the MAR. Spotted before the {due} round.",
            "{p}'s discharge summary changed the dose of {med} but the MAR and pack we had were "
            "the old ones. {s2} noticed when reading the letter at handover.",
        ),
        "immediate_action": (
            "Did not give {med}. Rang the ward pharmacist and the GP to confirm; MAR annotated "
            "and the pharmacy asked for a new pack.",
            "Held the changed medicine, confirmed with the discharging ward by phone and "
            "updated the MAR with a second signature.",
        ),
        "conditions": (
            "The discharge letter came in the taxi with {p} and wasn't read until the next day.",
            "There is no step to reconcile medicines after a hospital discharge.",
            "Weekend discharge and no pharmacy available until Monday.",
        ),
        "record_discrepancy": (
            "MAR still listed {med}, which the discharge letter stopped.",
            "Discharge summary dose differed from the MAR and the pack.",
        ),
        "clinical_advice": ("sought", "sought", "sought", "not_available"),
        "supervisor_notified": ("yes",),
    }),
    S("wrong-mar-page", "medication", services=("OH", "RS", "EC"), anchor="due", factors=(
        "environment", "time_pressure", "documentation"), stages=("delivery",),
      fields={
        "description": (
            "The MAR folder was open at someone else's page when I started {p}'s {due} meds. "
            "I noticed at the photo check before popping anything out.",
            "Two people with similar initials on the {due} round and their pots were prepared "
            "side by side. Realised the pot in my hand was labelled for someone else before "
            "giving it to {p}.",
        ),
        "immediate_action": (
            "Put the pot back, started again with the right MAR and photo, checked with {s2}.",
            "Stopped, returned the medicines, re-checked identity and MAR, then gave {p} the "
            "right medicines.",
        ),
        "conditions": (
            "The medicines room is tiny and pots get prepared together to save time.",
            "Photos in the MAR folder are out of date.",
            "Round interrupted by a call bell halfway through.",
        ),
        "record_discrepancy": (
            "MAR open at the wrong person's page.",
            "Pot labelled for another person.",
        ),
        "clinical_advice": ("not_required",),
        "supervisor_notified": ("yes", "no"),
    }),
    # -- transport ----------------------------------------------------------------------------
    S("pickup-changed", "transport", services=("NG", "CO", "RS"), anchor="appt", factors=(
        "communication", "scheduling", "time_pressure"), stages=("planning",),
      settings=("base", "vehicle"),
      fields={
        "description": (
            "{p}'s pickup for {dest} was brought forward by {mins} minutes but our visit "
            "schedule still had the old time. I only knew because {s2} texted me.",
            "The transport company changed the pickup time for {p}'s {appt} appointment at "
            "{dest} and told one carer's mobile, not the office. Got there with five minutes "
            "to spare.",
            "Turned up for {p}'s call to find the minibus already outside – pickup for {dest} "
            "had been moved earlier and nobody updated the rota.",
        ),
        "immediate_action": (
            "Helped {p} get ready quickly and safely, rang transport to hold for ten minutes.",
            "Went straight there, rang the office to move my next call and confirmed the new "
            "pickup with the driver.",
        ),
        "conditions": (
            "Transport changes go to whichever worker the company has a number for, not "
            "through the office.",
            "Nobody checks transport bookings against the rota.",
            "The scheduling system has nowhere to record pickup times.",
        ),
        "transport_change": (
            "Pickup brought forward by {mins} minutes; visit time not changed.",
            "Pickup time changed by the transport provider; rota not updated.",
        ),
        "staffing_allocation": (
            "{s1} on the call before pickup, coming straight from another call.",
            "{s1} allocated a 30-minute call before pickup with 20 minutes' travel.",
            "Single carer {s1}; second worker not free until later.",
        ),
        "person_impact": (
            "Nearly missed {dest}; would have gone without support to get ready.",
            "Rushed getting ready and anxious, but made it on time.",
            "Could have missed the appointment and waited weeks for another.",
        ),
        "communication_source": (
            "Text from a colleague ({s2}).",
            "The driver phoned my personal mobile.",
            "A family member mentioned it at the door.",
            "Message left on the office answerphone the night before and not passed on.",
        ),
        "immediate_mitigation": (
            "Swapped two calls with {s2} so I could get there early.",
            "Office moved my next visit back 30 minutes.",
            "Rang the transport provider to confirm the new time and asked them to wait.",
        ),
        "case_manager_notified": ("yes", "no", "no"),
    }),
    S("seating-exit-risk", "transport", anchor="appt", factors=(
        "unclear_guidance", "time_pressure", "equipment"), stages=("transition",),
      settings=("vehicle",), harm=(0.02, 0.28, 0.5, 0.19, 0.01),
      fields={
        "description": (
            "On the way to {dest} I realised {p} was sat next to the sliding door at a busy "
            "drop-off, and {p} has a history of leaving without staff. The child lock wasn't "
            "on.",
            "Minibus to {dest}: {p} was seated by the door instead of behind the driver as the "
            "risk plan says. Noticed when {p} tried the handle at the lights.",
        ),
        "immediate_action": (
            "Pulled over when safe, changed the seating and put the child lock on.",
            "Swapped seats so I was next to {p}, child lock on, and agreed a quieter drop-off "
            "point with the venue.",
        ),
        "conditions": (
            "Pre-transport checks don't include each person's risk plan.",
            "Rushed departure because the vehicle arrived late.",
            "Replacement vehicle with a different layout and no seating plan.",
        ),
        "transport_change": (
            "Usual minibus off the road; replacement vehicle with a different layout.",
            "Seating plan not followed on the day.",
        ),
        "staffing_allocation": (
            "Driver plus {s1}; the plan says the escort sits beside {p}.",
            "{s1} driving, {s2} escorting three people.",
        ),
        "person_impact": (
            "Risk of {p} leaving the vehicle at a busy drop-off.",
            "{p} could have got out into traffic.",
        ),
        "communication_source": (
            "Noticed myself during the journey.",
            "Risk plan kept in the vehicle folder, not mentioned at handover.",
        ),
        "immediate_mitigation": (
            "Seating changed and child lock on before moving off again.",
            "Agreed a quieter drop-off point and walked {p} in.",
        ),
        "case_manager_notified": ("yes", "no"),
    }),
    S("escort-not-allocated", "transport", anchor="appt", factors=(
        "staffing", "scheduling", "communication"), stages=("planning",),
      fields={
        "description": (
            "Hospital transport was booked for {p}'s {appt} appointment at {dest} but nobody "
            "was on the rota to go with them. Found out at the morning handover.",
            "{p} needs two staff at appointments but only one was allocated for {dest} at "
            "{appt}.",
        ),
        "immediate_action": (
            "The shift lead came in early to escort; appointment kept.",
            "Booked agency worker {ag} and briefed them on {p}'s plan before they left.",
        ),
        "conditions": (
            "The appointment letter was on the fridge, not on the rota.",
            "The hospital rang the service phone and the message went in the diary only.",
        ),
        "transport_change": (
            "No change to the transport; escort missing from the plan.",
            "Appointment moved by the hospital; rota not changed.",
        ),
        "staffing_allocation": ("No escort allocated.", "{s1} only; plan requires two."),
        "person_impact": (
            "Would have missed {dest} or gone without the support in the plan.",
            "Risk of {p} becoming distressed at the hospital without familiar staff.",
        ),
        "communication_source": (
            "Appointment letter found at handover.",
            "Hospital phoned the service.",
        ),
        "immediate_mitigation": (
            "Shift lead escorted; rota corrected for next time.",
            "Agency worker {ag} covered with a briefing from {s2}.",
        ),
        "case_manager_notified": ("yes", "no"),
    }),
    S("wheelchair-restraint", "transport", services=("OH", "RS", "EC"), anchor="appt", factors=(
        "equipment", "time_pressure"), stages=("transition",), settings=("vehicle",),
      harm=(0.02, 0.35, 0.45, 0.17, 0.01),
      fields={
        "description": (
            "Before setting off for {dest} I found one of the wheelchair tie-down straps "
            "missing from the minibus. {p} was already on the tail lift.",
            "The lap belt on the wheelchair clamp wouldn't lock for {p} on the way to {dest}.",
        ),
        "immediate_action": (
            "Did not travel until a spare strap was fetched from the other vehicle.",
            "Stopped and rebooked a wheelchair-accessible taxi.",
        ),
        "conditions": (
            "The vehicle was swapped at short notice and nobody did the equipment check.",
            "The driver's daily check sheet hadn't been filled in.",
        ),
        "transport_change": (
            "Vehicle swapped at short notice.",
            "No change to the booking; vehicle defect.",
        ),
        "staffing_allocation": ("{s1} driving, {s2} escort.", "{s1} driving alone with {p}."),
        "person_impact": (
            "Could have travelled unrestrained.",
            "Delayed 25 minutes and arrived late to {dest}.",
        ),
        "communication_source": ("Vehicle check at departure.", "Noticed at the tail lift."),
        "immediate_mitigation": (
            "Spare strap fitted and checked before moving off.",
            "Taxi booked and the appointment told we would be late.",
        ),
        "case_manager_notified": ("no", "no", "yes"),
    }),
    S("taxi-wrong-details", "transport", anchor="appt", factors=(
        "communication", "documentation", "scheduling"), stages=("planning", "transition"),
      settings=("base", "vehicle"),
      fields={
        "description": (
            "The taxi firm had {p}'s trip to {dest} booked for tomorrow. We only found out when "
            "ringing to confirm at the start of the shift.",
            "Taxi went to {p}'s old address after the move; the driver rang the office just "
            "before the {appt} appointment.",
        ),
        "immediate_action": (
            "Rebooked with another firm and rang {dest} to say we might be ten minutes late.",
            "Gave the driver the right address and rang ahead to the appointment.",
        ),
        "conditions": (
            "Bookings are made by phone with no written confirmation back.",
            "The address change wasn't passed on to the taxi account.",
        ),
        "transport_change": ("Booking on the wrong date.", "Pickup address out of date."),
        "staffing_allocation": ("{s1} on the morning, escorting.", "{s1} and {s2}."),
        "person_impact": (
            "Nearly missed {dest}.",
            "Waited 40 minutes in coat and shoes and got upset.",
        ),
        "communication_source": ("Confirmation call to the taxi firm.", "Driver rang the office."),
        "immediate_mitigation": (
            "Alternative taxi booked; appointment told.",
            "Driver redirected; appointment warned of a short delay.",
        ),
        "case_manager_notified": ("no", "yes"),
    }),
    # -- mealtime / nutrition -----------------------------------------------------------------
    S("wrong-texture", "mealtime", services=("OH", "RS", "EC"), hours=(12, 13, 17, 18), factors=(
        "new_agency_staff", "training", "time_pressure", "unclear_guidance"),
      stages=("preparation",), harm=(0.02, 0.3, 0.48, 0.19, 0.01),
      extra={"tex": (
          {"lvl": "level_6", "lvl_text": "Level 6 Soft & bite-sized", "wrong": "regular"},
          {"lvl": "level_5", "lvl_text": "Level 5 Minced & moist",
           "wrong": "soft & bite-sized"},
          {"lvl": "level_4", "lvl_text": "Level 4 Pureed", "wrong": "minced"},
      )},
      fields={
        "description": (
            "A new staff member plated {p}'s meal as {wrong} instead of {lvl_text}. {s2} "
            "spotted it before it went to the table.",
            "{p}'s meal was prepared at the wrong texture ({wrong}); their plan says "
            "{lvl_text}. Caught at the serving hatch.",
            "{p}'s dinner had been mashed with a fork but not to {lvl_text} – lumps left in. "
            "Checked it with the fork test before serving and it failed.",
        ),
        "immediate_action": (
            "Took the plate back and had the meal re-made to {lvl_text} before serving.",
            "Swapped for a {lvl_text} meal from the freezer stock and stayed with {p} while "
            "eating.",
        ),
        "conditions": (
            "The kitchen texture chart wasn't updated after the last SALT review.",
            "New staff get no mealtime induction before working in the kitchen.",
            "Busy lunch with two people off sick.",
        ),
        "dietary_requirement": (
            "{lvl_text} after SALT assessment; choking risk.",
            "Modified texture ({lvl_text}) and supervised meals.",
        ),
        "texture_level": ("{lvl}",),
        "staff_preparing": ("{ag} (agency)", "{s1} (new starter)", "{s1}"),
        "staff_identifying": ("{s2}", "{s2} (senior)"),
        "immediate_correction": (
            "Meal re-made to {lvl_text} and checked before serving.",
            "Replaced with a pre-prepared {lvl_text} meal.",
        ),
        "person_impact": (
            "Choking risk avoided; meal {mins} minutes late.",
            "None once corrected; {p} waited a little longer for lunch.",
        ),
        "supervisor_review": ("yes", "yes", "no"),
    }),
    S("allergen", "mealtime", hours=(8, 12, 13, 17, 18), factors=(
        "documentation", "new_agency_staff", "communication"), stages=("preparation",),
      harm=(0.02, 0.25, 0.45, 0.26, 0.02),
      extra={"al": (
          {"diet": "Peanut and tree nut allergy (adrenaline pen prescribed).",
           "food": "a satay chicken ready meal"},
          {"diet": "Coeliac – strictly gluten free.", "food": "ordinary pasta"},
          {"diet": "Cow's milk allergy – dairy free.", "food": "a yoghurt pudding"},
          {"diet": "Sesame allergy.", "food": "a houmous wrap"},
      )},
      fields={
        "description": (
            "{food} was nearly served to {p}. {p}'s plan says: {diet} Spotted when I read the "
            "label on the packet.",
            "{s1} was about to give {p} {food}. Stopped it at the table; {p} has an allergy "
            "noted in the care plan.",
        ),
        "immediate_action": (
            "Took the food away, gave {p} a safe alternative and checked nothing had been "
            "eaten. Told the shift lead.",
            "Removed the plate and watched {p} for 30 minutes; no reaction.",
        ),
        "conditions": (
            "The allergy list in the kitchen is on a separate sheet from the menu.",
            "Shopping substitution by the supermarket wasn't checked.",
            "Agency staff hadn't been shown the allergy board.",
        ),
        "dietary_requirement": ("{diet}",),
        "texture_level": ("level_7",),
        "staff_preparing": ("{s1}", "{ag} (agency)"),
        "staff_identifying": ("{s2}", "Myself"),
        "immediate_correction": ("Safe alternative served.", "Meal replaced and kitchen checked."),
        "person_impact": (
            "Could have caused an allergic reaction.",
            "Risk of anaphylaxis avoided; meal delayed.",
        ),
        "supervisor_review": ("yes",),
    }),
    S("drink-not-thickened", "mealtime", hours=(8, 10, 15, 19), factors=(
        "training", "new_agency_staff", "unclear_guidance"), stages=("delivery",),
      fields={
        "description": (
            "Cup of tea made thin for {p}, who needs Level 3 thickened drinks. Noticed before "
            "{p} drank any.",
            "{p} was handed a drink with no thickener at the {mins}-minute break. {s2} "
            "noticed it before it was drunk.",
        ),
        "immediate_action": (
            "Took the drink away, made a new one with the right amount of thickener.",
            "Replaced the drink and checked {p}'s breathing and voice after – fine.",
        ),
        "conditions": (
            "The thickener tin had no scoop guidance on it.",
            "Drinks are made in a rush at break time by whoever is free.",
        ),
        "dietary_requirement": ("Thickened drinks (Level 3) after SALT review.",),
        "texture_level": ("level_3",),
        "staff_preparing": ("{ag} (agency)", "{s1}"),
        "staff_identifying": ("{s2}",),
        "immediate_correction": ("Drink remade at Level 3.",),
        "person_impact": ("Aspiration risk avoided.", "None – caught before drinking."),
        "supervisor_review": ("yes", "no"),
    }),
    S("outing-food", "mealtime", hours=(11, 12, 13, 14), settings=("community",),
      factors=("unclear_guidance", "new_agency_staff", "time_pressure"), stages=("delivery",),
      fields={
        "description": (
            "On the trip to {place}, {ag} was about to buy {p} a sandwich from the café. {p} "
            "needs a soft diet and has a choking risk.",
            "At {place} {p} was offered crisps by another group. {p} is on a modified diet.",
        ),
        "immediate_action": (
            "Stopped it and got {p} a soft option from the menu, checked with the plan.",
            "Politely declined, offered {p}'s packed snack instead.",
        ),
        "conditions": (
            "The outing risk assessment doesn't mention food bought out.",
            "The packed lunch was forgotten in the rush to leave.",
        ),
        "dietary_requirement": ("Soft and bite-sized diet; no crisps, nuts or hard bread.",),
        "texture_level": ("level_6",),
        "staff_preparing": ("{ag} (agency)", "{s1}"),
        "staff_identifying": ("{s2}", "Myself"),
        "immediate_correction": ("Soft alternative bought.", "Packed snack given instead."),
        "person_impact": ("Choking risk avoided.",),
        "supervisor_review": ("no", "yes"),
    }),
    S("label-board-out-of-date", "mealtime", services=("OH", "RS", "EC"),
      hours=(11, 12, 16, 17), factors=(
        "documentation", "communication", "unclear_guidance"), stages=("planning",),
      fields={
        "description": (
            "The kitchen whiteboard still showed {p} as regular diet even though SALT changed "
            "it to soft & bite-sized last week. Noticed when checking the care plan.",
            "Menu sheet for {p} not updated after the dietitian's review; {p} is now on a "
            "fortified diet for weight loss but the sheet still said normal portions.",
        ),
        "immediate_action": (
            "Updated the board and told everyone on shift.",
            "Updated the menu sheet and made sure the right meal was served.",
        ),
        "conditions": (
            "No one is responsible for updating the board after reviews.",
            "Reviews are emailed to the manager only.",
        ),
        "dietary_requirement": (
            "Level 6 soft & bite-sized after SALT review.",
            "Fortified diet with snacks between meals (weight loss).",
        ),
        "texture_level": ("level_6", "level_7"),
        "staff_preparing": ("{s1}",),
        "staff_identifying": ("{s2}", "Myself"),
        "immediate_correction": ("Board and menu corrected.",),
        "person_impact": ("Could have had the wrong diet for days.",),
        "supervisor_review": ("yes",),
    }),
    # -- escalation / deterioration -----------------------------------------------------------
    S("confusion-reduced-intake", "escalation", services=("NG", "CO"), hours=(9, 12, 13, 17, 18),
      factors=("communication", "documentation", "unclear_guidance"), stages=("review",),
      harm=(0.0, 0.2, 0.6, 0.19, 0.01),
      fields={
        "description": (
            "{p} was more confused than usual and only drank about half a cup of tea across "
            "two visits. The threshold prompt in the app flagged confusion plus low intake.",
            "Over the last two calls {p} didn't recognise me and left both meals. Notes from "
            "the previous visit also said 'quiet, not herself'.",
        ),
        "immediate_action": (
            "Rang the office and the nurse line before leaving; stayed to help with fluids.",
            "Called the GP surgery and asked the next call to check intake.",
        ),
        "conditions": (
            "Previous carer wrote it in the notes only; the prompt fires when both signs are "
            "recorded on one visit.",
            "No one looks across visits for gradual change.",
        ),
        "signs_observed": (
            "New confusion, reduced food and fluid intake over two visits.",
            "Confused, drowsy, dry lips, strong-smelling urine.",
        ),
        "threshold_prompt": ("yes", "yes", "no"),
        "consult_outcome": (
            "GP visit the same day: suspected urine infection, antibiotics started, fluid "
            "chart every call.",
            "Nurse line advised urine dip and GP call; GP visiting this afternoon.",
        ),
    }),
    S("complaint-not-escalated", "escalation", hours=(10, 11, 14, 15), factors=(
        "documentation", "unclear_guidance", "staffing"), stages=("review", "recording"),
      extra={"complaint": ("stomach pain", "headaches", "a sore mouth", "pain passing urine",
                           "dizziness when standing up", "a painful knee")},
      fields={
        "description": (
            "Reading back through {p}'s daily notes I found {complaint} recorded on four of the "
            "last seven days but nothing escalated.",
            "{p} has mentioned {complaint} several times this fortnight; it's in the notes "
            "but no one rang the GP.",
        ),
        "immediate_action": (
            "Checked on {p} the same day, started a pain chart and rang the GP.",
            "Asked the team leader to review; GP appointment booked.",
        ),
        "conditions": (
            "Notes have no escalation prompt; each entry looked minor on its own.",
            "Weekly note review hasn't happened because of rota gaps.",
        ),
        "signs_observed": ("Recurring {complaint} over several days.",),
        "threshold_prompt": ("no",),
        "consult_outcome": (
            "GP appointment tomorrow; pain monitoring in the meantime.",
            "GP reviewed by phone; medication changed and review in a week.",
        ),
    }),
    S("pressure-area", "escalation", services=("OH", "RS", "NG"), hours=(7, 8, 9, 20, 21), factors=(
        "documentation", "communication", "handover"), stages=("review",),
      fields={
        "description": (
            "Redness on {p}'s heel has been written in the notes for three days but not "
            "reported to the district nurse.",
            "Found a red area on {p}'s sacrum during personal care; the notes show it was seen "
            "two days ago too.",
        ),
        "immediate_action": (
            "Repositioned {p}, heel off-loaded with a pillow, referral to the district nurse.",
            "Rang the district nurses and started a turning chart.",
        ),
        "conditions": (
            "Skin checks are recorded but nobody owns the referral.",
            "Body map not updated between shifts.",
        ),
        "signs_observed": ("Non-blanching redness on the heel.", "Red, warm area on the sacrum."),
        "threshold_prompt": ("no", "yes"),
        "consult_outcome": (
            "District nurse visited: early pressure damage, pressure-relieving mattress "
            "ordered.",
            "District nurse to visit tomorrow; turning chart two-hourly.",
        ),
    }),
    S("night-temperature", "escalation", services=("OH", "RS"), hours=(23, 1, 3, 5), factors=(
        "handover", "communication"), stages=("handover", "review"),
      harm=(0.0, 0.2, 0.55, 0.24, 0.01),
      fields={
        "description": (
            "{p} had a temperature and a new cough overnight but it wasn't handed over to the "
            "day staff. I found it in the night notes.",
            "At the 3am check {p} was hot and breathing fast. The evening staff had noted a "
            "cough but didn't pass it on.",
        ),
        "immediate_action": (
            "Rang 111, followed advice, and handed over in person to the day lead.",
            "Took observations, rang the out-of-hours GP and stayed with {p}.",
        ),
        "conditions": (
            "The handover sheet has no health section.",
            "Night staff work alone and are unsure when to call out-of-hours.",
        ),
        "signs_observed": (
            "Temperature 38.2°C, new cough, breathing faster.",
            "Hot, shivery, chesty cough.",
        ),
        "threshold_prompt": ("no", "yes"),
        "consult_outcome": (
            "Out-of-hours GP: chest infection, antibiotics started; observations twice a day.",
            "111 advised GP same day; GP prescribed antibiotics.",
        ),
    }),
    S("seizure-increase", "escalation", hours=(10, 14, 16), factors=(
        "documentation", "communication"), stages=("review",),
      fields={
        "description": (
            "{p}'s seizure chart shows three short seizures this week when they usually have "
            "one a month. Nobody had passed this to the epilepsy nurse.",
        ),
        "immediate_action": ("Rang the epilepsy nurse and told the team leader.",),
        "conditions": ("Seizure charts are filed without anyone reviewing the trend.",),
        "signs_observed": ("Increase in seizure frequency.",),
        "threshold_prompt": ("no",),
        "consult_outcome": (
            "Epilepsy nurse reviewing medication; closer monitoring and rescue plan checked.",
        ),
    }),
    # -- safeguarding -------------------------------------------------------------------------
    S("stranger-on-outing", "safeguarding", hours=(11, 13, 14, 15, 16),
      settings=("community",), factors=("environment", "unclear_guidance", "staffing"),
      stages=("delivery",), harm=(0.0, 0.2, 0.55, 0.24, 0.01),
      fields={
        "description": (
            "At {place} {p} was approached repeatedly by an unknown man who asked for their "
            "phone number.",
            "While we were at {place} a woman {p} didn't know kept coming over and trying to "
            "get {p} to go with her.",
        ),
        "immediate_action": (
            "Stayed next to {p}, moved us somewhere busier and ended the outing early.",
            "Followed the safety script, moved away and rang the on-call supervisor.",
        ),
        "conditions": (
            "{p}'s plan doesn't cover being approached by strangers.",
            "1:1 outing with no second worker nearby.",
        ),
        "safeguarding_cue": (
            "Repeated approach by an unknown adult asking for personal details.",
            "Stranger trying to persuade {p} to leave with them.",
        ),
        "immediate_safety_action": (
            "Moved to a staffed, busy place and left by taxi.",
            "Stayed with {p} and alerted the supervisor.",
        ),
        "lead_alerted": ("yes", "yes", "no"),
    }),
    S("financial-cue", "safeguarding", hours=(10, 15, 19), factors=(
        "communication", "unclear_guidance"), stages=("delivery",),
      fields={
        "description": (
            "{p} told me a new 'friend' has been asking to borrow money and wanted their bank "
            "card PIN.",
            "{p} had £60 missing from their purse and said someone they met online 'needed it "
            "more'.",
        ),
        "immediate_action": (
            "Listened, reassured {p}, wrote down exactly what was said and told the manager.",
            "Helped {p} lock the card through the bank app and informed the on-call manager.",
        ),
        "conditions": (
            "{p}'s money plan hasn't been reviewed since moving in.",
            "No support plan about online contacts.",
        ),
        "safeguarding_cue": (
            "Possible financial exploitation by a new acquaintance.",
            "Money missing and pressure from someone met online.",
        ),
        "immediate_safety_action": (
            "Card locked, conversation recorded word for word, manager informed.",
            "Agreed with {p} to keep the card in the safe for now.",
        ),
        "lead_alerted": ("yes",),
    }),
    S("door-on-latch", "safeguarding", services=("OH", "RS"), hours=(22, 0, 2, 4), factors=(
        "environment", "handover", "staffing"), stages=("delivery",),
      harm=(0.0, 0.15, 0.5, 0.33, 0.02),
      fields={
        "description": (
            "Found the front door on the latch during the night check and {p}, who is at risk "
            "of going missing, was in the hall with a coat on.",
            "Door sensor alarm was switched off and {p} was trying the back door at night.",
        ),
        "immediate_action": (
            "Guided {p} back to bed, secured the door and checked the sensor.",
            "Reset the alarm, stayed with {p} until settled, told the on-call manager.",
        ),
        "conditions": (
            "Door checks are not on the night checklist.",
            "The sensor was turned off for a delivery and not turned back on.",
        ),
        "safeguarding_cue": ("Risk of {p} leaving unnoticed at night.",),
        "immediate_safety_action": ("Door secured, sensor re-armed, extra night checks.",),
        "lead_alerted": ("yes", "no"),
    }),
    S("unapproved-visitor", "safeguarding", services=("OH", "RS", "EC"),
      hours=(11, 14, 16, 18), factors=(
        "new_agency_staff", "communication", "documentation"), stages=("delivery",),
      fields={
        "description": (
            "A man saying he was {p}'s cousin asked to take {p} out. He isn't on the approved "
            "contacts list and {ag} (agency) nearly let him in.",
            "Someone not on {p}'s contact list turned up asking to see {p}; there's a "
            "restriction in the plan.",
        ),
        "immediate_action": (
            "Politely refused entry, checked the contacts list and rang the manager.",
            "Kept the visitor outside, rang the on-call manager and recorded the visit.",
        ),
        "conditions": (
            "The contacts list is in the office, not at the door.",
            "Agency staff aren't told about visiting restrictions.",
        ),
        "safeguarding_cue": ("Unapproved visitor trying to take {p} out.",),
        "immediate_safety_action": ("Visitor not admitted; manager informed.",),
        "lead_alerted": ("yes",),
    }),
    # -- environment / equipment --------------------------------------------------------------
    S("faulty-hoist", "environment", services=("OH", "RS", "NG", "EC"),
      hours=(7, 8, 9, 20, 21), factors=(
        "equipment", "handover", "training"), stages=("delivery",),
      harm=(0.0, 0.25, 0.5, 0.24, 0.01),
      fields={
        "description": (
            "The hoist battery went flat halfway through transferring {p}. We used the "
            "emergency lowering.",
            "Found a frayed loop on {p}'s sling before hoisting.",
            "The hoist's service sticker was out of date when I went to use it for {p}.",
        ),
        "immediate_action": (
            "Lowered {p} safely, used the spare hoist and put the faulty one out of use.",
            "Took the sling out of use and used the spare one from the store.",
        ),
        "conditions": (
            "No one checks the hoist is on charge at night handover.",
            "Slings aren't checked before use.",
            "Servicing dates aren't tracked.",
        ),
        "hazard": ("Hoist battery failure mid-transfer.", "Frayed sling loop.",
                   "Hoist overdue its LOLER service."),
        "maintenance_ref": ("ML-{ref}", "Job {ref}"),
        "repair_requested": ("yes", "yes", "no"),
    }),
    S("hot-water", "environment", services=("OH", "RS", "NG"), hours=(7, 8, 19, 20), factors=(
        "equipment", "environment"), stages=("delivery",), harm=(0.0, 0.2, 0.4, 0.38, 0.02),
      fields={
        "description": (
            "Bath water from the hot tap was 48°C on the thermometer; the valve should stop it "
            "above 44°C. {p} wasn't in the bath yet.",
            "The shower suddenly went very hot while I was supporting {p}.",
        ),
        "immediate_action": (
            "Let it cool and checked it was 38°C before {p} got in. Sign on the tap.",
            "Turned the shower off and moved {p} away; used the other bathroom.",
        ),
        "conditions": (
            "Water temperatures aren't checked between services.",
            "Thermostatic valve is old.",
        ),
        "hazard": ("Hot water above safe temperature – scald risk.",),
        "maintenance_ref": ("ML-{ref}", "Job {ref}"),
        "repair_requested": ("yes",),
    }),
    S("trip-hazard", "environment", factors=("environment", "equipment", "time_pressure"),
      stages=("delivery",),
      fields={
        "description": (
            "Loose carpet strip at the top of the stairs nearly tripped {p}.",
            "Trailing extension cable across the lounge floor where {p} walks with a frame.",
            "Wet floor in the corridor from a leak, no sign out, {p} walking through.",
        ),
        "immediate_action": (
            "Taped it down and put a sign out; told the shift lead.",
            "Moved the cable and mopped up; blocked the area.",
        ),
        "conditions": (
            "Environmental checks are monthly and not after works.",
            "Repairs request not chased.",
        ),
        "hazard": ("Trip hazard on a walking route.", "Slip hazard from a leak."),
        "maintenance_ref": ("ML-{ref}", "Job {ref}"),
        "repair_requested": ("yes", "yes", "no"),
    }),
    S("fire-door", "environment", services=("OH", "RS", "EC"),
      factors=("environment", "training"), stages=("delivery",),
      harm=(0.1, 0.4, 0.35, 0.15, 0.0),
      fields={
        "description": (
            "Kitchen fire door propped open with a chair again.",
            "Fire exit partly blocked by a wheelchair and boxes from a delivery.",
        ),
        "immediate_action": ("Closed the door and reminded the team.", "Cleared the exit."),
        "conditions": (
            "Door is heavy and staff prop it to carry trays.",
            "No storage space for deliveries.",
        ),
        "hazard": ("Fire door wedged open.", "Obstructed fire exit."),
        "maintenance_ref": ("ML-{ref}",),
        "repair_requested": ("yes", "no"),
    }),
    S("mattress-callbell", "environment", services=("OH", "RS"), hours=(22, 23, 2, 5, 6), factors=(
        "equipment", "handover"), stages=("delivery", "review"),
      fields={
        "description": (
            "{p}'s pressure mattress pump alarm was silenced and the mattress was flat.",
            "{p}'s call bell didn't work when tested at the night check.",
        ),
        "immediate_action": (
            "Reset the pump and checked {p}'s skin; hourly checks until fixed.",
            "Gave {p} a portable bell and increased checks.",
        ),
        "conditions": ("Alarm silenced by someone without reporting it.",
                       "Call bells aren't tested weekly."),
        "hazard": ("Deflated pressure mattress.", "Call bell not working."),
        "maintenance_ref": ("ML-{ref}", "Job {ref}"),
        "repair_requested": ("yes",),
    }),
    # -- behaviour ----------------------------------------------------------------------------
    S("routine-change", "behaviour", hours=(9, 10, 13, 15), factors=(
        "communication", "unclear_guidance", "scheduling"), stages=("planning", "delivery"),
      fields={
        "description": (
            "The bus was cancelled and {p} became very distressed, banging the table and "
            "heading for the door.",
            "{p}'s usual worker was off and nobody told {p} in advance; {p} started shouting and "
            "throwing things.",
        ),
        "immediate_action": (
            "Gave {p} space, kept others away and used the calm script from the PBS plan.",
            "Moved the other people out and stayed with {p} at a distance.",
        ),
        "conditions": (
            "No plan B for cancelled activities.",
            "Changes to staff aren't shared with {p} beforehand.",
        ),
        "triggers": ("Sudden change to routine.", "Unexpected change of staff."),
        "deescalation_action": (
            "Calm script, space and offered the sensory room; settled in 15 minutes.",
            "Distraction with a favourite activity; settled in 20 minutes.",
        ),
    }),
    S("noise-trigger", "behaviour", factors=("environment", "communication"),
      stages=("delivery",),
      fields={
        "description": (
            "The fire alarm test went off without warning and {p} hit out towards {s2}.",
            "Building work next door was very loud and {p} started self-harming (hitting head).",
        ),
        "immediate_action": (
            "Moved {p} to the quiet room with ear defenders.",
            "Blocked the hits with a cushion as per plan and reduced noise.",
        ),
        "conditions": (
            "Alarm tests not put in the diary.",
            "No noise plan in the PBS plan.",
        ),
        "triggers": ("Sudden loud noise.", "Ongoing loud building work."),
        "deescalation_action": ("Quiet room and ear defenders.", "Reduced noise and reassurance."),
    }),
    S("peer-conflict", "behaviour", services=("OH", "RS", "EC"),
      hours=(16, 17, 18, 19, 20), factors=(
        "staffing", "environment"), stages=("delivery",),
      fields={
        "description": (
            "{p} and another resident argued over the TV remote; {p} raised a fist.",
            "{p} pushed past another person in the corridor and nearly knocked them over.",
        ),
        "immediate_action": (
            "Stepped between them and redirected {p} to another room.",
            "Separated them and checked nobody was hurt.",
        ),
        "conditions": ("Only one staff in the lounge at teatime.", "Narrow, busy corridor."),
        "triggers": ("Conflict over a shared space.", "Crowded space at a busy time."),
        "deescalation_action": ("Redirected to a preferred activity.",
                                "Separate spaces and a calm chat."),
    }),
    S("unfamiliar-staff", "behaviour", services=("OH", "RS", "NG"), hours=(7, 8, 20, 21), factors=(
        "new_agency_staff", "staffing", "handover"), stages=("delivery",),
      fields={
        "description": (
            "{p} became distressed when {ag}, an agency worker {p} had never met, started "
            "personal care.",
            "{p} refused care and grabbed at {ag}'s arm; first time they had worked together.",
        ),
        "immediate_action": (
            "Swapped so a familiar worker did the care.",
            "Stopped, gave {p} time and asked {s2} to take over.",
        ),
        "conditions": (
            "Agency cover booked without an introduction.",
            "Rota put a new worker on personal care alone.",
        ),
        "triggers": ("Unfamiliar staff doing personal care.",),
        "deescalation_action": ("Familiar worker took over; {p} settled quickly.",),
    }),
    S("suspected-pain", "behaviour", factors=("communication", "unclear_guidance"),
      stages=("review",),
      fields={
        "description": (
            "{p} was more agitated than usual all morning, hitting their jaw. Could be "
            "toothache.",
            "{p} kept rubbing their ear and pushing staff away.",
        ),
        "immediate_action": ("Offered pain relief as per PRN plan and booked the dentist.",
                             "Rang the GP for an appointment and recorded the behaviour."),
        "conditions": ("Pain assessment tool not used routinely.",),
        "triggers": ("Possible pain.",),
        "deescalation_action": ("Calm space, PRN pain relief, reassurance.",),
    }),
    # -- workflow / scheduling ----------------------------------------------------------------
    S("double-booked", "workflow", services=("NG", "CO"), hours=(8, 12, 13, 17), factors=(
        "scheduling", "time_pressure", "staffing"), stages=("planning",),
      fields={
        "description": (
            "The rota app had me at two calls at the same time; {p}'s lunch call would have "
            "been 45 minutes late.",
            "Two visits booked for me 10 minutes apart on opposite sides of town.",
        ),
        "immediate_action": ("Rang the office, who sent {s2} to {p}.",
                             "Rang {p} to say I was delayed and prioritised the call."),
        "conditions": ("The app allows overlapping calls.",
                       "Travel time isn't included when calls are moved."),
        "system_used": ("{system}",),
        "deviation_from_plan": ("Two visits booked at the same time.",
                                "No travel time between calls."),
        "corrective_action": ("Office fixed the rota for the rest of the week.",
                              "Coordinator checks overlaps every morning."),
    }),
    S("visit-dropped", "workflow", services=("NG", "CO"), hours=(9, 11, 16), factors=(
        "scheduling", "documentation", "communication"), stages=("planning",),
      harm=(0.02, 0.35, 0.45, 0.17, 0.01),
      fields={
        "description": (
            "{p}'s teatime visit disappeared from the schedule after the care plan was "
            "updated. Spotted by the coordinator at 4pm.",
            "After {p}'s package changed, the Sunday visits weren't added to the rota.",
        ),
        "immediate_action": ("Coordinator covered the visit; {p} was fine.",
                             "Visits re-added; on-call covered Sunday."),
        "conditions": ("Care plan changes aren't checked against the rota.",),
        "system_used": ("{system}",),
        "deviation_from_plan": ("Visit missing from the schedule.",),
        "corrective_action": ("Rota checked against all recent care plan changes.",),
    }),
    S("handover-not-updated", "workflow", services=("OH", "RS"),
      factors=("handover", "documentation"),
      stages=("handover",),
      fields={
        "description": (
            "{p} came back from hospital but the handover sheet still said they were on the "
            "ward. Night staff nearly didn't check on {p}.",
            "Handover sheet didn't mention {p}'s new falls sensor.",
        ),
        "immediate_action": ("Updated the sheet and told the night staff.",),
        "conditions": ("The handover sheet is updated only at the start of the day.",),
        "system_used": ("Paper handover sheet",),
        "deviation_from_plan": ("Information missing from handover.",),
        "corrective_action": ("Handover sheet now updated at every shift change.",),
    }),
    S("app-offline", "workflow", factors=("equipment", "documentation"),
      stages=("recording", "delivery"),
      fields={
        "description": (
            "The care app was offline so I couldn't see {p}'s tasks; nearly missed the "
            "cream application.",
            "The eMAR tablet wouldn't sync and showed yesterday's list for {p}.",
        ),
        "immediate_action": ("Rang the office for the task list.",
                             "Used the paper backup MAR."),
        "conditions": ("Poor signal, no offline copy of tasks.",),
        "system_used": ("Electronic care record app", "eMAR tablet"),
        "deviation_from_plan": ("Tasks not visible during the visit.",),
        "corrective_action": ("Offline mode switched on for all phones.",
                              "Paper backup kept in the house."),
    }),
)
del S


@cache
def _scenarios(category: str, service: str) -> tuple[Scenario, ...]:
    svc = _SERVICE[service]
    return tuple(s for s in SCENARIOS if s.category == category and s.fits(svc))


# -- building one report --------------------------------------------------------------------


def _real_local(naive: datetime) -> datetime:
    """The same wall time if it exists in London; otherwise moved past the spring gap."""
    back = naive.replace(tzinfo=TZ).astimezone(UTC).astimezone(TZ).replace(tzinfo=None)
    return back


def _utc(naive: datetime) -> datetime:
    return naive.replace(tzinfo=TZ).astimezone(UTC)


def _shift(hour: int) -> str:
    return "early" if 7 <= hour < 14 else "late" if 14 <= hour < 22 else "night"


def _hhmm(hm: tuple[int, int]) -> str:
    return f"{hm[0]:02d}:{hm[1]:02d}"


@dataclass
class _Draft:
    """A report under construction: field values as keys/text, plus metadata."""

    fields: dict[str, Any]
    meta: dict[str, Any]


def _occurrence(rng: random.Random, scenario: Scenario, service: Service, day: date,
                ctx: dict[str, Any]) -> datetime:
    """When it happened, with the scenario's timing anchor (dose or appointment) in `ctx`."""
    if scenario.anchor == "due":
        dues = [d for d in scenario.extra.get("due_override", _DUE) if _in_hours(service, d[0])]
        due = rng.choice(dues or [(12, 0)])
        ctx["due_t"], ctx["due"] = time(*due), _hhmm(due)
        start = datetime.combine(day, time(*due))
        return start + timedelta(minutes=rng.choice((-20, -10, -5, 0, 5, 15, 30, 45, 70)))
    if scenario.anchor == "appt":
        last = min(service.hours[1], 16)
        appt = (rng.randint(max(service.hours[0] + 2, 9), max(last, 10)), rng.choice((0, 15, 30)))
        ctx["appt_t"], ctx["appt"] = time(*appt), _hhmm(appt)
        start = datetime.combine(day, time(*appt))
        return start - timedelta(minutes=rng.choice((30, 45, 60, 75, 90, 120)))
    hours = [h for h in scenario.hours if _in_hours(service, h)]
    hour = rng.choice(hours) if hours else rng.randint(*service.hours)
    return datetime.combine(day, time(hour, rng.randrange(0, 60, 5)))


def _pick_factors(rng: random.Random, scenario: Scenario) -> list[str]:
    n = rng.choices((1, 2, 3), weights=(0.45, 0.4, 0.15))[0]
    pool = list(scenario.factors)
    chosen: list[str] = []
    while len(chosen) < n and pool:
        # earlier factors are likelier: weights 4, 3, 2, 1, ...
        weights = [max(1, len(scenario.factors) - scenario.factors.index(f)) for f in pool]
        chosen.append(pool.pop(rng.choices(range(len(pool)), weights=weights)[0]))
    if rng.random() < 0.08:
        other = rng.choice(list(_form().labels["contributing_factors"]))
        if other not in chosen:
            chosen.append(other)
    keys = list(_form().labels["contributing_factors"])
    return sorted(chosen, key=keys.index)  # forms list ticked options in form order


def _staff_text(rng: random.Random, me: Staff | None, ctx: dict[str, Any]) -> str:
    """"Which staff were involved?" as people type it: initials, roles, or a phrase."""
    style = rng.random()
    if me is None:  # anonymous reporters rarely name themselves
        if style < 0.4:
            return "Me and {s2}".format_map(ctx)
        if style < 0.6:
            return "{s2}, agency worker {ag}".format_map(ctx)
        return ctx["s2"] if style < 0.8 else "Two support workers on shift"
    if style < 0.35:
        return ctx["s1"]
    if style < 0.75:
        return "{s1}, {s2}".format_map(ctx)
    if style < 0.9:
        return "{s1}, {ag} (agency)".format_map(ctx)
    return "{s1}, {s2}, {s3} (senior)".format_map(ctx)


def _draft(rng: random.Random, *, category: str, service: Service, day: date, source: str,
           reporter: Staff | None, people: int, scenario: Scenario | None = None,
           person: str | None = None) -> _Draft:
    """A complete, consistent report from a scenario of `category` (nothing left out)."""
    form = _form()
    if service.weekdays_only and day.weekday() > 4:
        day -= timedelta(days=day.weekday() - 4)  # the Friday before
    scenario = scenario or rng.choice(_scenarios(category, service.name))
    team = list(_roster(service.name))
    person = person or f"{service.prefix}-{rng.randint(1, people):03d}"
    ctx: dict[str, Any] = {
        "p": person, "ag": rng.choice(_LETTERS) + rng.choice(_LETTERS),
        "med": rng.choice(_MEDS), "dest": rng.choice(_DESTS), "place": rng.choice(_PLACES),
        "mins": rng.choice((15, 20, 25, 30, 40, 45, 50)), "ref": rng.randint(1000, 4999),
        "system": rng.choice(_SYSTEMS),
    }
    s1, s2, s3 = [s for s in rng.sample(team, 4) if reporter is None or s.name != reporter.name][:3]
    ctx["s1"], ctx["s2"], ctx["s3"] = (reporter or s1).initials, s2.initials, s3.initials
    for name, options in scenario.extra.items():
        if name == "due_override":
            continue
        pick = rng.choice(options)
        if isinstance(pick, dict):
            ctx.update(pick)
        else:
            ctx[name] = pick
    occurred = _real_local(_occurrence(rng, scenario, service, day, ctx))
    ctx["day"] = occurred.strftime("%A")
    settings = [service.base if s == "base" else s for s in scenario.settings]
    settings = [s for s in settings if s in service.settings] or [service.base]
    values: dict[str, Any] = {
        "category": category,
        "service": service.name,
        "setting": rng.choice(settings),
        "occurred_at": occurred,
        "shift": _shift(occurred.hour),
        "person_ref": person,
        "potential_harm": rng.choices(HARM_LEVELS, weights=scenario.harm)[0],
        "contributing_factors": _pick_factors(rng, scenario),
        "workflow_stage": rng.choice(scenario.stages),
        "staff_involved": _staff_text(rng, reporter, ctx),
    }
    for name, options in scenario.fields.items():
        text = rng.choice(options).format_map(ctx)
        values[name] = text if form.labels[name] else text[:1].upper() + text[1:]
    if category == "medication":
        values["medication_name"] = ctx["med"]
        values["scheduled_time"] = ctx["due_t"]
    if category == "transport":
        values["appointment_time"] = ctx["appt_t"]
    submitted = occurred + timedelta(minutes=rng.choices(
        (rng.randint(5, 60), rng.randint(60, 360), rng.randint(480, 1200)),
        weights=(0.6, 0.3, 0.1))[0], seconds=rng.randint(0, 59))
    submitted = _real_local(submitted)
    meta = {SOURCE: source, SUBMITTED: submitted,
            STARTED: submitted - timedelta(seconds=rng.randint(90, 600)), EDITED: None,
            REPORTER: reporter.name if reporter else None, EMAIL: None,
            ANONYMOUS: reporter is None, TAG: None}
    if reporter is not None:
        values["reporter_name"] = reporter.name
        if source == MICROSOFT_SOURCE:
            meta[EMAIL] = reporter.email  # signed-in Microsoft Forms record name and address
            if rng.random() < 0.5:
                del values["reporter_name"]  # the form already knows who they are
        else:
            variant = rng.random()
            if variant < 0.7:
                meta[EMAIL] = reporter.email
            elif variant < 0.85:
                values["reporter_email"] = reporter.email
    missing = [f for f in form.required.get(category, ()) if f not in values]
    assert not missing, f"scenario {scenario.name} leaves out {missing}"
    return _Draft(values, meta)


def _answers(draft: _Draft) -> dict[str, Any]:
    """Field values -> question title -> answer as a respondent gives it (labels, not keys)."""
    form = _form()
    out: dict[str, Any] = {}
    for name, value in draft.fields.items():
        if value is None or value == "":
            continue
        labels = form.labels[name]
        if labels and form.types[name] == "multi":
            value = [labels[v] for v in value]
        elif labels:
            value = labels[value]
        out[form.titles[name]] = value
    out.update(draft.meta)
    return out


def _drop_required(rng: random.Random, draft: _Draft) -> None:
    """Leave out one or two items the category requires (an incomplete report)."""
    candidates = [f for f in _form().required.get(draft.fields["category"], ())
                  if f in draft.fields and f not in _form().minimum]
    for name in rng.sample(candidates, min(len(candidates), rng.choice((1, 1, 2)))):
        del draft.fields[name]


def generate_reports(n: int, seed: int = 7, start: date = SAMPLE_START, weeks: int = 10, *,
                     incomplete_share: float = 0.15, anonymous_share: float = 0.2,
                     edited_share: float = 0.02) -> list[dict[str, Any]]:
    """`n` realistic synthetic submissions over `weeks` weeks from `start`, sorted by submission.

    Half go to each source; `incomplete_share` leave out one or two category-required items,
    `anonymous_share` carry no reporter, `edited_share` of the Microsoft ones were edited
    after submission. The same arguments always give the same reports.
    """
    rng = random.Random(seed)
    categories, cat_weights = list(CATEGORY_WEIGHTS), list(CATEGORY_WEIGHTS.values())
    svc_weights = [s.weight for s in SERVICES]
    people = max(20, min(999, n // 150))
    days = weeks * 7
    drafts: list[_Draft] = []
    for _ in range(n):
        service = rng.choices(SERVICES, weights=svc_weights)[0]
        category = rng.choices(categories, weights=cat_weights)[0]
        source = GOOGLE_SOURCE if rng.random() < 0.5 else MICROSOFT_SOURCE
        reporter = None if rng.random() < anonymous_share else rng.choice(_roster(service.name))
        draft = _draft(rng, category=category, service=service,
                       day=start + timedelta(days=rng.randrange(days)), source=source,
                       reporter=reporter, people=people)
        if rng.random() < incomplete_share:
            _drop_required(rng, draft)
        if source == MICROSOFT_SOURCE and rng.random() < edited_share:
            draft.meta[EDITED] = _real_local(
                draft.meta[SUBMITTED] + timedelta(minutes=rng.randint(3, 180),
                                                  seconds=rng.randint(0, 59)))
        drafts.append(draft)
    drafts.sort(key=lambda d: _utc(d.meta[SUBMITTED]))
    return [_answers(d) for d in drafts]


# -- writers -------------------------------------------------------------------------------


def _latest(row: dict[str, Any]) -> datetime:
    return row.get(EDITED) or row[SUBMITTED]


def google_timestamp(local: datetime) -> str:
    """Google Forms' CSV timestamp of a naive London time: `2026/09/14 9:41:12 AM GMT+1`."""
    offset = local.replace(tzinfo=TZ).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    zone = "GMT"
    if minutes:
        sign = "+" if minutes > 0 else "-"
        h, m = divmod(abs(minutes), 60)
        zone += f"{sign}{h}" + (f":{m:02d}" if m else "")
    hour12 = local.hour % 12 or 12
    ampm = "AM" if local.hour < 12 else "PM"
    return (f"{local.year}/{local.month:02d}/{local.day:02d} "
            f"{hour12}:{local.minute:02d}:{local.second:02d} {ampm} {zone}")


def _google_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(value)
    if isinstance(value, datetime):
        return value.strftime("%d/%m/%Y %H:%M:%S")
    if isinstance(value, time):
        return value.strftime("%H:%M:%S")
    return str(value)


def _google_order(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: _utc(_latest(r)))


def write_google_csv(rows: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write `rows` as a Google Forms "Download responses (.csv)" file (UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    titles = question_titles()
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL)  # Google quotes every field
        writer.writerow([*GOOGLE_META, *titles])
        for row in _google_order(list(rows)):
            writer.writerow([google_timestamp(_latest(row)), row.get(EMAIL) or "",
                             *(_google_cell(row.get(t)) for t in titles)])
    return path


def _microsoft_cell(value: Any) -> Any:
    if isinstance(value, list):
        return "".join(f"{v};" for v in value)
    if isinstance(value, datetime):
        return value.date()  # a Microsoft Forms date question has no time
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return value


def _microsoft_order(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in ID order: Microsoft Forms numbers responses as they are first submitted."""
    return sorted(rows, key=lambda r: _utc(r[SUBMITTED]))


def write_microsoft_xlsx(rows: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write `rows` as the Excel workbook of a Microsoft Form (sheet "Sheet1")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    titles = question_titles()
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Sheet1")
    ws.append([*MICROSOFT_META, *titles])
    for i, row in enumerate(_microsoft_order(list(rows)), start=1):
        ws.append([i, row[STARTED], row[SUBMITTED],
                   "anonymous" if row.get(ANONYMOUS) else row.get(EMAIL),
                   None if row.get(ANONYMOUS) else row.get(REPORTER), row.get(EDITED),
                   *(_microsoft_cell(row.get(t)) for t in titles)])
    wb.save(path)
    return path


def generate_exports(n: int, out_dir: Path, seed: int = 7) -> tuple[Path, Path]:
    """Generate `n` reports and write them, about half each, as the two exports in `out_dir`."""
    rows = generate_reports(n, seed=seed)
    out_dir = Path(out_dir)
    return (write_google_csv([r for r in rows if r[SOURCE] == GOOGLE_SOURCE],
                             out_dir / GOOGLE_FILE),
            write_microsoft_xlsx([r for r in rows if r[SOURCE] == MICROSOFT_SOURCE],
                                 out_dir / MICROSOFT_FILE))


# -- report ids, as the loop allocates them ------------------------------------------------


def _response_ids(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The response id each connector gives each row (connectors/form_exports.py)."""
    ids = [""] * len(rows)
    index = {id(r): i for i, r in enumerate(rows)}
    seen: dict[str, int] = defaultdict(int)
    for row in _google_order([r for r in rows if r[SOURCE] == GOOGLE_SOURCE]):
        base = f"{google_timestamp(_latest(row))}|{row.get(EMAIL) or ''}"
        seen[base] += 1
        ids[index[id(row)]] = "g-" + hashlib.sha256(
            f"{base}|{seen[base]}".encode()).hexdigest()[:20]
    for n, row in enumerate(_microsoft_order([r for r in rows if r[SOURCE] != GOOGLE_SOURCE]),
                            start=1):
        ids[index[id(row)]] = str(n)
    return ids


def assign_report_ids(rows: Sequence[dict[str, Any]]) -> list[str | None]:
    """The report id (NM-000001, ...) the loop will give each row; None for a follow-up.

    Mirrors the loop's rule: one number per response in order of its (latest) submission
    time across both sources, ties by source name then response id; a response quoting an
    earlier report's reference adds to that report and gets no number of its own.
    """
    ref_title = title("report_reference")
    rids = _response_ids(rows)
    order = sorted((i for i, r in enumerate(rows) if not r.get(ref_title)),
                   key=lambda i: (_utc(_latest(rows[i])), rows[i][SOURCE], rids[i]))
    out: list[str | None] = [None] * len(rows)
    for n, i in enumerate(order, start=1):
        out[i] = f"NM-{n:06d}"
    return out


# -- the curated demo set ------------------------------------------------------------------

# The repeats the samples contain, all scripted: each trio is one pattern of the
# "same category at one service" rule and one of "same category and contributing factor"
# (Medication + Handover, Transport + Communication). Apart from these, no repeat rule of
# rules.yaml finds N similar reports within its window, and nothing else of the same kind
# comes near enough to a trio to join its chain (see `_too_close`).
SAMPLE_CLUSTERS = {
    ("medication", "Oak House"): ("oh-med-timing-1", "oh-med-timing-2", "oh-med-timing-3"),
    ("transport", "Northgate Home Care"): ("ng-pickup-1", "ng-pickup-2", "ng-pickup-3"),
}
_MARGIN_DAYS = 3  # background keeps this much further apart than a rule's window


SAMPLE_SITUATIONS = Path(__file__).resolve().with_name("sample_situations.yaml")
_WHEN = ("occurred", "submitted", "edited")  # keys of a situation that hold a local datetime


def _sample_scripts() -> list[dict[str, Any]]:
    """The scripted sample situations (see the module docstring and SAMPLE_CLUSTERS), read
    from SAMPLE_SITUATIONS, their times typed as the writers expect them."""
    situations = yaml.safe_load(SAMPLE_SITUATIONS.read_text(encoding="utf-8"))
    types = _form().types
    for spec in situations:
        for key in _WHEN:
            if key in spec:
                spec[key] = datetime.fromisoformat(spec[key])
        spec["fields"] = {name: time.fromisoformat(value) if types[name] == "time" else value
                          for name, value in spec["fields"].items()}
    return situations


def _scripted_draft(rng: random.Random, spec: dict[str, Any]) -> _Draft:
    reporter = _staff(spec["reporter"]) if spec.get("reporter") else None
    if "follows" in spec:  # a follow-up only answers what it adds
        values = dict(spec["fields"])
        values["reporter_name"] = reporter.name if reporter else None
        values["report_reference"] = "NM-??????"  # set by _link_follow_ups
        meta = {SOURCE: spec["source"], SUBMITTED: spec["submitted"],
                STARTED: spec["submitted"] - timedelta(minutes=2), EDITED: None,
                REPORTER: reporter.name if reporter else None,
                EMAIL: reporter.email if reporter else None, ANONYMOUS: reporter is None,
                TAG: spec["tag"]}
        return _Draft(values, meta)
    service = _SERVICE[spec["service"]]
    occurred: datetime = spec["occurred"]
    draft = _draft(rng, category=spec["category"], service=service, day=occurred.date(),
                   source=spec["source"], reporter=reporter, people=20)
    draft.fields.update(spec["fields"], occurred_at=occurred, shift=_shift(occurred.hour))
    keep = set(_form().minimum) | set(spec["fields"]) | {"reporter_name", "reporter_email"}
    for name in list(draft.fields):  # what the script leaves unanswered stays unanswered
        if name not in keep:
            del draft.fields[name]
    if reporter is not None:
        draft.fields["reporter_name"] = reporter.name
        draft.fields.pop("reporter_email", None)
        draft.meta[EMAIL] = reporter.email
        if spec.get("email_in_question"):
            draft.meta[EMAIL] = None
            draft.fields["reporter_email"] = reporter.email
    draft.meta.update({SUBMITTED: spec["submitted"], EDITED: spec.get("edited"),
                       STARTED: spec["submitted"] - timedelta(seconds=rng.randint(150, 500)),
                       TAG: spec["tag"]})
    return draft


def _repeat_keys(values: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every (rule, key) a report counts towards under the repeat rules (multi: per option)."""
    keys: list[tuple[Any, ...]] = []
    for rule_id, fields_, _, _ in _form().repeats:
        parts: list[list[Any]] = []
        for name in fields_:
            value = values.get(name)
            parts.append(list(value) if isinstance(value, list) else [value])
        keys += [(rule_id, *combo) for combo in itertools.product(*parts)
                 if all(v not in (None, "", []) for v in combo)]
    return keys


def _has_run(dates: list[date], threshold: int, days: int) -> bool:
    """True when `threshold` of `dates` fall within `days` days."""
    ordered, n = sorted(dates), threshold - 1
    return any((ordered[j + n] - ordered[j]).days < days for j in range(len(ordered) - n))


def _too_close(dates: list[date], new: date, threshold: int, days: int) -> bool:
    """True when `new` would put `threshold` dates of one key within `days` days."""
    window = sorted([*dates, new])
    i = window.index(new)
    n = threshold - 1
    return any((window[j + n] - window[j]).days < days
               for j in range(max(0, i - n), min(i, len(window) - 1 - n) + 1))


def _link_follow_ups(rows: list[dict[str, Any]]) -> None:
    """Give each follow-up the reference the loop allocates to the report it adds to.

    Coupling: report ids are allocated by the loop, not written in the exports, as
    NM-000001, NM-000002, ... in order of submission time across both files (ties by source
    name then response id), and a follow-up gets no number of its own. The reference is
    computed with that same rule (`assign_report_ids`); if the loop's rule changes, so must
    this. Only rows submitted before the original report decide its number.
    """
    ref_title = title("report_reference")
    ids = assign_report_ids(rows)
    by_tag = {r[TAG]: ids[i] for i, r in enumerate(rows) if r[TAG]}
    follows = {s["tag"]: s["follows"] for s in _sample_scripts() if "follows" in s}
    for row in rows:
        if row[TAG] in follows:
            row[ref_title] = by_tag[follows[row[TAG]]]
    assert assign_report_ids(rows) == ids, "a follow-up changed the numbering"


def sample_reports(background: int = 78, seed: int = 2026) -> list[dict[str, Any]]:
    """The curated demo set: scripted situations plus background reports, by submission.

    Background reports are drawn at random but kept clear of every repeat rule (see
    SAMPLE_CLUSTERS), of the scripted reports' submission times and of the hour the clocks
    go back, so report ids never depend on a tie or an ambiguous time.
    """
    rng = random.Random(seed)
    drafts = [_scripted_draft(rng, spec) for spec in _sample_scripts()]
    rules = {rule_id: (threshold, int(days) + _MARGIN_DAYS)
             for rule_id, _, threshold, days in _form().repeats}
    seen: dict[tuple[Any, ...], list[date]] = defaultdict(list)
    for d in drafts:
        if "category" in d.fields:
            for key in _repeat_keys(d.fields):
                seen[key].append(d.fields["occurred_at"].date())
    # keys the scripts make repeat: nothing else of that kind may come near them
    scripted = {key: days for key, days in seen.items() if _has_run(days, *rules[key[0]])}
    taken = {_utc(d.meta[SUBMITTED]) for d in drafts}
    busy: list[tuple[datetime, datetime]] = [  # nobody else submits during an edit
        (d.meta[SUBMITTED] - timedelta(minutes=1), d.meta[EDITED] + timedelta(minutes=1))
        for d in drafts if d.meta[EDITED]]
    busy.append((datetime(2026, 10, 25, 0, 30), datetime(2026, 10, 25, 2, 30)))  # clocks back
    categories, cat_weights = list(CATEGORY_WEIGHTS), list(CATEGORY_WEIGHTS.values())
    span = (SAMPLE_END - SAMPLE_START).days + 1
    placed = attempts = 0
    while placed < background:
        attempts += 1
        if attempts > 200 * background:
            raise RuntimeError("cannot place the sample background: relax the constraints")
        service = rng.choices(SERVICES, weights=[s.weight for s in SERVICES])[0]
        category = rng.choices(categories, weights=cat_weights)[0]
        source = (GOOGLE_SOURCE, MICROSOFT_SOURCE)[placed % 2]
        reporter = None if rng.random() < 0.2 else rng.choice(_roster(service.name)[:12])
        day = SAMPLE_START + timedelta(days=rng.randrange(span))
        draft = _draft(rng, category=category, service=service, day=day, source=source,
                       reporter=reporter, people=20)
        occurred, submitted = draft.fields["occurred_at"].date(), draft.meta[SUBMITTED]
        keys = _repeat_keys(draft.fields)
        if (submitted.date() > SAMPLE_END or _utc(submitted) in taken
                or any(a <= submitted <= b for a, b in busy)
                or any(_too_close(seen[k], occurred, *rules[k[0]]) for k in keys)
                or any(abs((occurred - x).days) < rules[k[0]][1]
                       for k in keys if k in scripted for x in scripted[k])):
            continue
        for key in keys:
            seen[key].append(occurred)
        taken.add(_utc(submitted))
        drafts.append(draft)
        placed += 1
    drafts.sort(key=lambda d: _utc(d.meta[EDITED] or d.meta[SUBMITTED]))
    rows = [_answers(d) for d in drafts]
    _link_follow_ups(rows)
    return rows


def write_samples(out_dir: Path) -> tuple[Path, Path]:
    """Write the curated demo exports (config/samples/) into `out_dir`."""
    rows = sample_reports()
    out_dir = Path(out_dir)
    return (write_google_csv([r for r in rows if r[SOURCE] == GOOGLE_SOURCE],
                             out_dir / GOOGLE_FILE),
            write_microsoft_xlsx([r for r in rows if r[SOURCE] == MICROSOFT_SOURCE],
                                 out_dir / MICROSOFT_FILE))


def describe_samples() -> list[tuple[str, str]]:
    """(report id or "follow-up -> id", tag) of each scripted sample situation."""
    rows = sample_reports()
    ids = assign_report_ids(rows)
    ref_title = title("report_reference")
    out = []
    for row, rid in zip(rows, ids, strict=True):
        if row[TAG]:
            out.append((rid or f"follow-up -> {row[ref_title]}", row[TAG]))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `--reports N --out DIR [--seed S]` or `--samples DIR`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--reports", type=int, metavar="N", help="generate N synthetic reports")
    what.add_argument("--samples", type=Path, metavar="DIR",
                      help="write the curated demo exports into DIR")
    parser.add_argument("--out", type=Path, metavar="DIR", help="folder for --reports")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    started = clock.perf_counter()
    if args.samples is not None:
        paths = write_samples(args.samples)
        for rid, tag in describe_samples():
            print(f"  {rid:<22} {tag}")
    else:
        if args.out is None:
            parser.error("--reports needs --out DIR")
        if args.reports < 0:
            parser.error("--reports must be 0 or more")
        paths = generate_exports(args.reports, args.out, seed=args.seed)
    for path in paths:
        print(path)
    print(f"done in {clock.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
