"""Email templates (Jinja2): text and HTML per kind, overridable from a folder.

`<kind>.txt.j2` starts with a `Subject:` line; `<kind>.html.j2` is autoescaped, so text
that came from a form submission or a spreadsheet cell can never inject markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
)
from markupsafe import Markup

from connectors.errors import NearmissError
from domain.text import header_text, safe_text

# A value's own line breaks travel through rendering as this character, so the template's
# first line is the whole subject even when a value on it spans lines (a pasted answer):
# after the split they become spaces in the subject and line breaks again in the bodies.
# No value can carry it (safe_text replaces NUL).
_BREAK = "\x00"


def _finalize(value: Any) -> Any:
    """Every {{ value }}: made safe, its line breaks kept apart from the template's."""
    if not isinstance(value, str):
        return value
    text = safe_text(value).replace("\n", _BREAK)
    return Markup(text) if isinstance(value, Markup) else text


class Renderer:
    def __init__(self, override: Path | None = None) -> None:
        loaders = [FileSystemLoader(str(override))] if override else []
        loaders.append(PackageLoader("connectors", "templates"))
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=lambda name: bool(name and name.endswith(".html.j2")),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            finalize=_finalize,
        )

    def page(self, name: str, context: dict[str, Any]) -> str:
        """A standalone HTML page (`<name>.html.j2`, autoescaped), such as the evidence
        pack's report."""
        try:
            html = self.env.get_template(f"{name}.html.j2").render(context)
        except TemplateError as exc:
            raise NearmissError(f"template {name!r}: {exc.message or exc}") from None
        return html.replace(_BREAK, "\n")

    def render(self, kind: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """(subject, text body, HTML body) of one message."""
        try:
            text = self.env.get_template(f"{kind}.txt.j2").render(context)
            first, _, body = text.partition("\n")
            if not first.startswith("Subject:"):
                raise NearmissError(
                    f"email template {kind}.txt.j2 must start with a 'Subject:' line")
            html = self.env.get_template(f"{kind}.html.j2").render(context)
        except TemplateError as exc:
            raise NearmissError(f"email template {kind!r}: {exc.message or exc}") from None
        subject = header_text(first.removeprefix("Subject:").replace(_BREAK, " "))
        return (subject, body.replace(_BREAK, "\n").lstrip("\n"),
                html.replace(_BREAK, "\n"))
