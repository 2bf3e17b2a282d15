"""A small base for fake HTTP APIs served on 127.0.0.1 by a real socket server.

A fake subclasses :class:`FakeHTTPServer` and implements :meth:`FakeHTTPServer.handle`
(and usually :meth:`FakeHTTPServer.classify`, which names the API method a request is for).
The base records every request, counts requests per method id and per API, and injects
faults (failed answers, dropped connections, slow answers) before a handler runs, so
retry and quota behaviour of the real client libraries can be tested over real HTTP. A
"lost answer" fault runs the handler (the change is applied) and then drops the connection,
the case where a client cannot tell whether its write happened.

Each request is handled while holding ``server.lock`` (an ``RLock``); helpers that
read or change a fake's state take the same lock, so tests may call them while client
threads are talking to the server.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

JSON_UTF8 = "application/json; charset=UTF-8"


class LostAnswer:
    """Marker of the "lost answer" fault: the handler runs, then the connection is dropped."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LOST"


LOST: Final = LostAnswer()
"""Among ``set_rate`` statuses: apply the request, then drop the connection unanswered."""
DROP: Final = None
"""Among ``set_rate`` statuses: drop the connection before the request is applied."""

FaultStatus = int | LostAnswer | None


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received on the wire.

    ``path`` is the raw (still percent-encoded) path without the query string, because
    Google path templates are matched before decoding (``values/A1%3AB2:append``).
    ``query`` maps each parameter to all of its values, in order.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    headers: dict[str, str]
    method_id: str = "unknown"
    api: str = "unknown"

    @property
    def decoded_path(self) -> str:
        return unquote(self.path)

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default

    def param(self, name: str, default: str | None = None) -> str | None:
        """The last value of a query parameter (or ``default``)."""
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        """The body decoded as JSON (``None`` for an empty body)."""
        return json.loads(self.body) if self.body else None


@dataclass
class FakeResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def json_response(
    status: int,
    payload: Any,
    *,
    headers: Mapping[str, str] | None = None,
    content_type: str = JSON_UTF8,
    pretty: bool = True,
) -> FakeResponse:
    """Encode ``payload`` as JSON. Google pretty-prints by default (``prettyPrint=true``);
    large bodies stay compact here because the indenting encoder is slow in Python and no
    client depends on the whitespace."""
    text = json.dumps(payload, ensure_ascii=False)
    if pretty and len(text) < 65536:
        text = json.dumps(payload, ensure_ascii=False, indent=2)
    return FakeResponse(
        status, (text + "\n").encode("utf-8"), {"Content-Type": content_type, **(headers or {})}
    )


Handler = Callable[[RecordedRequest, "re.Match[str]"], Any]


