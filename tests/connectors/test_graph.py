"""Graph plumbing that needs no server: how answers are judged, Excel's date numbers,
sharing links, certificates and token claims."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import MicrosoftSettings
from connectors.errors import ApiError, NearmissError, RetryableApiError
from connectors.graph import (
    SessionExpired,
    certificate_credential,
    from_serial,
    is_date_format,
    judge,
    refusal,
    share_id,
    token_claims,
)
from connectors.sheet_writes import a1

MS = MicrosoftSettings(tenant="contoso.onmicrosoft.com", client_id="app-1",
                       client_secret_env="X")


def envelope(code: str, message: str = "m", inner: str | None = None) -> dict:
    error: dict = {"code": code, "message": message}
    if inner:
        error["innerError"] = {"code": inner, "message": "inner"}
    return {"error": error}


@pytest.mark.parametrize("status, body, headers, kind, retry_after", [
    (429, envelope("TooManyRequests"), {"Retry-After": "7"}, RetryableApiError, 7.0),
    (503, envelope("serviceNotAvailable"), {}, RetryableApiError, None),
    (504, None, {}, RetryableApiError, None),
    (423, envelope("resourceLocked"), {}, RetryableApiError, None),
    (409, envelope("conflict", inner="editModeCannotAcquireLock"), {}, RetryableApiError, None),
    (409, envelope("nameAlreadyExists"), {}, ApiError, None),
    (404, envelope("itemNotFound"), {}, ApiError, None),
    (403, envelope("accessDenied"), {}, ApiError, None),
    (404, envelope("badRequest", inner="invalidSessionReCreatable"), {}, SessionExpired, None),
])
def test_each_answer_is_judged_once(status, body, headers, kind, retry_after):
    error = judge(status, body, headers, "reading the tracker workbook")
    assert type(error) is kind and error.status == status
    assert str(error).startswith(f"reading the tracker workbook: HTTP {status}")
    assert getattr(error, "retry_after", None) == retry_after


def test_retry_after_may_be_an_http_date():
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    error = judge(429, envelope("TooManyRequests"), {"retry-after": later}, "x")
    assert isinstance(error, RetryableApiError) and 20 < error.retry_after <= 30


@pytest.mark.parametrize("fmt, is_date", [
    ("m/d/yyyy h:mm", True), ("dd/mm/yyyy", True), ("[$-409]d-mmm-yy;@", True),
    ("h:mm AM/PM", True), ("General", False), ("0.00", False), ("@", False),
    ('0 "days"', False), ("#,##0", False), (None, False),
])
def test_date_formats_are_told_from_number_formats(fmt, is_date):
    assert is_date_format(fmt) is is_date


@given(st.datetimes(min_value=datetime(1900, 3, 1), max_value=datetime(2100, 1, 1)))
def test_excel_serial_days_read_back_to_the_second(when):
    when = when.replace(microsecond=0)
    serial = (when - datetime(1899, 12, 30)).total_seconds() / 86400
    assert from_serial(serial) == when


def test_a_known_serial_and_a1_columns():
    assert from_serial(45658.4166666667) == datetime(2025, 1, 1, 10, 0)
    assert [a1(1, c) for c in (1, 26, 27, 52, 703)] == ["A1", "Z1", "AA1", "AZ1", "AAA1"]


def test_a_sharing_link_becomes_a_share_id():
    link = "https://contoso.sharepoint.com/:x:/s/ops/EabcdEFGH?e=4"
    sid = share_id(link)
    assert sid.startswith("u!") and "=" not in sid and "/" not in sid and "+" not in sid
    assert base64.urlsafe_b64decode(sid[2:] + "==").decode() == link


def test_identity_refusals_name_their_fix():
    assert "client secret is wrong" in refusal(
        {"error": "invalid_client", "error_codes": [7000215]}, MS)
    assert "adminconsent?client_id=app-1" in refusal({"error_codes": [65001]}, MS)
    assert refusal({"error": "x", "error_description": "AADSTS1: odd\nTrace"}, MS) == \
        "AADSTS1: odd"


def test_token_claims_are_read_from_the_jwt_payload():
    payload = base64.urlsafe_b64encode(json.dumps({"roles": ["Mail.Send"]}).encode())
    assert token_claims(f"e30.{payload.decode().rstrip('=')}.sig") == {"roles": ["Mail.Send"]}
    assert token_claims("not-a-jwt") == {}


def test_a_pem_with_key_and_certificate_is_msal_credential(tmp_path):
    from tests.fakes.microsoft_deployment import write_certificate

    pem = tmp_path / "nearmiss.pem"
    thumbprint = write_certificate(pem)
    credential = certificate_credential(pem)
    assert credential["thumbprint"] == thumbprint
    assert credential["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    only_cert = tmp_path / "cert.pem"
    only_cert.write_text(pem.read_text().split("-----END PRIVATE KEY-----\n")[1])
    with pytest.raises(NearmissError, match="no private key"):
        certificate_credential(only_cert)
    with pytest.raises(NearmissError, match="not a PEM certificate"):
        certificate_credential(tmp_path / "missing.pem")
