"""The `nearmiss` command line.

Every failure a user can cause or fix ends in one line on stderr and a non-zero exit:
2 for configuration mistakes (all of them listed), 1 for everything else.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from config.settings import Config, ConfigError, fields_of, load_config
from domain.ids import canonical_id

if TYPE_CHECKING:  # imported by the commands that run it, so `--help` stays quick
    from jobs.pipeline import RunSummary

# The sample exports end on Friday 20 November 2026: the demo runs as of the Monday after,
# so it tells the same story whenever it is run.
DEMO_NOW = "2026-11-23T09:00:00+00:00"
DEFAULT_CONFIG = "nearmiss.yaml"

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("config", "connectors", "domain", "transforms", "checks", "jobs", "migrations")


def _common(defaults: bool) -> argparse.ArgumentParser:
    """--config and --verbose, taken before or after the command (`nearmiss run --config
    x.yaml` as well as `nearmiss --config x.yaml run`). Only the top level has defaults: a
    command's own would overwrite what was given before it."""
    common = argparse.ArgumentParser(add_help=False)
    unset = {} if defaults else {"default": argparse.SUPPRESS}
    common.add_argument("--config", type=Path, **(unset or {
        "default": Path(os.environ.get("NEARMISS_CONFIG", DEFAULT_CONFIG))}),
                        help="deployment YAML (default: $NEARMISS_CONFIG or ./nearmiss.yaml)")
    common.add_argument("-v", "--verbose", action="store_true", **unset,
                        help="log each step; show a traceback on an internal error")
    return common


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("nearmiss-loop")
    except PackageNotFoundError:  # run from a source folder without installing
        return "unknown (not installed)"


