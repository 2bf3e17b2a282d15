"""`nearmiss init --from EXPORT` or `--google-form ID`: a starter config for a provider's
own form.

Each question gets the field it most likely is, and each option text seen in a choice
question the taxonomy value it most likely means (transforms/suggest.py), with the
confidence. What is not sure is written commented out, marked DECIDE, with the
candidates: a person decides, `nearmiss check` says whether the result is valid, and
`nearmiss preview` shows what it would do. The day order of the form's dates is read
from its answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from config.rules import Rules
from config.settings import bundled_mapping
from connectors.base import Pull
from connectors.errors import NearmissError
from connectors.form_exports import GoogleFormsCsvSource, MicrosoftFormsXlsxSource
from connectors.google_forms import form_questions
from domain.times import day_order
from transforms.normalize import split_choices
from transforms.suggest import Guess, guess_fields, guess_values


class InitError(NearmissError):
    """The starter config cannot be written (a file is in the way, an unknown export)."""


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML scalar


def _answers(pull: Pull, key: str, multi: bool) -> list[str]:
    """Every answer given to one question, options of a multiple choice one by one."""
    out: list[str] = []
    for r in pull.responses:
        value = r.answers.get(key)
        items = value if isinstance(value, list) else [] if value is None else (
            split_choices(value) if multi else [value])
        out += [str(v).strip() for v in items if str(v).strip()]
    return out


def _mapping_line(g: Guess) -> str:
    if g.sure:
        return f"  {_quoted(g.text)}: {g.best}    # {g.confidence:.2f}"
    others = ", ".join([*g.candidates, "ignore"])
    guess = g.best or "ignore"
    return (f"  # DECIDE {_quoted(g.text)}: {guess}    # {g.confidence:.2f}; or: {others}")


def _value_lines(field: str, guesses: Iterable[Guess], rules: Rules) -> list[str]:
    lines = [f"  {field}:    # values: {', '.join(rules.choices(field))}, or null"]
    for g in guesses:
        if g.sure:
            lines.append(f"    {_quoted(g.text)}: {g.best}    # {g.confidence:.2f}")
        else:
            others = ", ".join([*g.candidates, "null"])
            lines.append(f"    # DECIDE {_quoted(g.text)}: {g.best or 'null'}    "
                         f"# {g.confidence:.2f}; or: {others}")
    return lines


def _form_options(form: dict[str, object]) -> dict[str, list[str]]:
    """Question id -> the option texts of a live Google Form's choice questions."""
    out: dict[str, list[str]] = {}
    for item in form.get("items") or []:  # type: ignore[union-attr]
        question = (item.get("questionItem") or {}).get("question") or {}
        choice = question.get("choiceQuestion") or {}
        if question.get("questionId") and choice.get("options"):
            out[question["questionId"]] = [o.get("value", "") for o in choice["options"]
                                           if not o.get("isOther")]
    return out


def starter_config(export: Path, rules: Rules, *, tz: str, provider: str,
                   config_dir: Path) -> tuple[str, list[Guess], dict[str, list[Guess]]]:
    """The text of a starter config for the form `export` (a Google Forms .csv or a
    Microsoft Forms .xlsx download), with the guesses it is made of: answers seen in the
    export are the option texts to map."""
    suffix = export.suffix.lower()
    name = "form"
    if suffix == ".csv":
        kind, source = "google_forms_csv", GoogleFormsCsvSource(name, export, ZoneInfo(tz))
    elif suffix == ".xlsx":
        kind, source = "microsoft_forms_xlsx", MicrosoftFormsXlsxSource(name, export,
                                                                        ZoneInfo(tz))
    else:
        raise InitError(f"{export}: not a form export: give a Google Forms .csv download or "
                        "a Microsoft Forms .xlsx workbook")
    pull = source.pull(None)
    keys = {title: key for key, title in pull.questions.items()}
    try:
        where = export.resolve().relative_to(config_dir.resolve()).as_posix()
    except ValueError:
        where = str(export.resolve())
    return _starter(list(keys), lambda title, multi: _answers(pull, keys[title], multi),
                    rules, tz=tz, provider=provider, origin=f"--from {export.name}",
                    source=f"{{name: {name}, kind: {kind}, path: {_quoted(where)}}}")


