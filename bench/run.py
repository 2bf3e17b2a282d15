"""End-to-end speed and memory of `nearmiss run`: prints figures, asserts none.

    python bench/run.py                                  # 1k, 10k, 100k reports, median of 3
    python bench/run.py --sizes 1000 10000 --repeats 1

For each size, synthetic Google and Microsoft Forms exports (bench/generate.py) go into a
fresh deployment folder with the embedded connectors (the two exports, a SQLite store, an
XLSX tracker, a folder of .eml files) and the default `recent_days`, as a real first
connection of a form with history would be. Then three runs are measured, each
`nearmiss run` in a fresh process so imports and peak memory are the real thing:

- first run: the whole history comes in (Monday 23 November 2026, 09:00);
- steady run: five minutes later, nothing new;
- 10 new + 5 edits: an hour later, with 10 new submissions in the exports and five changes a
  manager typed into the tracker (a triage, a closure with an outcome, a notification
  decision, a pattern taken under review, a new action).

Every repeat of a run starts from a copy of the same state, so each measures the same work.
Wall time, CPU time (user + system) and peak resident memory are each the median of the
repeats. Targets on 2 cores: a steady run at 100k reports under 10 s and 800 MB, the run with
10 new reports under 15 s, and the steady run growing by under 0.1 s per 1,000 reports of
history. Progress goes to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/run.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
CONFIG_NAME = "nearmiss.yaml"

# The generated exports end mid-November 2026 (bench/generate.py); the first run connects
# the forms the Monday after, as the demo does. Europe/London is on UTC in November.
FIRST = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
STEADY = FIRST + timedelta(minutes=5)
NEXT = FIRST + timedelta(hours=1)
NEW_REPORTS = 10
NEW_SEED = 11  # the 10 new submissions: any seed other than the history's

RUNS = ("first run", "steady run", "10 new + 5 edits")
TARGET_SIZE = 100_000
STEADY_SECONDS, STEADY_MB, NEXT_SECONDS, GROWTH_SECONDS = 10.0, 800.0, 15.0, 0.1


@dataclass(frozen=True)
class Measure:
    wall: float  # seconds
    cpu: float  # seconds, user + system of the run's process
    peak_mb: float  # its maximum resident set size
    returncode: int
    summary: str  # the run's own summary line, to see what it did


# -- the deployment ---------------------------------------------------------------------------


def deployment_config() -> str:
    """The demo deployment (embedded connectors, paths relative to the config file) with the
    default `recent_days` (the demo's 120 days would acknowledge the whole synthetic
    history), and no cap on the emails of one run: the first run sends what it owes, so the
    steady run measures a run with nothing to do, not the tail of the first run's backlog.
    For the same reason the brake on mass requests is off: the synthetic history's
    incomplete reports would be held until a person released them."""
    import yaml

    data = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text(encoding="utf-8"))
    data["mail"].pop("recent_days", None)
    data["mail"]["max_per_run"] = 1_000_000
    data["mail"]["hold_requests"] = None
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def new_reports(count: int = NEW_REPORTS, seed: int = NEW_SEED) -> list[dict[str, Any]]:
    """`count` submissions made between the steady run and the next one, nothing edited later.

    Drawn from a pool generated over the week of the first run: the generator spreads
    submissions over days, and only the window between the two runs is wanted.
    """
    from bench.generate import EDITED, SUBMITTED, generate_reports

    after = STEADY.replace(tzinfo=None)  # naive London time = UTC in November
    before = NEXT.replace(tzinfo=None)
    pool = 2_000
    while True:
        rows = generate_reports(pool, seed=seed, start=FIRST.date(), weeks=1)
        found = [r for r in rows if after < r[SUBMITTED] and (r[EDITED] or r[SUBMITTED]) < before]
        if len(found) >= count:
            return found[:count]
        pool *= 2


def prepare(n: int, folder: Path) -> None:
    """Write `folder`/base (config and exports of `n` reports) and `folder`/next-exports
    (the same exports with the new submissions added)."""
    from bench.generate import (
        GOOGLE_FILE,
        GOOGLE_SOURCE,
        MICROSOFT_FILE,
        SOURCE,
        generate_reports,
        write_google_csv,
        write_microsoft_xlsx,
    )

    base = folder / "base"
    (base / "exports").mkdir(parents=True)
    (base / CONFIG_NAME).write_text(deployment_config(), encoding="utf-8")
    history = generate_reports(n)
    # Rewritten whole, as the platforms export them: Microsoft numbers responses in order of
    # submission, so the history keeps its ids and the new ones come after.
    for rows, out in ((history, base / "exports"),
                      (history + new_reports(), folder / "next-exports")):
        write_google_csv([r for r in rows if r[SOURCE] == GOOGLE_SOURCE], out / GOOGLE_FILE)
        write_microsoft_xlsx([r for r in rows if r[SOURCE] != GOOGLE_SOURCE],
                             out / MICROSOFT_FILE)


def edit_tracker(path: Path) -> list[str]:
    """Five changes a manager types into the tracker workbook, saved as Excel would.

    The most recent reports are the ones a manager works on. Returns what was changed.
    """
    from openpyxl import load_workbook

    from transforms.tracker import ACTIONS, PATTERNS, REPORTS

    wb = load_workbook(path)
    today = FIRST.date()
    done: list[str] = []

    def columns(title: str) -> dict[str, int]:
        return {c.value: c.column for c in wb[title][1] if c.value}

    reports, col = wb[REPORTS.title], columns(REPORTS.title)
    # Newest first; the closure goes to a reporter the loop could acknowledge, so it owes
    # them an outcome email.
    rows = sorted(range(2, reports.max_row + 1),
                  key=lambda r: str(reports.cell(r, col["Submitted"]).value or ""),
                  reverse=True)
    reachable = [r for r in rows
                 if str(reports.cell(r, col["Loop"]).value or "").startswith("acknowledged")]
    close = reachable[0] if reachable else rows[0]
    others = [r for r in rows if r != close]
    edits = [
        (close, {"Triage status": "Closed", "Triage date": today,
                 "Just-culture classification": "Not applicable",
                 "Outcome for reporter": "Thank you: the medication round now has a second "
                                         "check at handover.", "Closed on": today}),
        (others[0], {"Triage status": "Triaged", "Triage date": today,
                     "Just-culture classification": "Human error"}),
        (others[1], {"Notification decision": "Not notifiable", "Triage status": "In review"}),
    ]
    for row, values in edits:
        for title, value in values.items():
            reports.cell(row, col[title]).value = value
        done.append(f"{reports.cell(row, col['Report ID']).value}: {', '.join(values)}")

    patterns = wb[PATTERNS.title] if PATTERNS.title in wb.sheetnames else None
    pattern = None
    if patterns is not None and patterns.max_row > 1:
        pcol = columns(PATTERNS.title)
        pattern = patterns.cell(2, pcol["Pattern ID"]).value
        patterns.cell(2, pcol["Review status"]).value = "Under review"
        patterns.cell(2, pcol["Review owner"]).value = "Registered manager"
        done.append(f"{pattern}: Review status, Review owner")
    else:  # too little history for a pattern: one more report decision instead
        reports.cell(others[2], col["Triage status"]).value = "Triaged"
        done.append(f"{reports.cell(others[2], col['Report ID']).value}: Triage status")

    if ACTIONS.title in wb.sheetnames:
        actions, acol = wb[ACTIONS.title], columns(ACTIONS.title)
        # A row without an id: the loop gives it the next action id.
        row = actions.max_row + 1
        linked = pattern or reports.cell(close, col["Report ID"]).value
        for title, value in {"Linked to": linked, "Action": "Second check of the MAR chart "
                             "at every handover", "Owner": "Team leader",
                             "Due": today + timedelta(days=14), "Status": "Open"}.items():
            actions.cell(row, acol[title]).value = value
        done.append(f"new action on {linked}")
    wb.save(path)
    return done


# -- measuring ----------------------------------------------------------------------------------


def _peak_mb(maxrss: int) -> float:
    return maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes vs KiB


def measure(config: Path, now: datetime, log: Path) -> Measure:
    """One `nearmiss run` in a fresh process; its own CPU time and peak memory via wait4."""
    cmd = [sys.executable, "-m", "jobs.cli", "--config", str(config), "run",
           "--now", now.isoformat()]
    with log.open("w", encoding="utf-8") as out:  # a file, not a pipe: nothing to drain
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    summary = next((s for s in lines if s.startswith("nearmiss: ")), lines[-1] if lines else "")
    return Measure(wall, usage.ru_utime + usage.ru_stime, _peak_mb(usage.ru_maxrss),
                   proc.returncode, summary)


def _copy(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    # The copy's hundreds of MB are written out now, not while the measured run goes.
    os.sync()


def _child(*args: str) -> Any:
    """Set-up work in its own process: the bench's memory stays small while runs are measured."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"bench set-up failed: {' '.join(args)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def bench_size(n: int, repeats: int, folder: Path) -> dict[str, list[Measure]]:
    """The three runs at one size, each `repeats` times from a copy of the same state."""
    started = time.perf_counter()
    _progress(f"[{n:,}] generating exports")
    _child("--prepare", str(n), str(folder))
    work = folder / "work"
    results: dict[str, list[Measure]] = {}

    def runs(name: str, state: Path, now: datetime) -> None:
        results[name] = []
        for i in range(1, repeats + 1):
            _copy(state, work)
            m = measure(work / CONFIG_NAME, now, folder / "run.log")
            results[name].append(m)
            failed = f" FAILED (exit {m.returncode})" if m.returncode else ""
            _progress(f"[{n:,}] {name} {i}/{repeats}: {m.wall:.2f} s wall, {m.cpu:.2f} s CPU, "
                      f"{m.peak_mb:.0f} MB{failed} -- {m.summary}")

    runs(RUNS[0], folder / "base", FIRST)
    work.rename(folder / "after-first")
    runs(RUNS[1], folder / "after-first", STEADY)
    before_next = folder / "before-next"
    work.rename(before_next)
    for export in (folder / "next-exports").iterdir():
        shutil.copy2(export, before_next / "exports" / export.name)
    _progress(f"[{n:,}] a manager edits the tracker")
    for line in _child("--edit-tracker", str(before_next / "tracker.xlsx")):
        _progress(f"[{n:,}]   {line}")
    runs(RUNS[2], before_next, NEXT)
    _progress(f"[{n:,}] done in {time.perf_counter() - started:.0f} s")
    return results


