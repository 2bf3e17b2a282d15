"""Speed and memory of the loop's heavy steps on synthetic data: prints figures, asserts none.

    python bench/pipeline.py                       # 1k, 10k, 100k reports; repeats on 1M
    python bench/pipeline.py --sizes 1000 --repeats 0

For each size a Google Forms CSV export is generated (bench/generate.py), then a fresh
process reads it, stores it in SQLite, normalises it, and times checks + triage + repeats,
the steps with targets: 100k reports in under 15 s and 1.5 GB; repeats on 1M in under 10 s.
Peak memory is the measuring process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

if __package__ in (None, ""):  # run as `python bench/pipeline.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from bench.generate import generate_reports, write_google_csv

TZ = ZoneInfo("Europe/London")
NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(csv: Path) -> dict[str, float]:
    """Run the stages on one export in this process; seconds per stage and peak MB."""
    from checks.quality import check_reports
    from config import load_config
    from connectors.form_exports import GoogleFormsCsvSource
    from connectors.store import Store
    from domain.ids import report_id
    from transforms import normalize, repeats
    from transforms.triage import triage

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "demo.yaml")
    rules = config.rules
    out: dict[str, float] = {}

    def stage(name: str, fn):
        start = time.perf_counter()
        result = fn()
        out[name] = time.perf_counter() - start
        return result

    pulled = stage("read export", lambda: GoogleFormsCsvSource("google-form", csv, TZ).pull())
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "bench.db")
        store.begin_run(NOW)
        stage("store", lambda: store.add_raw(pulled.responses, NOW))

        def normalise() -> pd.DataFrame:
            mapped = normalize.map_answers(store.latest_responses(),
                                           {"google-form": config.settings.mapping}, rules, TZ)
            plan = normalize.plan_links(mapped.responses, store.links())
            ids = store.allocate("report", len(plan.needs_number))
            store.add_links(plan.needs_number.assign(
                report_id=[report_id(i) for i in ids], how="new"), NOW)
            return normalize.combine(mapped.responses, store.links(), rules)

        reports = stage("normalise", normalise)
    stage("import GX", lambda: __import__("great_expectations"))  # once per process
    stage("checks", lambda: check_reports(reports, rules, NOW))
    stage("triage", lambda: triage(reports, rules, TZ))
    stage("repeats", lambda: repeats.detect(reports, rules))
    out["checks + triage + repeats"] = out["checks"] + out["triage"] + out["repeats"]
    out["reports"] = len(reports)
    out["peak MB"] = _peak_mb()
    return out


def synthetic_for_repeats(n: int, seed: int = 1) -> pd.DataFrame:
    """Only what repeat detection reads, built with numpy: 3 years, 60 services, 40k people."""
    from config import load_rules

    rules = load_rules()
    rng = np.random.default_rng(seed)
    categories = np.array(list(rules.taxonomy["categories"]))
    factors = np.array(list(rules.taxonomy["contributing_factors"]))
    start = pd.Timestamp("2024-01-01", tz="UTC").value
    span = int(3 * 365 * 86400 * 1e9)
    counts = rng.integers(1, 4, n)
    picks = rng.integers(0, len(factors), counts.sum())
    cuts = np.cumsum(counts)[:-1]
    return pd.DataFrame({
        "report_id": [f"NM-{i:07d}" for i in range(1, n + 1)],
        "occurred_at": pd.to_datetime(start + rng.integers(0, span, n), utc=True),
        "category": categories[rng.integers(0, len(categories), n)],
        "service": np.char.add("Service ", rng.integers(0, 60, n).astype(str)),
        "contributing_factors": [list(f) for f in np.split(factors[picks], cuts)],
        "person_ref": np.char.add("P-", rng.integers(0, 40_000, n).astype(str)),
    })


def measure_repeats(n: int) -> dict[str, float]:
    from config import load_rules
    from transforms import repeats

    frame = synthetic_for_repeats(n)
    rules = load_rules()
    start = time.perf_counter()
    found = repeats.detect(frame, rules)
    return {"repeats": time.perf_counter() - start, "reports": n,
            "patterns": len(found.patterns), "peak MB": _peak_mb()}


def _child(*args: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=1_000_000,
                        help="reports for the repeats-only figure (0 to skip)")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeats-only", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # in a fresh process, so peak memory is this size's alone
        print(json.dumps(measure(args.one)))
        return 0
    if args.repeats_only:
        print(json.dumps(measure_repeats(args.repeats_only)))
        return 0

    print(f"Nearmiss Loop benchmark ({sys.platform}, Python {sys.version.split()[0]}, "
          f"pandas {pd.__version__})")
    header = ["reports", "read export", "store", "normalise", "import GX", "checks", "triage",
              "repeats", "checks + triage + repeats", "peak MB"]
    print(" | ".join(header))
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            csv = Path(tmp) / f"{n}.csv"
            # Generated in this process and measured in a fresh one: the generator's own
            # memory must not count.
            write_google_csv(generate_reports(n), csv)
            row = _child("--one", str(csv))
            print(" | ".join(f"{row[h]:.0f}" if h in ("reports", "peak MB") else
                             f"{row[h]:.2f} s" for h in header))
    if args.repeats:
        row = _child("--repeats-only", str(args.repeats))
        print(f"repeats alone on {row['reports']:,} reports: {row['repeats']:.2f} s, "
              f"{row['patterns']:,} patterns, peak {row['peak MB']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
