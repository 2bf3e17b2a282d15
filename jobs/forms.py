"""`nearmiss forms create`: the standard near-miss Google Form, made through the Forms API.

A provider starting fresh gets a form whose questions are the rules' fields under the titles
the bundled mapping knows, and whose options are the taxonomy's labels: nothing to map by
hand. The form is created (`forms.create` takes only a title), then filled in one
`forms.batchUpdate`. Nothing is shared or published by this: that stays the provider's step.
"""

from __future__ import annotations

from typing import Any

from config.rules import Rules
from config.settings import bundled_mapping, fields_of

# Free text that wants room to write (a paragraph box).
PARAGRAPHS = frozenset({"description", "immediate_action", "conditions", "person_impact",
                        "signs_observed", "immediate_safety_action", "corrective_action"})


def standard_titles(rules: Rules) -> dict[str, str]:
    """Field -> the question title the bundled mapping reads it from (its label otherwise)."""
    titles: dict[str, str] = {}
    for title, target in bundled_mapping().items():
        for field in fields_of(target):
            titles.setdefault(field, title)
    return {f: titles.get(f, spec.label[:1].upper() + spec.label[1:])
            for f, spec in rules.fields.items()}


def form_requests(rules: Rules) -> list[dict[str, Any]]:
    """The createItem requests of the standard form, in the rules' field order; the fields of
    the minimum dataset are required questions."""
    minimum = {f for req in rules.required if not req.when for entry in req.fields
               for f in ([entry] if isinstance(entry, str) else entry)}
    titles = standard_titles(rules)
    requests = []
    for index, (field, spec) in enumerate(rules.fields.items()):
        question: dict[str, Any] = {"required": field in minimum}
        if spec.type in ("choice", "ordinal", "multi"):
            question["choiceQuestion"] = {
                "type": "CHECKBOX" if spec.type == "multi" else "RADIO",
                "options": [{"value": label} for label in rules.choices(field).values()]}
        elif spec.type == "datetime":
            question["dateQuestion"] = {"includeTime": True, "includeYear": True}
        elif spec.type == "time":
            question["timeQuestion"] = {}
        else:
            question["textQuestion"] = {"paragraph": field in PARAGRAPHS}
        requests.append({"createItem": {
            "item": {"title": titles[field], "questionItem": {"question": question}},
            "location": {"index": index}}})
    return requests


def create_standard_form(service: Any, rules: Rules, title: str) -> dict[str, Any]:
    """Create the form with a Forms API service; returns the created form (forms.get shape)."""
    form = service.forms().create(body={"info": {"title": title, "documentTitle": title}}
                                  ).execute()
    done = service.forms().batchUpdate(formId=form["formId"], body={
        "requests": form_requests(rules), "includeFormInResponse": True}).execute()
    return done.get("form") or form


def config_lines(form: dict[str, Any]) -> list[str]:
    """What to put in the config for the created form: its titles are the bundled mapping's."""
    return ["sources:",
            f"  - {{name: form, kind: google_forms_api, form_id: {form['formId']}}}",
            "# the bundled mapping reads every question of this form: copy `mapping:` from",
            "# config/demo.yaml, or run `nearmiss init --google-form "
            f"{form['formId']}` for a whole starter config"]