class _Parser(argparse.ArgumentParser):
    """Subcommands inherit --config and --verbose."""

    def __init__(self, *args, **kwargs) -> None:
        if kwargs.get("add_help", True) and "parents" not in kwargs:
            kwargs["parents"] = [_common(defaults=False)]
        super().__init__(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nearmiss", parents=[_common(defaults=True)],
        description="Near-miss learning loop: form submissions in; validated, triaged reports, "
                    "repeat patterns, a shared tracker and closed-loop emails out.")
    parser.add_argument("--version", action="version", version=f"nearmiss {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    p = sub.add_parser("run", help="run the loop once (schedule this)",
                       description="Pull new submissions, validate, triage, find repeats, "
                                   "update the tracker and send the emails owed.")
    p.add_argument("--now", help="run as of this ISO time (replays, tests); default: now")

    p = sub.add_parser("demo", help="run the loop on the bundled sample exports",
                       description="Copy the sample Google and Microsoft Forms exports and the "
                                   "demo config to a work folder, run the loop, and show "
                                   "what it produced.")
    p.add_argument("--workdir", type=Path, default=Path("demo-output"),
                   help="folder for the demo (default: ./demo-output)")
    p.add_argument("--fresh", action="store_true", help="start the demo folder afresh")

    p = sub.add_parser("check", help="validate the config and rules, and say what is checked",
                       description="Load the config and rules files, report every mistake, "
                                   "and list the data-quality checks and triage rules.")

    p = sub.add_parser("init", help="a starter config for your own form's export",
                       description="Read a form's export (a Google Forms .csv download or a "
                                   "Microsoft Forms .xlsx workbook) and write a starter config: "
                                   "each question mapped to its likeliest field and each option "
                                   "text to its likeliest value, the unsure ones marked DECIDE.")
    origin = p.add_mutually_exclusive_group(required=True)
    origin.add_argument("--from", dest="export", type=Path, metavar="EXPORT",
                        help="the form's export file")
    origin.add_argument("--google-form", metavar="ID",
                        help="a Google Form read through the Forms API (its id, between /d/ "
                             "and /edit in its address); credentials as under `google:` in "
                             "the README")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_CONFIG),
                   help="the config to write (default: ./nearmiss.yaml)")
    p.add_argument("--timezone", default="Europe/London",
                   help="the deployment's IANA time zone (default: Europe/London)")
    p.add_argument("--provider", default="our service", help="the provider's name for emails")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")

    p = sub.add_parser("forms", help="Google Forms: create the standard near-miss form",
                       description="Make forms through the Google Forms API.")
    forms_sub = p.add_subparsers(dest="forms_command", required=True, metavar="ACTION")
    p = forms_sub.add_parser(
        "create", help="create the standard near-miss Google Form",
        description="Create a Google Form asking every report field, its options the "
                    "taxonomy's labels, under the titles the bundled mapping reads; print its "
                    "id and the config lines. It is neither shared nor published.")
    p.add_argument("--title", default="Near-miss report", help="the form's title")

    p = sub.add_parser("preview", help="the loop on a scratch copy: sends and writes nothing",
                       description="Run the whole loop on a scratch copy of the store, "
                                   "sending no email and writing no tracker, and show what it "
                                   "would do: reports by status, what incomplete ones lack, "
                                   "pathways, patterns, and one of each email.")
    p.add_argument("--now", help="preview as of this ISO time; default: now")

    p = sub.add_parser("fields", help="every report field: label, values, when required",
                       description="List the rules' report fields with their labels, allowed "
                                   "values, the sets that require them, and the questions and "
                                   "value maps of this config that fill them.")

    p = sub.add_parser("explain", help="the audit trail of a report, pattern or action",
                       description="Print every decision and manager change recorded for "
                                   "one id, oldest first.")
    p.add_argument("id", help="a report (NM-000012), pattern (PT-0003) or action (A-0001) id")

    p = sub.add_parser("release", help="send requests the mass-request brake held",
                       description="Requests for missing items that one run would have sent "
                                   "to many reporters at once are held as a likely mapping "
                                   "problem. Release them when they are right: the next run "
                                   "sends them.")
    p.add_argument("what", choices=["missing-info"])

    p = sub.add_parser("doctor", help="check every permission the config needs",
                       description="Try each connector of the config without changing "
                                   "anything, and say what is missing and how to fix it.")

    p = sub.add_parser("migrate", help="bring the store's schema up to this release",
                       description="Apply the schema migrations this release needs to the "
                                   "configured store (a PostgreSQL store needs this after "
                                   "an upgrade; a SQLite file is migrated by its first run).")

    p = sub.add_parser("store", help="store administration: copy",
                       description="Administer the configured store.")
    store_sub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    p = store_sub.add_parser(
        "copy", help="copy the store into an empty PostgreSQL database",
        description="Copy every row of the configured store (ids, counters, the audit log) "
                    "into an empty PostgreSQL database, created at this release's schema; "
                    "then point the config's store at it.")
    p.add_argument("--to", required=True, metavar="URL",
                   help="the target, postgresql+psycopg://user@host:5432/database (no "
                        "password in it)")
    p.add_argument("--password-env", metavar="NAME",
                   help="the environment variable holding the target database's password")

    p = sub.add_parser("evidence", help="write the evidence pack of a date range",
                       description="Write an evidence pack for inspectors and commissioners: "
                                   "a workbook (reports, escalations and notification "
                                   "decisions, patterns, actions, the audit trail of the "
                                   "range) and an HTML report with the figures and charts. "
                                   "Nothing is sent or changed.")
    p.add_argument("--from", dest="start", required=True, type=_day, metavar="DATE",
                   help="the first local day, YYYY-MM-DD")
    p.add_argument("--to", dest="end", required=True, type=_day, metavar="DATE",
                   help="the last local day, YYYY-MM-DD")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where to write it (default: an `evidence` folder beside the config)")
    p.add_argument("--with-person-refs", action="store_true",
                   help="keep person-served references (left out by default)")

    p = sub.add_parser("auth", help="sign in once as a person (Google or Microsoft)",
                       description="Run the one-time OAuth consent for `google.auth: user`, "
                                   "or the device-code sign-in for `microsoft.auth: device`, "
                                   "and store the token where the config says.")
    p.add_argument("provider", choices=["google", "microsoft"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Timestamped: a scheduled job's log is appended to one file, run after run.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S%z")
    from connectors.errors import NearmissError

    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # inside the try: a closed pipe must be met here, not at exit
        return code
    except ConfigError as exc:
        for line in exc.lines():
            print(f"nearmiss: config: {line}", file=sys.stderr)
        return 2
    except NearmissError as exc:
        print(f"nearmiss: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nearmiss: interrupted; nothing stored was lost", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`nearmiss check | head`): nothing is wrong with the job, and
        # Python's flush at exit must not complain about the closed pipe either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if args.verbose:
            raise
        # The message of an unexpected error may quote report text or SQL: name only its
        # type and where our code raised it.
        print(f"nearmiss: internal error: {type(exc).__name__} in {_raised_at(exc)} (run "
              "with --verbose for details)", file=sys.stderr)
        return 1


def _raised_at(exc: BaseException) -> str:
    """`package/module.py:line` of the innermost frame of this project in `exc`'s traceback."""
    where = "an unknown place"
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            relative = Path(frame.filename).resolve().relative_to(ROOT)
        except ValueError:
            continue
        if relative.parts[0] in PACKAGES:
            where = f"{relative.as_posix()}:{frame.lineno}"
    return where


def _now(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return pd.Timestamp(text).to_pydatetime()
    except ValueError:
        raise ConfigError([("--now", f"{text!r} is not an ISO date and time")]) from None


def cmd_run(args: argparse.Namespace) -> int:
    from jobs.pipeline import run

    config = load_config(args.config)
    summary = run(config, now=_now(args.now))
    print(f"nearmiss: {summary.line()}")
    for line in summary.unmapped:
        print(f"nearmiss: unmapped question (reports held until mapped): {line}")
    for line in summary.warnings:
        print(f"nearmiss: warning: {line}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from jobs.pipeline import RunFailed, run

    work: Path = args.workdir
    if args.fresh and work.exists():
        shutil.rmtree(work)
    samples = resources.files("config") / "samples"
    (work / "exports").mkdir(parents=True, exist_ok=True)
    for item in samples.iterdir():
        if item.name.startswith("near-miss-") and not (work / "exports" / item.name).exists():
            (work / "exports" / item.name).write_bytes(item.read_bytes())
    config_path = work / DEFAULT_CONFIG
    if not config_path.exists():
        config_path.write_text((resources.files("config") / "demo.yaml").read_text())
    config = load_config(config_path)
    try:
        summary = run(config, now=pd.Timestamp(DEMO_NOW).to_pydatetime())
    except RunFailed as exc:
        print(f"nearmiss: error: {exc}", file=sys.stderr)
        return 1
    _show_demo(config, summary, config_path)
    return 0


def _show_demo(config: Config, summary: RunSummary, config_path: Path) -> None:
    from connectors.store import Store

    s = config.settings
    store = Store.open(s.store)
    outbox = store.outbox_frame()
    sent = outbox[outbox["sent_at"].notna()]
    folder = s.mail.transport.path  # the demo config uses the .eml outbox folder
    print(f"Nearmiss Loop demo (as of {DEMO_NOW[:10]}), in {config_path.parent}/")
    print(f"  this run: {summary.line()}")
    print(f"  reports in the store: {store.report_count()}")
    by_kind = sent.groupby("kind").size().to_dict()
    print(f"  emails written: {len(sent)} "
          f"({', '.join(f'{n} {k}' for k, n in sorted(by_kind.items()))})")
    print(f"  tracker:  {_here(s.tracker.path)}")
    print(f"  outbox:   {_here(folder)}/  ({len(list(Path(folder).glob('*.eml')))} .eml files)")
    print(f"  store:    {_here(s.store.path)}  (audit log: nearmiss --config {config_path} "
          "explain NM-000001)")
    patterns = store.patterns()
    for pid, p in sorted(patterns.items()):
        print(f"  pattern {pid} ({' · '.join(map(str, p['key']))}): {p['status']}, "
              f"{len(p['members'])} reports ({', '.join(p['members'])})")
    print(f"Run it again (nothing new is added): nearmiss --config {config_path} run")


def _here(path: Path) -> Path:
    """A path as short as it can be said from the current folder."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return Path(path)


def cmd_check(args: argparse.Namespace) -> int:
    from config.settings import credential_problems

    # Checking sends and fetches nothing: it runs where the secrets are not (a workstation,
    # a CI job), and says which ones `nearmiss run` will need.
    config = load_config(args.config, check_credentials=False)
    rules = config.rules
    print(f"nearmiss: {args.config} is valid: {len(config.settings.sources)} source(s), "
          f"{len(rules.fields)} fields, {len(rules.triage.rules)} triage rules, "
          f"{len(rules.repeats)} repeat rules")
    for key, message in credential_problems(config.settings):
        print(f"  note: {key}: {message} (`nearmiss run` needs it; checking does not)")
    for src in config.settings.sources:
        if not any("report_reference" in fields_of(f)
                   for f in config.settings.mapping_for(src).values()):
            print(f"  note: {src.name}: no question maps to report_reference, so a follow-up "
                  "cannot name its report: requests for missing items ask reporters to "
                  + ("reply by email" if config.settings.mail.reply_to else
                     "give the items to their manager (set mail.reply_to to take replies)"))
    # The exports on this machine are data to look at too: questions the mapping lacks,
    # option texts no value reads, dates in both orders (what doctor says of them).
    from config.settings import GoogleFormsCsv, MicrosoftFormsXlsx
    from jobs.doctor import Doctor

    said: list[str] = []
    looking = Doctor(config, None, said.append)
    for i, src in enumerate(config.settings.sources):
        if isinstance(src, GoogleFormsCsv | MicrosoftFormsXlsx) and Path(src.path).is_file():
            looking.export_file(f"source {src.name}", src, f"sources.{i}")
    for line in said:
        if not line.startswith("ok: "):
            print(f"  data: {line.split(': ', 1)[1]}")
    from checks.quality import suite_description

    for line in suite_description(rules):
        print(f"  check: {line}")
    for rule in rules.triage.rules:
        print(f"  triage: {rule.id} -> {rule.pathway}")
    return 0


def cmd_init(args: argparse.Namespace, google: Any = None) -> int:
    from config.settings import load_rules
    from jobs.init import starter_config, starter_config_for_form, write_starter

    rules = load_rules()
    if args.export is not None:
        def make() -> Any:
            return starter_config(args.export, rules, tz=args.timezone,
                                  provider=args.provider, config_dir=args.out.parent)
    else:
        def make() -> Any:
            from config.settings import GoogleSettings
            from connectors.google_auth import GoogleClients
            from connectors.google_forms import GoogleFormsSource

            clients = google or GoogleClients.from_settings(GoogleSettings(), ["forms"])
            form = GoogleFormsSource("form", args.google_form, clients).form()
            return starter_config_for_form(args.google_form, form, rules, tz=args.timezone,
                                           provider=args.provider)
    fields, values = write_starter(args.out, make, force=args.force)
    unsure = [g for g in fields if not g.sure] + [g for gs in values.values() for g in gs
                                                  if not g.sure]
    print(f"nearmiss: wrote {args.out}: {len(fields)} questions "
          f"({sum(g.sure for g in fields)} mapped), value maps for {len(values)} fields; "
          f"{len(unsure)} line(s) marked DECIDE need a person, then `nearmiss check`")
    return 0


def cmd_forms(args: argparse.Namespace, google: Any = None) -> int:
    from config.settings import GoogleSettings, load_rules
    from jobs.forms import config_lines, create_standard_form

    if google is None:
        from connectors.google_auth import GoogleClients

        # The config's `google:` section when there is a config, the defaults otherwise.
        settings = (load_config(args.config, check_credentials=False).settings.google
                    if args.config.exists() else None) or GoogleSettings()
        google = GoogleClients.from_settings(settings, ["forms_write"])
    form = create_standard_form(google.service("forms", "v1"), load_rules(), args.title)
    count = len(form.get("items") or [])
    print(f"nearmiss: created the form {form['formId']} ({count} questions), not shared: "
          f"{form.get('responderUri', '')}")
    for line in config_lines(form):
        print(line)
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    import tempfile

    from jobs.preview import preview, report_lines

    config = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="nearmiss-preview-") as scratch:
        result = preview(config, Path(scratch), now=_now(args.now))
        try:
            for line in report_lines(result, config):
                print(line)
        finally:
            result.store.close()
    return 0


def cmd_fields(args: argparse.Namespace) -> int:
    from checks.quality import describe_condition

    config = load_config(args.config, check_credentials=False)
    rules, settings = config.rules, config.settings
    questions: dict[str, list[str]] = {}
    for src in settings.sources:
        for question, target in settings.mapping_for(src).items():
            for field in fields_of(target):
                where = questions.setdefault(field, [])
                if repr(question) not in where:
                    where.append(repr(question))
    for name, spec in rules.fields.items():
        print(f"{name}: {spec.label} ({spec.type})")
        if choices := rules.choices(name):
            print("  values: " + ", ".join(f"{k} ({v})" for k, v in choices.items()))
        for req in rules.required:
            for entry in req.names:
                if name not in entry.split("|"):
                    continue
                when = " and ".join(describe_condition(rules, c) for c in req.when)
                also = f" (or {rules.label(entry)})" if entry != name else ""
                print(f"  required ({req.name}): {'when ' + when if when else 'always'}{also}")
        if name in questions:
            print("  from: " + ", ".join(questions[name]))
        for src in settings.sources:
            for text, value in settings.value_maps_for(src).get(name, {}).items():
                print(f"  value map ({src.name}): {text!r} -> {value or 'no answer'}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from connectors.store import Store

    config = load_config(args.config, check_credentials=False)  # reads the store only
    store = Store.open(config.settings.store)
    entity = canonical_id(args.id) or args.id.strip()  # "nm-1" is NM-000001
    trail = store.audit_trail(entity)
    if not trail:
        print(f"nearmiss: nothing recorded for {entity}", file=sys.stderr)
        return 1
    tz = config.settings.tz
    for e in trail:
        at = pd.Timestamp(e["at"]).tz_convert(tz).strftime("%Y-%m-%d %H:%M")
        print(f"{at}  run {e['run_id']:>4}  {e['event']:<18} {e['reason']}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from jobs.doctor import doctor

    config = load_config(args.config)
    problems = doctor(config)
    return 1 if problems else 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from connectors.store import Store
    from jobs.lock import run_lock

    config = load_config(args.config, check_credentials=False)  # only the store's secret
    _store_credentials(config)
    settings = config.settings.store
    store = Store.connect(settings)
    try:
        with run_lock(settings):  # never under a running run's feet
            was, now = store.migrate()
    finally:
        store.close()
    print(f"nearmiss: the store {store.name} is at revision {now}: nothing to do" if was == now
          else f"nearmiss: the store {store.name} was at revision {was}, now at {now}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    from connectors.base import AuditEvent
    from connectors.store import Store
    from jobs.lock import run_lock

    config = load_config(args.config, check_credentials=False)  # only the store's secret
    _store_credentials(config)
    store = Store.open(config.settings.store)
    now = datetime.now(UTC)
    try:
        with run_lock(config.settings.store), store.atomic():
            released = store.release_requests(now)
            if released:
                store.audit([AuditEvent("email", "missing-info", "requests released",
                                        f"{released} held requests released by a person")],
                            now)
    finally:
        store.close()
    print(f"nearmiss: {released} held requests released; the next run sends them"
          if released else "nearmiss: no request is held")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from config.settings import StoreSettings, pydantic_problems
    from connectors.store import Store, copy_store
    from jobs.lock import run_lock

    config = load_config(args.config, check_credentials=False)
    _store_credentials(config)
    try:
        target = StoreSettings(url=args.to, password_env=args.password_env)
    except ValidationError as exc:
        raise ConfigError([("--to", m) for _, m in pydantic_problems(exc)]) from None
    if target.password_env and target.password() is None:
        raise ConfigError([("--password-env", f"environment variable {target.password_env} "
                            "is not set: export the target database's password in it")])
    settings = config.settings.store
    if settings.url is not None and settings.url == target.url:
        raise ConfigError([("--to", "that is the configured store itself: name another "
                                    "database")])
    source = Store.open(settings)  # an older SQLite file is migrated first, as a run would
    try:
        # no run may write to either while the rows move; a run already at the target
        # means it is in use, so the copy does not wait for it
        with run_lock(settings), run_lock(target, wait_seconds=0):
            copy = Store.open(target)  # an empty database is created at this release's schema
            try:
                copied = copy_store(source, copy)
            finally:
                copy.close()
    finally:
        source.close()
    print(f"nearmiss: copied {sum(copied.values())} rows from the store {source.name} to "
          f"{target.url}: " + ", ".join(f"{n} {table}" for table, n in copied.items()))
    secret = f", password_env: {target.password_env}" if target.password_env else ""
    print(f"nearmiss: now point {args.config} at it: store: {{url: {target.url}{secret}}}; "
          "the old store is left as it was")
    return 0


def _store_credentials(config: Config) -> None:
    """The store's password variable, the one secret `migrate` and `store copy` need."""
    from config.settings import store_credential_problems

    if problems := store_credential_problems(config.settings.store):
        raise ConfigError(problems, str(config.path))


def cmd_auth(args: argparse.Namespace, login_session: Any = None) -> int:
    config = load_config(args.config, check_credentials=False)
    if args.provider == "microsoft":
        return _auth_microsoft(config, login_session)
    from connectors.google_auth import authorise_user
    from jobs.wiring import google_apis

    if config.settings.google is None:
        raise ConfigError([("google", "add a `google:` section with `auth: user` first")])
    apis = google_apis(config.settings)
    if not apis:
        raise ConfigError([("google", "no Google source, tracker or mail transport is "
                                      "configured: there is nothing to authorise")])
    path = authorise_user(config.settings.google, apis)
    print(f"nearmiss: token stored in {path}")
    return 0


def cmd_evidence(args: argparse.Namespace) -> int:
    from jobs.evidence import make_pack

    if args.end < args.start:
        raise ConfigError([("--to", f"{args.end} is before --from {args.start}: give the "
                                    "range's first day first")])
    config = load_config(args.config, check_credentials=False)
    folder = args.out or config.path.parent / "evidence"
    for path in make_pack(config, args.start, args.end, folder,
                          person_refs=args.with_person_refs):
        print(f"nearmiss: wrote {_here(path)}")
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write YYYY-MM-DD") from None


def _auth_microsoft(config: Config, login_session: Any = None) -> int:
    """Device-code sign-in: the person opens the address shown on any device, types the
    code, and signs in; the token cache (readable by its owner only) keeps them signed in."""
    from connectors.graph import Tokens

    ms = config.settings.microsoft
    if ms is None or ms.auth != "device":
        raise ConfigError([("microsoft.auth", "`nearmiss auth microsoft` signs in a person: "
                                              "set `auth: device` under microsoft: first")])
    who = Tokens(ms, session=login_session).sign_in(lambda text: print(text, flush=True))
    print(f"nearmiss: signed in as {who}; the sign-in is kept in {ms.token_cache}")
    return 0


COMMANDS = {"run": cmd_run, "demo": cmd_demo, "check": cmd_check, "explain": cmd_explain,
            "fields": cmd_fields, "preview": cmd_preview, "init": cmd_init,
            "forms": cmd_forms,
            "doctor": cmd_doctor, "auth": cmd_auth, "migrate": cmd_migrate,
            "store": cmd_store, "release": cmd_release, "evidence": cmd_evidence}


def script() -> None:
    """The `nearmiss` command: `main` in a process of its own, set for a job's work."""
    # A run over a long history makes millions of small objects (cells, rows, records) and
    # hardly a cycle among them, and its process ends with the run: the cyclic collector
    # would only walk them again and again, holding the GIL. Measured on a run with 10 new
    # reports over 100,000: 19 collections, a second of 15, and the same peak memory
    # without them. (Reference counting still frees everything that is not a cycle.) A run
    # that computes every report turns it back on (`pipeline.normalise`), then at this
    # threshold: at Python's default (700) it would walk the objects that live again and
    # again, every few hundred new ones.
    gc.set_threshold(100_000, 20, 100)
    gc.disable()
    # The store is read while a thread parses the tracker, and SQLite lets go of the GIL at
    # every row it steps to: at the default interval (5 ms) each row of 100,000 could wait
    # for the other thread's turn. Measured: a second of that run.
    sys.setswitchinterval(0.001)
    code = main()
    # What is left in memory goes with the process: frozen, it is spared a last collection
    # (a third of a second after a run over 100,000 reports).
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    script()
