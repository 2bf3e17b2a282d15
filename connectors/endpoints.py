"""Sending a cloud API's requests to another host: a private endpoint, a national cloud's
proxy, or a local test double. The connectors keep the public URLs the client libraries
build; a session adapter rewrites them on the way out."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter


class Rewrite(HTTPAdapter):
    """Send requests for `source` (scheme and host) to `target` instead."""

    def __init__(self, source: str, target: str) -> None:
        super().__init__()
        self.source, self.target = source.rstrip("/"), target.rstrip("/")

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if request.url and request.url.startswith(self.source):
            request.url = self.target + request.url[len(self.source):]
        return super().send(request, **kwargs)


def pointed(session: requests.Session, source: str, target: str | None) -> requests.Session:
    """`session` with `source`'s requests going to `target` (unchanged when None or equal)."""
    if target and target.rstrip("/") != source.rstrip("/"):
        session.mount(source, Rewrite(source, target))
    return session
