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

from connectors.errors import NearmissError


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
        )

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
        return " ".join(first.removeprefix("Subject:").split()), body.lstrip("\n"), html
