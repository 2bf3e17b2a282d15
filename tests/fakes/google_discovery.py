"""Validate requests against the discovery documents bundled in google-api-python-client.

The fakes must not accept what the real API would reject, so every request a Google fake
receives is checked here: the path and HTTP method must match a method of the discovery
document, required parameters must be present, every query parameter must be a method
parameter or a standard one, parameter values must fit their type/enum, and every key of
a JSON body must exist in the method's request schema (recursively, through ``$ref``,
``items`` and ``additionalProperties``), with compatible JSON types.

Messages imitate Google's front end ("Invalid JSON payload received. Unknown name ...").
Usage::

    validator = DiscoveryValidator()
    result = validator.validate("GET", "/v4/spreadsheets/abc/values/A1", {"alt": ["json"]}, b"")
    result.method_id      # "sheets.spreadsheets.values.get"
    result.path_params    # {"spreadsheetId": "abc", "range": "A1"}
    result.violations     # [] when the request is acceptable
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

DISCOVERY_APIS: tuple[str, ...] = ("forms.v1", "sheets.v4", "gmail.v1")

STANDARD_PARAMETERS: frozenset[str] = frozenset(
    {
        "alt", "fields", "key", "prettyPrint", "quotaUser", "$.xgafv", "access_token",
        "callback", "oauth_token", "upload_protocol", "uploadType",
    }
)

# The proto field a method's body binds to (Google reports body errors under this name,
# e.g. "Invalid value at 'data.values'" for values.update). "*" methods have no prefix.
_BODY_FIELD: dict[str, str] = {
    "sheets.spreadsheets.values.update": "data",
    "sheets.spreadsheets.values.append": "data",
}

# Proto packages, used only to word "Invalid value at ... (type.googleapis.com/...)".
_PROTO_PACKAGE: dict[str, str] = {
    "sheets": "google.apps.sheets.v4",
    "forms": "google.apps.forms.v1",
    "gmail": "google.apps.gmail.v1",
}


@dataclass(frozen=True)
class Violation:
    """One reason the real API would reject a request.

    ``kind`` is one of: unknown_path, method_not_allowed, missing_parameter,
    unknown_parameter, invalid_parameter, unknown_field, invalid_value, invalid_json,
    unexpected_body. ``field`` is the field path Google would put in
    ``BadRequest.fieldViolations`` (may be empty).
    """

    kind: str
    message: str
    field: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class MethodSpec:
    id: str
    api: str
    http_method: str
    path: str
    parameters: Mapping[str, Any]
    request_schema: str | None
    scopes: tuple[str, ...]
    supports_media_upload: bool


@dataclass
class ValidationResult:
    method: MethodSpec | None
    path_params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    is_upload: bool = False
    violations: list[Violation] = field(default_factory=list)

    @property
    def method_id(self) -> str | None:
        return self.method.id if self.method else None

    @property
    def ok(self) -> bool:
        return not self.violations


def discovery_documents_dir() -> Path:
    """Folder of the static discovery documents shipped with google-api-python-client."""
    root = importlib.resources.files("googleapiclient") / "discovery_cache" / "documents"
    return Path(str(root))


@cache
def load_discovery_document(name: str) -> dict[str, Any]:
    """Load e.g. ``"sheets.v4"`` from the installed package (cached)."""
    path = discovery_documents_dir() / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class _Template:
    regex: re.Pattern[str]
    names: tuple[str, ...]
    literal_len: int
    method: MethodSpec
    is_upload: bool


def _compile(template: str, method: MethodSpec, is_upload: bool) -> _Template:
    pattern = ["^/"]
    names: list[str] = []
    literal_len = 0
    for part in re.split(r"(\{\+?[^}]+\})", template.lstrip("/")):
        if not part:
            continue
        if part.startswith("{"):
            name = part.strip("{}+")
            group = f"p{len(names)}"
            names.append(name)
            # Empty segments are allowed here so that a missing path parameter is reported
            # as "missing required parameter" rather than as an unknown path.
            pattern.append(f"(?P<{group}>.*)" if part.startswith("{+") else f"(?P<{group}>[^/]*)")
        else:
            pattern.append(re.escape(part))
            literal_len += len(part)
    pattern.append("$")
    return _Template(re.compile("".join(pattern)), tuple(names), literal_len, method, is_upload)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _json_literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class DiscoveryValidator:
    """Matches requests to discovery methods and validates them (see module docstring)."""

    def __init__(self, apis: Iterable[str] = DISCOVERY_APIS) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.methods: dict[str, MethodSpec] = {}
        self._templates: list[_Template] = []
        self._schemas: dict[str, dict[str, dict[str, Any]]] = {}
        for name in apis:
            doc = load_discovery_document(name)
            api = doc["name"]
            self.documents[api] = doc
            self._schemas[api] = doc.get("schemas", {})
            self._collect(doc, api, doc)

    def _collect(self, node: Mapping[str, Any], api: str, doc: Mapping[str, Any]) -> None:
        for method in node.get("methods", {}).values():
            spec = MethodSpec(
                id=method["id"],
                api=api,
                http_method=method["httpMethod"],
                path=method.get("flatPath", method["path"]),
                parameters=method.get("parameters", {}),
                request_schema=method.get("request", {}).get("$ref"),
                scopes=tuple(method.get("scopes", ())),
                supports_media_upload=bool(method.get("supportsMediaUpload")),
            )
            self.methods[spec.id] = spec
            prefix = doc.get("servicePath", "")
            paths = {prefix + method["path"], prefix + method.get("flatPath", method["path"])}
            for template in paths:
                self._templates.append(_compile(template, spec, is_upload=False))
            for protocol in method.get("mediaUpload", {}).get("protocols", {}).values():
                self._templates.append(_compile(protocol["path"], spec, is_upload=True))
        for resource in node.get("resources", {}).values():
            self._collect(resource, api, doc)

    # -- matching ---------------------------------------------------------------------------
    def match(
        self, http_method: str, raw_path: str
    ) -> tuple[MethodSpec | None, dict[str, str], bool, list[Violation]]:
        """Find the method for a raw (percent-encoded) path.

        The most specific template wins (most literal characters), so
        ``values/{range}:append`` beats ``values/{range}`` for ``.../A1:append``.
        """
        hits: list[tuple[_Template, re.Match[str]]] = []
        for template in self._templates:
            m = template.regex.match(raw_path)
            if m:
                hits.append((template, m))
        if not hits:
            return None, {}, False, [
                Violation("unknown_path", f"The requested URL {raw_path} was not found.")
            ]
        hits.sort(key=lambda hit: -hit[0].literal_len)
        best_len = hits[0][0].literal_len
        same_method = [h for h in hits if h[0].method.http_method == http_method]
        if not same_method or same_method[0][0].literal_len < best_len:
            expected = hits[0][0].method
            return None, {}, False, [
                Violation(
                    "method_not_allowed",
                    f"{http_method} is not allowed for {raw_path}; "
                    f"{expected.id} expects {expected.http_method}.",
                )
            ]
        template, m = same_method[0]
        params = {name: unquote(m.group(f"p{i}")) for i, name in enumerate(template.names)}
        return template.method, params, template.is_upload, []

    # -- validation -------------------------------------------------------------------------
    def validate(
        self,
        http_method: str,
        raw_path: str,
        query: Mapping[str, list[str]],
        body: bytes | None,
        content_type: str | None = None,
    ) -> ValidationResult:
        method, path_params, is_upload, violations = self.match(http_method, raw_path)
        result = ValidationResult(method, path_params, None, is_upload, violations)
        if method is None:
            return result
        for name, spec in method.parameters.items():
            location = spec.get("location")
            missing_path = location == "path" and not path_params.get(name)
            missing_query = location == "query" and spec.get("required") and name not in query
            if missing_path or missing_query:
                violations.append(
                    Violation("missing_parameter", f"Missing required parameter: {name}", name)
                )
        for name, values in query.items():
            violations.extend(self._check_query(method, name, values))
        for name, value in path_params.items():
            spec = method.parameters.get(name, {})
            if value:
                violations.extend(self._check_scalar(method, _snake(name), value, spec))
        if is_upload:
            result.body = body
            return result
        violations.extend(self._check_body(method, body, content_type, result))
        return result

    def _check_query(self, method: MethodSpec, name: str, values: list[str]) -> list[Violation]:
        spec = method.parameters.get(name)
        if spec is None or spec.get("location") != "query":
            if name in STANDARD_PARAMETERS:
                return []
            message = (
                f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query '
                f"parameter. Field '{name}' could not be found in request message."
            )
            return [Violation("unknown_parameter", message, name)]
        out: list[Violation] = []
        if len(values) > 1 and not spec.get("repeated"):
            out.append(
                Violation(
                    "invalid_parameter",
                    f"Parameter '{name}' is not repeated but was given {len(values)} times.",
                    name,
                )
            )
        for value in values:
            out.extend(self._check_scalar(method, _snake(name), value, spec))
        return out

    def _check_scalar(
        self, method: MethodSpec, field_name: str, value: str, spec: Mapping[str, Any]
    ) -> list[Violation]:
        kind = spec.get("type", "string")
        bad: str | None = None
        if "enum" in spec and value not in spec["enum"]:
            bad = "TYPE_ENUM"
        elif kind == "integer" and not re.fullmatch(r"[+-]?\d+", value.strip()):
            bad = "TYPE_INT32" if spec.get("format") != "uint32" else "TYPE_UINT32"
        elif kind == "boolean" and value.lower() not in ("true", "false"):
            bad = "TYPE_BOOL"
        elif kind == "number":
            try:
                float(value)
            except ValueError:
                bad = "TYPE_DOUBLE"
        if bad is None:
            return []
        return [
            Violation(
                "invalid_parameter",
                f"Invalid value at '{field_name}' ({bad}), {_json_literal(value)}",
                field_name,
            )
        ]

    def _check_body(
        self, method: MethodSpec, body: bytes | None, content_type: str | None,
        result: ValidationResult,
    ) -> list[Violation]:
        if not body or not body.strip():
            return []
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return [
                Violation("invalid_json", f"Invalid JSON payload received. {exc.msg}.")
            ]
        result.body = payload
        if method.request_schema is None:
            if payload in ({}, None):
                return []
            return [Violation("unexpected_body", f"{method.id} takes no request body.")]
        prefix = _BODY_FIELD.get(method.id, "")
        return self.check_value(method.api, payload, {"$ref": method.request_schema}, prefix)

    def check_value(
        self, api: str, value: Any, schema: Mapping[str, Any], path: str
    ) -> list[Violation]:
        """Check a JSON value against a discovery schema; returns violations."""
        if value is None:
            return []  # proto3 JSON: null means "default"
        schema_name = None
        if "$ref" in schema:
            schema_name = schema["$ref"]
            schema = self._schemas[api][schema_name]
        kind = schema.get("type")
        if kind == "any":
            return []
        if kind == "object" or "properties" in schema or "additionalProperties" in schema:
            if not isinstance(value, dict):
                return [self._invalid(api, path, value, schema_name or "google.protobuf.Struct")]
            out: list[Violation] = []
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                sub_path = f"{path}.{_snake(key)}" if path else _snake(key)
                if key in props:
                    out.extend(self.check_value(api, item, props[key], sub_path))
                elif _camel(key) in props:  # proto3 JSON also accepts the original field name
                    out.extend(self.check_value(api, item, props[_camel(key)], sub_path))
                elif extra is not None:
                    out.extend(self.check_value(api, item, extra, sub_path))
                else:
                    at = f" at '{path}'" if path else ""
                    message = (
                        f'Invalid JSON payload received. Unknown name "{key}"{at}: '
                        "Cannot find field."
                    )
                    out.append(Violation("unknown_field", message, path))
            return out
        if kind == "array":
            if not isinstance(value, list):
                items = schema.get("items", {})
                if items.get("type") == "array" or items.get("type") == "any":
                    type_name = "google.protobuf.ListValue"
                else:
                    type_name = items.get("$ref") or f"TYPE_{items.get('type', 'string').upper()}"
                return [self._invalid(api, path, value, type_name)]
            out = []
            for i, item in enumerate(value):
                out.extend(self.check_value(api, item, schema.get("items", {}), f"{path}[{i}]"))
            return out
        return self._check_json_scalar(api, value, schema, path)

    def _check_json_scalar(
        self, api: str, value: Any, schema: Mapping[str, Any], path: str
    ) -> list[Violation]:
        kind = schema.get("type", "string")
        fmt = schema.get("format")
        ok: bool
        if kind == "string":
            if fmt in ("int64", "uint64"):
                ok = (isinstance(value, int) and not isinstance(value, bool)) or (
                    isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value) is not None
                )
            elif "enum" in schema:
                ok = isinstance(value, str) and value in schema["enum"]
                ok = ok or (isinstance(value, int) and not isinstance(value, bool))
            else:
                ok = isinstance(value, str)
        elif kind == "integer":
            if isinstance(value, bool):
                ok = False
            elif isinstance(value, int):
                ok = True
            elif isinstance(value, float):
                ok = value.is_integer()
            else:
                ok = isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value) is not None
        elif kind == "number":
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
                isinstance(value, str) and _is_float(value)
            )
        elif kind == "boolean":
            ok = isinstance(value, bool)
        else:
            ok = True
        if ok:
            return []
        type_name = {
            ("string", None): "TYPE_STRING", ("integer", "int32"): "TYPE_INT32",
            ("integer", "uint32"): "TYPE_UINT32", ("number", "double"): "TYPE_DOUBLE",
            ("number", "float"): "TYPE_FLOAT", ("boolean", None): "TYPE_BOOL",
            ("string", "int64"): "TYPE_INT64", ("string", "uint64"): "TYPE_UINT64",
        }.get((kind, fmt), "TYPE_ENUM" if "enum" in schema else f"TYPE_{kind.upper()}")
        return [self._invalid(api, path, value, type_name, proto=False)]

    def _invalid(
        self, api: str, path: str, value: Any, type_name: str, *, proto: bool = True
    ) -> Violation:
        if proto and not type_name.startswith(("google.", "TYPE_")):
            type_name = f"{_PROTO_PACKAGE.get(api, api)}.{type_name}"
        if not type_name.startswith("TYPE_"):
            type_name = f"type.googleapis.com/{type_name}"
        message = f"Invalid value at '{path}' ({type_name}), {_json_literal(value)}"
        return Violation("invalid_value", message, path)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