def starter_config_for_form(form_id: str, form: dict[str, object], rules: Rules, *, tz: str,
                            provider: str) -> tuple[str, list[Guess], dict[str, list[Guess]]]:
    """The same for a live Google Form (a `forms.get` body): its options are the texts to
    map, its questions are read by id, and dates come in ISO order."""
    titles, _ = form_questions(form)
    by_title = {title: qid for qid, title in titles.items()}
    options = _form_options(form)
    text, fields, values = _starter(
        list(by_title), lambda title, multi: options.get(by_title[title], []), rules, tz=tz,
        provider=provider, origin=f"--google-form {form_id}",
        source=f"{{name: form, kind: google_forms_api, form_id: {_quoted(form_id)}}}")
    text += ("google: {auth: service_account, key_file_env: GOOGLE_APPLICATION_CREDENTIALS}"
             "    # see the README, Connect Google\n")
    return text, fields, values


def _starter(titles: list[str], answers_of: Callable[[str, bool], list[str]], rules: Rules, *,
             tz: str, provider: str, origin: str, source: str
             ) -> tuple[str, list[Guess], dict[str, list[Guess]]]:
    fields = guess_fields(titles, rules, {t: f for t, f in bundled_mapping().items()
                                          if isinstance(f, str)})
    values: dict[str, list[Guess]] = {}
    dates: list[str] = []
    for g in fields:
        spec = rules.fields.get(g.best or "")
        if spec is None:
            continue
        if spec.type in ("choice", "ordinal", "multi"):
            guessed = guess_values(answers_of(g.text, spec.type == "multi"), g.best, rules)
            if guessed:
                values[g.best] = guessed
    # Every answer that is a date says which order the form writes them in, whatever
    # question it answers (a date question init is unsure of included).
    for title in titles:
        dates += answers_of(title, False)
    order, contradiction = day_order(dates, dayfirst=True)
    decide = sum(not g.sure for g in fields) + sum(not g.sure for gs in values.values()
                                                   for g in gs)
    lines = [
        f"# Written by `nearmiss init {origin}` on {date.today():%d %B %Y}.",
        f"# {decide} line(s) marked DECIDE need a person: uncomment each with the right "
        "field or",
        "# value (the number is how sure the guess is; `nearmiss fields` lists every field "
        "and value).",
        "# Then: `nearmiss check`, `nearmiss preview`, and `nearmiss run`.",
        "",
        f"provider: {_quoted(provider)}",
        f"timezone: {tz}",
        f"dayfirst: {'true' if order == 'day-first' else 'false'}    # read from the "
        "form's answers" + (f"; both orders seen: {contradiction}" if contradiction else ""),
        "store: {path: nearmiss.db}",
        "sources:",
        f"  - {source}",
        "mapping:",
        *(_mapping_line(g) for g in fields),
    ]
    if values:
        lines += ["value_maps:    # this form's option texts -> the taxonomy's values"]
        for field, guesses in values.items():
            lines += _value_lines(field, guesses, rules)
    lines += [
        "tracker: {kind: xlsx, path: tracker.xlsx}",
        "mail:",
        "  sender: \"Nearmiss Loop <nearmiss@example.org>\"    # DECIDE: your sending address",
        "  transport: {kind: eml_folder, path: outbox}    # see the README for SMTP or Gmail",
        "roles:    # DECIDE: who each role the rules alert is",
        *(f"  {role}: [{role.replace('_', '.')}@example.org]" for role in sorted(rules.roles())),
    ]
    return "\n".join(lines) + "\n", fields, values


def write_starter(out: Path, make: Callable[[], tuple[str, list[Guess],
                                                      dict[str, list[Guess]]]],
                  force: bool = False) -> tuple[list[Guess], dict[str, list[Guess]]]:
    """Write the starter config `make` builds to `out`; never over an existing file unless
    `force`."""
    if out.exists() and not force:
        raise InitError(f"{out} exists: give another --out, or --force to replace it")
    text, fields, values = make()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return fields, values
