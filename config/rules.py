"""The rules model: taxonomy, report fields, required sets, triage, notification risk, repeats.

Rules are data. Everything a manager may want to change without a code release lives in the
rules YAML and is validated here, so a typo in a field or operator stops the run at start
with the key named instead of silently routing reports nowhere.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FieldType = Literal["text", "email", "choice", "multi", "ordinal", "datetime", "time"]
ANY_OF = "|"  # joins the fields of a required any-of: "immediate_action|staff_involved"
OPERATORS = ("equals", "in", "keywords", "at_least", "answered")

# Answers that say "nothing to report" in a free-text question: a question such as "any
# safeguarding concern?" answered "None" or "N/A" is not answered in substance.
NO_ANSWERS = ["no", "none", "n/a", "na", "not applicable", "nil", "nothing", "none noted",
              "no concerns", "nothing to report", "-"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """One test on one or more report fields; a rule's conditions must all hold."""

    field: str | list[str]
    equals: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")
    keywords: list[str] | None = None
    at_least: str | None = None
    # true: a substantive answer (not empty, not one of the rules' `no_answers`)
    answered: bool | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _one_operator(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(
                "a condition is a mapping such as {field: category, equals: medication}")
        unknown = [k for k in data if k not in ("field", *OPERATORS)]
        if unknown:
            raise ValueError(
                f"unknown operator {unknown[0]!r}: use one of {', '.join(OPERATORS)}"
            )
        given = [k for k in OPERATORS if k in data]
        if len(given) != 1:
            raise ValueError(f"give exactly one operator of {', '.join(OPERATORS)}")
        return data

    @property
    def fields(self) -> list[str]:
        return [self.field] if isinstance(self.field, str) else list(self.field)

    @property
    def operator(self) -> str:
        for name in OPERATORS:
            if getattr(self, "in_" if name == "in" else name) is not None:
                return name
        raise AssertionError("validated condition without operator")


class FieldSpec(_Strict):
    label: str
    type: FieldType = "text"
    values: str | None = None  # name of a taxonomy list


class RequiredSet(_Strict):
    name: str
    when: list[Condition] = []
    # a field, or a list of fields any one of which will do (a form may ask one question
    # for what the rules ask in two)
    fields: list[str | list[str]]

    @property
    def names(self) -> list[str]:
        """The required entries as the checks name them: a field, or "a|b" for any of."""
        return [f if isinstance(f, str) else ANY_OF.join(f) for f in self.fields]


class Pathway(_Strict):
    label: str
    sla_hours: float = Field(gt=0)
    same_day: bool = False
    priority: str
    alert: list[str] = []


class TriageRule(_Strict):
    id: str
    when: list[Condition] = []
    pathway: str
    priority: str | None = None
    sla_hours: float | None = Field(default=None, gt=0)
    same_day: bool | None = None
    alert: list[str] | None = None


class DefaultRule(_Strict):
    id: str = "default"
    pathway: str


class Triage(_Strict):
    pathways: dict[str, Pathway]
    rules: list[TriageRule]
    default: DefaultRule


class NotificationRule(_Strict):
    id: str
    when: list[Condition]
    reason: str


class RepeatRule(_Strict):
    id: str
    label: str
    key: list[str] = Field(min_length=1)
    when: list[Condition] = []
    threshold: int = Field(default=3, ge=2)
    window_days: float = Field(default=14, gt=0)
    alert: list[str] = ["registered_manager"]  # roles told when a pattern opens or reopens


class Rules(_Strict):
    taxonomy: dict[str, dict[str, str]]
    fields: dict[str, FieldSpec]
    required: list[RequiredSet]
    triage: Triage
    notification_risk: list[NotificationRule] = []
    notification_alert: list[str] = ["registered_manager"]  # who decides on notification
    no_answers: list[str] = NO_ANSWERS  # what `answered` does not count (any case)
    repeats: list[RepeatRule] = []

    def label(self, field: str) -> str:
        """The field's human label ("x or y" for a required any-of); a name the rules do not
        know is shown as it is."""
        if ANY_OF in field:
            return " or ".join(self.label(f) for f in field.split(ANY_OF))
        spec = self.fields.get(field)
        return spec.label if spec else field

    def knows(self, name: str) -> bool:
        """A field, or a required any-of of fields."""
        return all(f in self.fields for f in name.split(ANY_OF))

    def choices(self, field: str) -> dict[str, str]:
        """Key -> label of a choice/multi/ordinal field; empty for free fields."""
        spec = self.fields[field]
        return self.taxonomy.get(spec.values, {}) if spec.values else {}

    def problems(self) -> list[tuple[str, str]]:
        """Cross-reference checks pydantic cannot express: (key, message) for each mistake."""
        out: list[tuple[str, str]] = []
        known = ", ".join(self.fields)

        def check_conditions(where: str, conditions: list[Condition]) -> None:
            for i, cond in enumerate(conditions):
                key = f"{where}.when.{i}"
                for name in cond.fields:
                    if name not in self.fields:
                        out.append((f"{key}.field", f"unknown field {name!r}: use one of {known}"))
                        continue
                    spec = self.fields[name]
                    if cond.operator == "at_least":
                        levels = self.choices(name)
                        if spec.type != "ordinal":
                            out.append((f"{key}.at_least", f"{name!r} is not an ordinal field"))
                        elif cond.at_least not in levels:
                            out.append((f"{key}.at_least", f"unknown level {cond.at_least!r} "
                                        f"of {name}: use one of {', '.join(levels)}"))
                    if cond.operator in ("equals", "in") and spec.values:
                        allowed = self.choices(name)
                        wanted = [cond.equals] if cond.operator == "equals" else cond.in_ or []
                        for value in wanted:
                            if value not in allowed:
                                out.append((f"{key}.{cond.operator}", f"{value!r} is not a "
                                            f"{name} value: use one of {', '.join(allowed)}"))

        for name, spec in self.fields.items():
            if spec.values is not None and spec.values not in self.taxonomy:
                out.append((f"fields.{name}.values", f"unknown taxonomy list {spec.values!r}: "
                            f"use one of {', '.join(self.taxonomy)}"))
            if spec.type in ("choice", "multi", "ordinal") and spec.values is None:
                out.append((f"fields.{name}.values", f"a {spec.type} field needs `values:`"))
        for i, req in enumerate(self.required):
            check_conditions(f"required.{i}", req.when)
            for name in (f for entry in req.fields
                         for f in ([entry] if isinstance(entry, str) else entry)):
                if name not in self.fields:
                    out.append((f"required.{i}.fields",
                                f"unknown field {name!r}: use one of {known}"))
        pathways = self.triage.pathways
        for i, rule in enumerate(self.triage.rules):
            check_conditions(f"triage.rules.{i}", rule.when)
            if rule.pathway not in pathways:
                out.append((f"triage.rules.{i}.pathway", f"unknown pathway {rule.pathway!r}: "
                            f"use one of {', '.join(pathways)}"))
        if self.triage.default.pathway not in pathways:
            out.append(("triage.default.pathway", f"unknown pathway "
                        f"{self.triage.default.pathway!r}: use one of {', '.join(pathways)}"))
        ids = [r.id for r in self.triage.rules] + [self.triage.default.id]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            out.append(("triage.rules",
                        f"rule id {dup!r} is used twice: give each rule its own id"))
        for i, rule in enumerate(self.notification_risk):
            check_conditions(f"notification_risk.{i}", rule.when)
        for i, rule in enumerate(self.repeats):
            check_conditions(f"repeats.{i}", rule.when)
            for name in rule.key:
                if name not in self.fields:
                    out.append((f"repeats.{i}.key", f"unknown field {name!r}: use one of {known}"))
        repeat_ids = [r.id for r in self.repeats]
        for dup in sorted({i for i in repeat_ids if repeat_ids.count(i) > 1}):
            out.append(("repeats", f"repeat rule id {dup!r} is used twice"))
        return out

    def roles(self) -> set[str]:
        """Every role a rule may alert, so the deployment config can be checked for addresses."""
        roles = {r for p in self.triage.pathways.values() for r in p.alert}
        roles |= {r for rule in self.triage.rules for r in (rule.alert or [])}
        roles |= {r for rule in self.repeats for r in rule.alert}
        return roles | set(self.notification_alert)