# -- the report ---------------------------------------------------------------------------------


def medians(measures: Sequence[Measure]) -> tuple[float, float, float]:
    return (statistics.median(m.wall for m in measures),
            statistics.median(m.cpu for m in measures),
            statistics.median(m.peak_mb for m in measures))


def _cell(measures: Sequence[Measure]) -> str:
    wall, cpu, peak = medians(measures)
    return f"{wall:.2f} s / {cpu:.2f} s / {peak:.0f} MB"


def _verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def report(results: dict[int, dict[str, list[Measure]]]) -> list[str]:
    """The table, the steady run's growth with history, and each target met or not."""
    lines = [" | ".join(["reports", *(f"{r} (wall / CPU / peak)" for r in RUNS)])]
    for n, runs in results.items():
        lines.append(" | ".join([f"{n:,}", *(_cell(runs[r]) for r in RUNS)]))

    steady = {n: medians(runs[RUNS[1]])[0] for n, runs in sorted(results.items())}
    sizes = list(steady)

    def slope(a: int, b: int) -> float:
        return (steady[b] - steady[a]) / ((b - a) / 1_000)

    if len(sizes) > 1:
        pairs = "; ".join(f"{a:,} -> {b:,}: {slope(a, b):+.3f} s"
                          for a, b in pairwise(sizes))
        lines.append(f"steady run growth per 1,000 reports: {pairs}")
    else:
        lines.append("steady run growth per 1,000 reports: needs two sizes")

    lines.append("targets (2 cores):")
    at = results.get(TARGET_SIZE)
    if at is None:
        lines.append(f"  steady run and 10 new + 5 edits at {TARGET_SIZE:,} reports: not "
                     f"measured (add {TARGET_SIZE} to --sizes)")
    else:
        wall, _, peak = medians(at[RUNS[1]])
        nxt = medians(at[RUNS[2]])[0]
        lines += [
            f"  steady run at {TARGET_SIZE:,} reports under {STEADY_SECONDS:g} s: "
            f"{wall:.2f} s: {_verdict(wall < STEADY_SECONDS)}",
            f"  steady run at {TARGET_SIZE:,} reports under {STEADY_MB:g} MB: "
            f"{peak:.0f} MB: {_verdict(peak < STEADY_MB)}",
            f"  10 new + 5 edits at {TARGET_SIZE:,} reports under {NEXT_SECONDS:g} s: "
            f"{nxt:.2f} s: {_verdict(nxt < NEXT_SECONDS)}",
        ]
    if len(sizes) > 1:
        # Over the whole range measured: the pairs above show where the growth comes from.
        growth = slope(sizes[0], sizes[-1])
        lines.append(f"  steady run growth under {GROWTH_SECONDS:g} s per 1,000 reports: "
                     f"{growth:+.3f} s ({sizes[0]:,} -> {sizes[-1]:,}): "
                     f"{_verdict(growth < GROWTH_SECONDS)}")
    else:
        lines.append(f"  steady run growth under {GROWTH_SECONDS:g} s per 1,000 reports: "
                     "not measured (needs two sizes)")
    # What each run did, from its own summary line: a steady run still sends what earlier
    # runs queued beyond mail.max_per_run, and that belongs in reading its figure.
    lines.append("what the runs did (the last of each):")
    lines += [f"  {n:,} {name}: {ms[-1].summary.removeprefix('nearmiss: ')}"
              for n, runs in results.items() for name, ms in runs.items()]

    failed = [f"{n:,} {name} #{i}: exit {m.returncode}: {m.summary}"
              for n, runs in results.items() for name, ms in runs.items()
              for i, m in enumerate(ms, start=1) if m.returncode]
    if failed:
        lines.append("runs that failed (their figures are not the loop's):")
        lines += [f"  {f}" for f in failed]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000],
                        help="numbers of reports of history (default: 1000 10000 100000)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each kind; figures are their medians (default: 3)")
    parser.add_argument("--workdir", type=Path,
                        help="keep the deployment folders here (default: a temporary folder)")
    parser.add_argument("--prepare", nargs=2, metavar=("N", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--edit-tracker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(int(args.prepare[0]), Path(args.prepare[1]))
        print(json.dumps("prepared"))
        return 0
    if args.edit_tracker:
        print(json.dumps(edit_tracker(args.edit_tracker)))
        return 0
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    import pandas as pd

    print(f"Nearmiss Loop end-to-end benchmark ({sys.platform}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}, pandas {pd.__version__}); median of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.2f} at the start")
    results: dict[int, dict[str, list[Measure]]] = {}
    with tempfile.TemporaryDirectory(prefix="nearmiss-bench-") as tmp:
        root = args.workdir or Path(tmp)
        for n in args.sizes:
            folder = root / str(n)
            if folder.exists():
                shutil.rmtree(folder)
            results[n] = bench_size(n, args.repeats, folder)
            if not args.workdir:
                shutil.rmtree(folder)  # 100k reports leave a few copies of a large store
    for line in report(results):
        print(line)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 1 if any(m.returncode for runs in results.values() for ms in runs.values()
                    for m in ms) else 0


if __name__ == "__main__":
    sys.exit(main())