@dataclass(frozen=True)
class Route:
    """``handler(request, match)`` returns a :class:`FakeResponse` or a JSON payload
    (answered 200). ``pattern`` is matched against the raw path with ``fullmatch``."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    method_id: str
    api: str


@dataclass(frozen=True)
class Classification:
    """What a request is for: a method id (``sheets.spreadsheets.values.get``), the API
    it belongs to (``sheets``) and whatever the fake worked out while classifying it."""

    method_id: str
    api: str
    info: Any = None


class RequestCounters:
    """Requests received, per method id and per API (faulted requests included)."""

    def __init__(self) -> None:
        self.by_method: Counter[str] = Counter()
        self.by_api: Counter[str] = Counter()

    def record(self, method_id: str, api: str) -> None:
        self.by_method[method_id] += 1
        self.by_api[api] += 1

    def __getitem__(self, key: str) -> int:
        """Count for a method id, or for an API name if no method id matches."""
        if key in self.by_method:
            return self.by_method[key]
        return self.by_api.get(key, 0)

    @property
    def total(self) -> int:
        return sum(self.by_api.values())

    def reset(self) -> None:
        self.by_method.clear()
        self.by_api.clear()


def scope_matches(only: str | None, method_id: str, path: str) -> bool:
    """``only`` selects requests: ``None`` = all, ``"/prefix"`` = path prefix, otherwise a
    method id or a dotted method-id prefix (``"sheets"``, ``"sheets.spreadsheets.values"``)."""
    if only is None:
        return True
    if only.startswith("/"):
        return path.startswith(only)
    return method_id == only or method_id.startswith(only + ".")


@dataclass
class _FaultRule:
    remaining: int
    status: FaultStatus  # None = drop the connection, LOST = apply then drop
    retry_after: int | None
    only: str | None


@dataclass(frozen=True)
class FaultDecision:
    status: int | None  # None = drop
    retry_after: int | None = None
    lost: bool = False  # with status None: run the handler first, then drop


@dataclass(frozen=True)
class InjectedFault:
    method_id: str
    path: str
    status: int | None  # None = dropped
    lost: bool = False  # dropped after the handler ran


class FaultInjector:
    """Failures injected before a handler runs (a lost answer lets it run, then drops).

    ``only=None`` targets every request except those the server marks ``exempt`` (the
    Google fake exempts its token endpoint so credential refresh is not hit by accident;
    target it explicitly with ``only="oauth2.token"``).
    """

    def __init__(self, seed: int = 0, lock: threading.RLock | None = None) -> None:
        self._lock = lock or threading.RLock()
        self._seed = seed
        self._rules: list[_FaultRule] = []
        self._rng = random.Random(seed)
        self.rate = 0.0
        self.statuses: tuple[FaultStatus, ...] = (429, 500, 503)
        self.rate_only: str | None = None
        self.delay = 0.0
        self.delay_only: str | None = None
        self.injected: list[InjectedFault] = []
        self.exempt: Callable[[str, str], bool] = lambda method_id, path: False

    def fail_next(
        self, n: int = 1, status: int = 429, retry_after: int | None = None, only: str | None = None
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` (and a Retry-After header
        when ``retry_after`` is given)."""
        with self._lock:
            self._rules.append(_FaultRule(n, status, retry_after, only))

    def drop_next(self, n: int = 1, only: str | None = None) -> None:
        """Close the connection of the next ``n`` matching requests without answering."""
        with self._lock:
            self._rules.append(_FaultRule(n, None, None, only))

    def lose_next(self, n: int = 1, only: str | None = None) -> None:
        """Apply the next ``n`` matching requests, then close the connection unanswered."""
        with self._lock:
            self._rules.append(_FaultRule(n, LOST, None, only))

    def set_rate(
        self,
        rate: float,
        statuses: Iterable[FaultStatus] = (429, 500, 503),
        seed: int | None = None,
        only: str | None = None,
    ) -> None:
        """Fail a seeded-random fraction of matching requests with a status drawn from
        ``statuses`` (deterministic for a given seed and request order); :data:`DROP` and
        :data:`LOST` among them drop the connection before or after applying the request."""
        with self._lock:
            self.rate = rate
            self.statuses = tuple(statuses)
            self.rate_only = only
            self._rng = random.Random(self._seed if seed is None else seed)

    def set_delay(self, seconds: float, only: str | None = None) -> None:
        """Wait ``seconds`` before every matching answer (to provoke client timeouts)."""
        with self._lock:
            self.delay = seconds
            self.delay_only = only

    def reset(self) -> None:
        """Forget pending faults, rate, delay and the ``injected`` log."""
        with self._lock:
            self._rules.clear()
            self.rate = 0.0
            self.rate_only = None
            self.delay = 0.0
            self.delay_only = None
            self._rng = random.Random(self._seed)
            self.injected.clear()

    def _targets(self, only: str | None, method_id: str, path: str) -> bool:
        if only is None and self.exempt(method_id, path):
            return False
        return scope_matches(only, method_id, path)

    def decide(self, method_id: str, path: str) -> FaultDecision | None:
        with self._lock:
            return self._decide(method_id, path)

    def _decide(self, method_id: str, path: str) -> FaultDecision | None:
        for rule in self._rules:
            if rule.remaining > 0 and self._targets(rule.only, method_id, path):
                rule.remaining -= 1
                self._rules = [r for r in self._rules if r.remaining > 0]
                return self._injected(method_id, path, rule.status, rule.retry_after)
        targeted = self.rate > 0 and self._targets(self.rate_only, method_id, path)
        if targeted and self._rng.random() < self.rate:
            status = self.statuses[self._rng.randrange(len(self.statuses))]
            return self._injected(method_id, path, status, None)
        return None

    def _injected(self, method_id: str, path: str, status: FaultStatus,
                  retry_after: int | None) -> FaultDecision:
        lost = isinstance(status, LostAnswer)
        code = None if isinstance(status, LostAnswer) else status
        self.injected.append(InjectedFault(method_id, path, code, lost))
        return FaultDecision(code, retry_after, lost)

    def delay_for(self, method_id: str, path: str) -> float:
        if self.delay > 0 and self._targets(self.delay_only, method_id, path):
            return self.delay
        return 0.0


@dataclass
class _Outcome:
    response: FakeResponse | None  # None = drop the connection
    delay: float


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: with Nagle on, each response waits ~40 ms
    # for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            body=self._read_body(),
            headers=dict(self.headers.items()),
        )
        outcome = self.server.fake._process(request)
        if outcome.delay:
            time.sleep(outcome.delay)
        if outcome.response is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        response = outcome.response
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeHTTPServer


class FakeHTTPServer:
    """Base class: a threaded HTTP server on ``("127.0.0.1", 0)`` in a daemon thread.

    Use as a context manager or call :meth:`start`/:meth:`stop`. ``url`` is
    ``http://127.0.0.1:<port>`` (no trailing slash).

    Attributes: ``requests`` (list of :class:`RecordedRequest`, with ``method_id``/``api``
    filled in), ``counters`` (:class:`RequestCounters`), ``faults`` (:class:`FaultInjector`),
    ``handler_errors`` (tracebacks of exceptions raised by handlers; answered 500).
    """

    def __init__(self, *, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self.routes: list[Route] = []
        self.requests: list[RecordedRequest] = []
        self.counters = RequestCounters()
        self.faults = FaultInjector(seed, self.lock)
        self.handler_errors: list[str] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeHTTPServer:
        if self._httpd is not None:
            return self
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True,
            name=f"{type(self).__name__}:{httpd.server_address[1]}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeHTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- routing --------------------------------------------------------------------------
    def add_route(
        self, method: str, pattern: str, handler: Handler, *, method_id: str | None = None,
        api: str = "unknown",
    ) -> None:
        """Register ``handler`` for ``method`` and a raw-path regex (full match)."""
        self.routes.append(Route(method.upper(), re.compile(pattern), handler,
                                 method_id or f"{method.upper()} {pattern}", api))

    # -- hooks for subclasses -----------------------------------------------------------
    def classify(self, request: RecordedRequest) -> Classification:
        """Name the method a request is for (used by counters, faults and ``handle``).
        The default looks the request up in ``routes``."""
        for route in self.routes:
            m = route.pattern.fullmatch(request.path)
            if route.method == request.method and m:
                return Classification(route.method_id, route.api, (route, m))
        return Classification("unknown", "unknown")

    def handle(self, request: RecordedRequest, classification: Classification) -> FakeResponse:
        """Answer a request; the default calls the matched route's handler (404 without)."""
        if classification.info is None:
            return json_response(404, {"error": {"code": 404, "message": "no such route"}})
        route, match = classification.info
        result = route.handler(request, match)
        return result if isinstance(result, FakeResponse) else json_response(200, result)

    def fault_response(
        self, request: RecordedRequest, classification: Classification, decision: FaultDecision
    ) -> FakeResponse:
        """The body of an injected failure; subclasses shape it like their API's errors."""
        assert decision.status is not None
        headers = {} if decision.retry_after is None else {"Retry-After": str(decision.retry_after)}
        return json_response(
            decision.status, {"error": {"code": decision.status, "message": "injected fault"}},
            headers=headers,
        )

    # -- helpers ----------------------------------------------------------------------------
    def requests_for(self, only: str) -> list[RecordedRequest]:
        """Recorded requests matching a method id, method-id prefix or ``/path`` prefix."""
        with self.lock:
            return [r for r in self.requests if scope_matches(only, r.method_id, r.path)]

    def reset_counters(self) -> None:
        with self.lock:
            self.counters.reset()

    def _process(self, request: RecordedRequest) -> _Outcome:
        with self.lock:
            try:
                classification = self.classify(request)
            except Exception:
                self.handler_errors.append(traceback.format_exc())
                classification = Classification("unknown", "unknown")
            request = replace(request, method_id=classification.method_id, api=classification.api)
            self.requests.append(request)
            self.counters.record(classification.method_id, classification.api)
            delay = self.faults.delay_for(classification.method_id, request.path)
            decision = self.faults.decide(classification.method_id, request.path)
            if decision is not None and decision.status is None and not decision.lost:
                return _Outcome(None, delay)
            try:
                if decision is not None and not decision.lost:
                    response = self.fault_response(request, classification, decision)
                else:
                    response = self.handle(request, classification)
            except Exception:
                self.handler_errors.append(traceback.format_exc())
                response = json_response(
                    500, {"error": {"code": 500, "message": "fake handler crashed"}}
                )
            if decision is not None and decision.lost:
                return _Outcome(None, delay)
            return _Outcome(response, delay)


# -- A1 notation, as spreadsheet APIs name cells ----------------------------------------


def column_letters(index: int) -> str:
    """0 -> "A", 25 -> "Z", 26 -> "AA"."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def column_index(letters: str) -> int:
    """"A" -> 0, "AA" -> 26."""
    value = 0
    for ch in letters.upper():
        value = value * 26 + ord(ch) - 64
    return value - 1
