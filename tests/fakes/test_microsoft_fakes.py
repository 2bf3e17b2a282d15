"""Tests of the Microsoft Graph and identity platform fakes themselves.

1. Real clients talk to the fake over real sockets: msal (client secret, certificate,
   device code), office365-rest-python-client's GraphClient and plain requests.
2. Response shapes are compared with recorded Graph and login.microsoftonline.com traffic
   (the same keys; the workbookRange of a recorded PATCH is reproduced exactly).
3. Excel semantics, sessions, tables, permissions, ``$batch`` and sendMail behave as the
   service documents, and requests it would reject are recorded as violations.
4. Fault injection: 429 with Retry-After, 503/504 bodies, dropped connections, lost answers
   (applied, unanswered), faults of single ``$batch`` sub-requests, locked workbooks and
   expired sessions.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msal
import openpyxl
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from office365.graph_client import GraphClient
from office365.runtime.client_request_exception import ClientRequestException
from office365.runtime.http.request_options import RequestOptions

from tests.fakes.http import DROP, LOST
from tests.fakes.microsoft import (
    GRAPH_HOST,
    GRAPH_SCOPE,
    MicrosoftFakeServer,
    SentMail,
    a1_address,
    excel_serial,
    quick_xor_hash,
    sharing_token,
)

RECORDED = Path("/work/shared/notes/recorded-api")
TENANT = "contoso.onmicrosoft.com"
SECRET_APP = "11111111-aaaa-4bbb-8ccc-000000000001"  # Sites.Selected + Mail.Send, secret
FULL_APP = "11111111-aaaa-4bbb-8ccc-000000000002"  # Files/Sites.ReadWrite.All, certificate
READER_APP = "11111111-aaaa-4bbb-8ccc-000000000003"  # Files.Read.All only
PUBLIC_APP = "11111111-aaaa-4bbb-8ccc-000000000004"  # device code, delegated
SECRET = "s3cret~value"
FORM_HEADER = ["ID", "Start time", "Completion time", "Email", "Name", "What happened?"]


def _recorded(name: str) -> list[dict[str, Any]]:
    path = RECORDED / f"{name}_interactions.json"
    if not path.exists():
        pytest.skip(f"recorded interactions not available: {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def _body(entry: dict[str, Any]) -> Any:
    body = entry["response_body"]
    return json.loads(body) if isinstance(body, str) else body


def _graph_entry(endpoint_start: str) -> dict[str, Any]:
    return next(e for e in _recorded("msgraph") if e["endpoint"].startswith(endpoint_start))


def _identity_entry(status: int, grant: str | None = None, path_end: str = "/token",
                    ) -> dict[str, Any]:
    for entry in _recorded("ms_identity_token"):
        request = entry["request_body"]
        if isinstance(request, str):
            request = json.loads(request) if request.startswith("{") else {}
        if entry["status"] == status and entry["uri"].endswith(path_end) and (
                grant is None or (request or {}).get("grant_type") == grant):
            return entry
    raise LookupError((status, grant, path_end))


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _certificate() -> tuple[str, str, str, str]:
    """A key and self-signed certificate: (private PEM, certificate PEM, SHA-1, SHA-256)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nearmiss-loop")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = cert.public_bytes(serialization.Encoding.PEM).decode()
    return (private, public, cert.fingerprint(hashes.SHA1()).hex().upper(),
            cert.fingerprint(hashes.SHA256()).hex())


# ---------------------------------------------------------------------------------------
# Fixtures: one server for the module
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert() -> tuple[str, str, str, str]:
    return _certificate()


@pytest.fixture(scope="module")
def server(cert: tuple[str, str, str, str]) -> Iterator[MicrosoftFakeServer]:
    with MicrosoftFakeServer(seed=11, tenant_domain=TENANT) as srv:
        identity = srv.identity
        identity.register_app(SECRET_APP, secret=SECRET, roles=("Sites.Selected", "Mail.Send"),
                              display_name="Nearmiss Loop")
        identity.register_app(FULL_APP, thumbprint=cert[2], roles=(
            "Files.ReadWrite.All", "Sites.ReadWrite.All", "Mail.Send"))
        identity.add_certificate(FULL_APP, cert[3])
        identity.register_app(READER_APP, secret=SECRET, roles=("Files.Read.All",))
        identity.register_app(PUBLIC_APP, public=True, delegated_scopes=(
            "Files.ReadWrite", "Mail.Send", "User.Read", "offline_access"))
        srv.graph.add_user("noreply@contoso.example", "Near Miss Bot")
        yield srv


@pytest.fixture(autouse=True)
def clean(server: MicrosoftFakeServer) -> Iterator[None]:
    yield
    assert server.handler_errors == []
    server.faults.reset()
    server.violations.clear()
    server.handler_errors.clear()


@pytest.fixture(scope="module")
def site(server: MicrosoftFakeServer) -> str:
    site_id = server.graph.add_site("contoso.sharepoint.com", "/sites/ops")
    server.graph.grant_site(site_id, SECRET_APP, roles=("write",))
    return site_id


@pytest.fixture(scope="module")
def drive(server: MicrosoftFakeServer, site: str) -> str:
    return server.graph.drive_of_site(site)


def _msal_app(server: MicrosoftFakeServer, client_id: str, credential: Any,
              ) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id, client_credential=credential, authority=server.authority(TENANT),
        http_client=server.identity_session(), instance_discovery=False)


@pytest.fixture(scope="module")
def full_token(server: MicrosoftFakeServer, cert: tuple[str, str, str, str]) -> str:
    app = _msal_app(server, FULL_APP, {"private_key": cert[0], "thumbprint": cert[2]})
    return app.acquire_token_for_client([GRAPH_SCOPE])["access_token"]


@pytest.fixture(scope="module")
def selected_token(server: MicrosoftFakeServer) -> str:
    return _msal_app(server, SECRET_APP, SECRET).acquire_token_for_client(
        [GRAPH_SCOPE])["access_token"]


def _session(server: MicrosoftFakeServer, token: str) -> requests.Session:
    session = server.graph_session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


@pytest.fixture
def graph(server: MicrosoftFakeServer, full_token: str) -> requests.Session:
    return _session(server, full_token)


_counter = iter(range(1, 10_000))


def _workbook(server: MicrosoftFakeServer, drive: str, rows: int = 2) -> tuple[str, str]:
    """A Forms response workbook at a fresh path: (item id, item URL under /v1.0)."""
    data = [[n, dt.datetime(2026, 11, n, 9, 30), dt.datetime(2026, 11, n, 9, 41),
             f"r{n}@contoso.example", f"Reporter {n}", f"Event {n}"] for n in range(1, rows + 1)]
    item = server.graph.forms_workbook(drive, f"Forms/Near miss {next(_counter)}.xlsx",
                                       FORM_HEADER, data)
    return item, f"{GRAPH_HOST}/v1.0/drives/{drive}/items/{item}"


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _error(response: requests.Response) -> dict[str, Any]:
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["error"]


# ---------------------------------------------------------------------------------------
# Identity platform with msal
# ---------------------------------------------------------------------------------------


def test_openid_configuration_is_named_after_the_host(server: MicrosoftFakeServer) -> None:
    recorded = _body(_identity_entry(200, path_end="/openid-configuration"))
    response = requests.get(f"{server.url}/{TENANT}/v2.0/.well-known/openid-configuration",
                            timeout=5)
    doc = response.json()
    assert response.status_code == 200
    assert set(doc) == set(recorded)
    host = f"https://127.0.0.1:{server.port}"
    assert doc["token_endpoint"] == f"{host}/{server.identity.tenant_id}/oauth2/v2.0/token"
    assert doc["device_authorization_endpoint"].endswith("/oauth2/v2.0/devicecode")
    assert server.counters["identity.openid"] >= 1

    missing = requests.get(f"{server.url}/nowhere.example/v2.0/.well-known/"
                           "openid-configuration", timeout=5)
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_tenant"
    assert missing.json()["error_codes"] == [90002]


def test_client_secret_token_and_its_claims(server: MicrosoftFakeServer) -> None:
    recorded = _identity_entry(200, "client_credentials")
    raw = requests.post(f"{server.url}/{TENANT}/oauth2/v2.0/token", timeout=5, data={
        "client_id": SECRET_APP, "client_secret": SECRET, "grant_type": "client_credentials",
        "scope": GRAPH_SCOPE})
    assert raw.status_code == 200
    assert raw.headers["Content-Type"] == recorded["response_headers"]["content-type"]
    assert set(raw.json()) == set(_body(recorded))

    result = _msal_app(server, SECRET_APP, SECRET).acquire_token_for_client([GRAPH_SCOPE])
    assert result["token_type"] == "Bearer" and result["expires_in"] == 3599
    claims = _claims(result["access_token"])
    assert claims["aud"] == GRAPH_HOST
    assert claims["appid"] == SECRET_APP
    assert claims["tid"] == server.identity.tenant_id
    assert claims["roles"] == ["Sites.Selected", "Mail.Send"]
    assert claims["exp"] > claims["iat"]
    assert server.identity.issued[-1].grant_type == "client_credentials"


def test_wrong_secret_is_the_recorded_aadsts7000215(server: MicrosoftFakeServer) -> None:
    recorded = _identity_entry(401)
    raw = requests.post(f"{server.url}/{TENANT}/oauth2/v2.0/token", timeout=5, data={
        "client_id": SECRET_APP, "client_secret": "Bad_Secret",
        "grant_type": "client_credentials", "scope": GRAPH_SCOPE})
    assert raw.status_code == 401
    assert set(raw.json()) == set(_body(recorded))

    result = _msal_app(server, SECRET_APP, "Bad_Secret").acquire_token_for_client([GRAPH_SCOPE])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret")
    assert "access_token" not in result


def test_scope_and_client_errors(server: MicrosoftFakeServer) -> None:
    app = _msal_app(server, SECRET_APP, SECRET)
    bad_scope = app.acquire_token_for_client(["https://graph.microsoft.com/Mail.Send"])
    assert (bad_scope["error"], bad_scope["error_codes"]) == ("invalid_scope", [1002012])
    unknown = requests.post(f"{server.url}/{TENANT}/oauth2/v2.0/token", timeout=5, data={
        "client_id": "no-such-app", "client_secret": "x", "grant_type": "client_credentials",
        "scope": GRAPH_SCOPE})
    assert (unknown.status_code, unknown.json()["error"]) == (400, "unauthorized_client")
    assert unknown.json()["error_codes"] == [700016]


def test_certificate_credentials(server: MicrosoftFakeServer,
                                 cert: tuple[str, str, str, str]) -> None:
    private, public, _, _ = cert
    sha1 = _msal_app(server, FULL_APP, {"private_key": private, "thumbprint": cert[2]})
    assert "access_token" in sha1.acquire_token_for_client([GRAPH_SCOPE])
    assert _claims(server.identity.issued[-1].access_token)["appidacr"] == "2"
    sha256 = _msal_app(server, FULL_APP, {"private_key": private, "public_certificate": public})
    assert "access_token" in sha256.acquire_token_for_client([GRAPH_SCOPE])

    other = _certificate()
    stranger = _msal_app(server, FULL_APP, {"private_key": other[0], "thumbprint": other[2]})
    result = stranger.acquire_token_for_client([GRAPH_SCOPE])
    assert (result["error"], result["error_codes"]) == ("invalid_client", [700027])


def test_device_code_flow_with_approval_and_refresh(server: MicrosoftFakeServer) -> None:
    server.identity.device_interval = 1  # msal warns when it polls sooner than the interval
    app = msal.PublicClientApplication(PUBLIC_APP, authority=server.authority(TENANT),
                                       http_client=server.identity_session(),
                                       instance_discovery=False)
    flow = app.initiate_device_flow(scopes=["Files.ReadWrite", "Mail.Send"])
    recorded_flow = _body(_identity_entry(200, path_end="/devicecode"))
    assert set(recorded_flow) <= set(flow)
    assert flow["verification_uri"] == "https://microsoft.com/devicelogin"

    pending = app.acquire_token_by_device_flow(flow, exit_condition=lambda _flow: True)
    assert pending["error"] == "authorization_pending"
    assert pending["error_codes"] == [70016]

    server.identity.approve(flow["user_code"], user="manager@contoso.example")
    result = app.acquire_token_by_device_flow(flow, exit_condition=lambda _flow: True)
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == "manager@contoso.example"
    claims = _claims(result["access_token"])
    assert claims["scp"] == "Files.ReadWrite Mail.Send"
    assert claims["upn"] == "manager@contoso.example"
    assert "roles" not in claims
    account = app.get_accounts()[0]
    refreshed = app.acquire_token_silent(["Files.ReadWrite"], account, force_refresh=True)
    assert refreshed is not None and "access_token" in refreshed, refreshed
    assert [t.grant_type for t in server.identity.issued[-2:]] == [
        "urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]


def test_raw_device_code_exchange_matches_the_recording(server: MicrosoftFakeServer) -> None:
    endpoint = f"{server.url}/{TENANT}/oauth2/v2.0"
    scope = "Files.ReadWrite openid profile offline_access"
    flow = requests.post(f"{endpoint}/devicecode", timeout=5,
                         data={"client_id": PUBLIC_APP, "scope": scope}).json()
    assert set(flow) == set(_body(_identity_entry(200, path_end="/devicecode")))
    poll = {"client_id": PUBLIC_APP, "client_info": "1", "device_code": flow["device_code"],
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "scope": scope}
    pending = requests.post(f"{endpoint}/token", data=poll, timeout=5)
    assert pending.status_code == 400
    assert set(pending.json()) == set(_body(_identity_entry(400, "device_code")))
    server.identity.approve(flow["device_code"], user="manager@contoso.example")
    granted = requests.post(f"{endpoint}/token", data=poll, timeout=5)
    assert set(granted.json()) == set(_body(_identity_entry(200, "device_code")))
    assert requests.post(f"{endpoint}/token", data=poll, timeout=5).status_code == 400
    refresh = {"client_id": PUBLIC_APP, "grant_type": "refresh_token", "scope": scope,
               "refresh_token": granted.json()["refresh_token"]}
    assert requests.post(f"{endpoint}/token", data=refresh, timeout=5).status_code == 200
    reused = requests.post(f"{endpoint}/token", data=refresh, timeout=5)
    assert reused.json()["error"] == "invalid_grant"  # refresh tokens rotate
    unconsented = requests.post(f"{endpoint}/devicecode", timeout=5, data={
        "client_id": PUBLIC_APP, "scope": "Sites.ReadWrite.All"})
    assert unconsented.json()["error_codes"] == [65001]


def test_identity_fail_next_is_the_recorded_mfa_error(server: MicrosoftFakeServer) -> None:
    recorded = _body(_identity_entry(400, "password"))
    server.identity.fail_next()
    raw = requests.post(f"{server.url}/{TENANT}/oauth2/v2.0/token", timeout=5, data={
        "client_id": SECRET_APP, "client_secret": SECRET, "grant_type": "client_credentials",
        "scope": GRAPH_SCOPE})
    assert raw.status_code == 400
    assert set(raw.json()) == set(recorded)
    assert raw.json()["suberror"] == "basic_action"


# ---------------------------------------------------------------------------------------
# Graph: authentication, sites, drive items
# ---------------------------------------------------------------------------------------


def test_graph_requires_a_valid_token(server: MicrosoftFakeServer, drive: str) -> None:
    recorded = _body(_graph_entry("Graph error envelope"))["error"]
    anonymous = server.graph_session()
    response = anonymous.get(f"{GRAPH_HOST}/v1.0/drives/{drive}",
                             headers={"client-request-id": "abc-123"})
    assert response.status_code == 401
    error = _error(response)
    assert set(error) == set(recorded)
    assert set(error["innerError"]) == set(recorded["innerError"])
    assert error["code"] == "InvalidAuthenticationToken"
    assert error["innerError"]["client-request-id"] == "abc-123"
    assert response.headers["client-request-id"] == "abc-123"

    token = server.identity.add_token(roles=("Files.Read.All",))
    assert _session(server, token).get(f"{GRAPH_HOST}/v1.0/drives/{drive}").status_code == 200
    server.identity.expire_tokens()
    expired = _session(server, token).get(f"{GRAPH_HOST}/v1.0/drives/{drive}")
    assert expired.status_code == 401
    assert _error(expired)["message"] == "Lifetime validation failed, the token is expired."


def test_site_by_path_and_drive_item_shapes(server: MicrosoftFakeServer, graph: requests.Session,
                                            site: str, drive: str) -> None:
    for suffix in ("", ":"):
        response = graph.get(f"{GRAPH_HOST}/v1.0/sites/contoso.sharepoint.com:/sites/ops{suffix}")
        assert response.status_code == 200
        assert response.json()["id"] == site
        assert {"id", "name", "displayName", "webUrl", "createdDateTime",
                "lastModifiedDateTime"} <= set(response.json())
    missing = graph.get(f"{GRAPH_HOST}/v1.0/sites/contoso.sharepoint.com:/sites/nope")
    assert (missing.status_code, _error(missing)["code"]) == (404, "itemNotFound")

    item, url = _workbook(server, drive)
    path = server.graph.items[item].path
    recorded = _body(_graph_entry("GET driveItem children"))["value"][0]
    urls = [url, f"{GRAPH_HOST}/v1.0/sites/{site}/drive/root:/{quote(path)}",
            f"{GRAPH_HOST}/v1.0/sites/{site}/drive/root:/{quote(path)}:",
            f"{GRAPH_HOST}/v1.0/drives/{drive}/root:/{quote(path)}:"]
    for each in urls:
        response = graph.get(each)
        assert response.status_code == 200, each
        body = response.json()
        assert body["id"] == item
        # "reactions" exists on personal OneDrive only; "@odata.context" on single GETs
        assert set(recorded) - {"reactions"} <= set(body) - {"@odata.context", "shared"}
        assert set(recorded["parentReference"]) - {"name"} <= set(body["parentReference"])
        assert body["file"]["mimeType"] == recorded["file"]["mimeType"]
        assert body["parentReference"]["driveType"] == "documentLibrary"

    selected = graph.get(url, params={"$select": "id,name,eTag"}).json()
    assert set(selected) == {"@odata.context", "id", "name", "eTag"}
    bad = graph.get(url, params={"$select": "id,colour"})
    assert bad.status_code == 400
    assert len(server.violations) == 1
    server.violations.clear()


def test_office365_graph_client_reads_an_item_and_a_range(
        server: MicrosoftFakeServer, full_token: str, drive: str) -> None:
    item, _ = _workbook(server, drive)
    client = GraphClient(token_callback=lambda: {"access_token": full_token,
                                                 "token_type": "Bearer"})
    client.with_transport(session=server.graph_session())
    base = f"{GRAPH_HOST}/v1.0/drives/{drive}/items/{item}"
    got = client.pending_request().execute_request_direct(RequestOptions(base))
    assert got.json()["id"] == item
    used = client.pending_request().execute_request_direct(
        RequestOptions(f"{base}/workbook/worksheets('Sheet1')/range(address='A1:C2')"))
    assert used.json()["values"][0] == ["ID", "Start time", "Completion time"]
    assert used.json()["values"][1][1] == excel_serial(dt.datetime(2026, 11, 1, 9, 30))
    assert used.json()["text"][1][1] == "11/1/2026 9:30"
    with pytest.raises(ClientRequestException) as caught:
        client.pending_request().execute_request_direct(RequestOptions(f"{base}x"))
    assert caught.value.response.status_code == 404


def test_shares_resolve_sharing_links(server: MicrosoftFakeServer, graph: requests.Session,
                                      selected_token: str, drive: str) -> None:
    item, _ = _workbook(server, drive)
    link = server.graph.share_link(item)
    assert link.startswith("https://contoso.sharepoint.com/:x:/s/ops/E")
    token = sharing_token(link)
    assert token.startswith("u!") and "=" not in token
    response = graph.get(f"{GRAPH_HOST}/v1.0/shares/{token}/driveItem")
    assert (response.status_code, response.json()["id"]) == (200, item)
    # the shares API takes Files.*.All or Sites.*.All; a Sites.Selected app is refused
    refused = _session(server, selected_token).get(f"{GRAPH_HOST}/v1.0/shares/{token}/driveItem")
    assert (refused.status_code, _error(refused)["code"]) == (403, "accessDenied")
    unknown = graph.get(f"{GRAPH_HOST}/v1.0/shares/{sharing_token(link.replace('/E', '/F'))}"
                        "/driveItem")
    assert unknown.status_code == 404


def test_content_redirects_to_a_preauthenticated_download(
        server: MicrosoftFakeServer, graph: requests.Session, drive: str) -> None:
    _, url = _workbook(server, drive)
    first = graph.get(f"{url}/content", allow_redirects=False)
    assert first.status_code == 302 and first.content == b""
    download = requests.get(first.headers["Location"], timeout=5)  # no Authorization
    assert download.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(download.content))
    sheet = book["Sheet1"]
    assert [c.value for c in sheet[1]] == FORM_HEADER
    assert sheet["B2"].value == dt.datetime(2026, 11, 1, 9, 30)
    assert "Table1" in sheet.tables
    followed = graph.get(f"{url}/content")
    assert followed.content[:2] == b"PK"
    assert server.counters["graph.driveItem.download"] == 2


# ---------------------------------------------------------------------------------------
# Workbooks: ranges and Excel semantics
# ---------------------------------------------------------------------------------------


def test_recorded_range_patch_is_reproduced(server: MicrosoftFakeServer,
                                            graph: requests.Session, drive: str) -> None:
    entry = _graph_entry("PATCH worksheet range")
    recorded = _body(entry)
    item = server.graph.add_workbook(drive, f"Book {next(_counter)}.xlsx", {"Sheet1": []})
    url = (f"{GRAPH_HOST}/v1.0/drives/{drive}/items/{item}/workbook/worksheets/Sheet1/"
           "range(address='A56:B57')")
    response = graph.patch(url, json=json.loads(entry["request_body"])
                           if isinstance(entry["request_body"], str) else entry["request_body"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == entry["response_headers"]["content-type"]
    body = response.json()
    assert list(body) == list(recorded)
    assert {k: v for k, v in body.items() if k != "@odata.id"} == {
        k: v for k, v in recorded.items() if k != "@odata.id"}
    assert body["@odata.id"].endswith("/range(address=%27A56:B57%27)")


def test_recorded_range_get_is_reproduced(server: MicrosoftFakeServer,
                                          graph: requests.Session, drive: str) -> None:
    recorded = _body(_graph_entry("GET worksheets/{name}/range"))
    item = server.graph.add_workbook(drive, f"Book {next(_counter)}.xlsx", {"Sheet1": []})
    url = f"{GRAPH_HOST}/v1.0/drives/{drive}/items/{item}/workbook/worksheets('Sheet1')"
    address = "range(address='Sheet1!A2:J9')"
    assert graph.patch(f"{url}/{address}", json={
        "numberFormat": recorded["numberFormat"], "values": recorded["values"]}
                       ).status_code == 200
    body = graph.get(f"{url}/{address}").json()
    assert {k: v for k, v in body.items() if k != "@odata.id"} == {
        k: v for k, v in recorded.items() if k != "@odata.id"}


def test_excel_typing_semantics(server: MicrosoftFakeServer, graph: requests.Session,
                                drive: str) -> None:
    item = server.graph.add_workbook(drive, f"Book {next(_counter)}.xlsx",
                                     {"Sheet1": [["keep", "x", "y"]]})
    url = f"{GRAPH_HOST}/v1.0/drives/{drive}/items/{item}/workbook/worksheets('Sheet1')"
    values = [["'=1+1", "=1+1", "=SUM(A1:A2)"], ["00123", "TRUE", "2026-11-02"],
              [None, "", 4.5]]
    response = graph.patch(f"{url}/range(address='A1:C3')", json={"values": values})
    assert response.status_code == 200
    body = response.json()
    assert body["values"] == [["=1+1", 2, "#NAME?"], [123, True, 46328], ["", "", 4.5]]
    assert body["formulas"][0] == ["=1+1", "=1+1", "=SUM(A1:A2)"]
    assert body["valueTypes"][0] == ["String", "Double", "Error"]
    assert body["text"][1] == ["123", "TRUE", "11/2/2026"]
    assert server.graph.cells(item, "Sheet1") == [
        ["=1+1", "=1+1", "=SUM(A1:A2)"], [123, True, 46328], [None, None, 4.5]]
    assert server.graph.formats(item, "Sheet1").number_formats == {"C2": "m/d/yyyy"}


def test_range_patch_violations(server: MicrosoftFakeServer, graph: requests.Session,
                                drive: str) -> None:
    item, url = _workbook(server, drive)
    target = f"{url}/workbook/worksheets/Sheet1/range(address='A5:C5')"
    wrong = graph.patch(target, json={"values": [["a", "b"]]})
    assert wrong.status_code == 400
    assert _error(wrong)["innerError"]["code"] == "invalidArgument"
    nested = graph.patch(target, json={"values": [["a", {"b": 1}, "c"]]})
    assert nested.status_code == 400
    unknown = graph.patch(target, json={"value": [["a", "b", "c"]]})
    assert unknown.status_code == 400
    assert len(server.violations) == 3
    with pytest.raises(AssertionError, match="A5:C5"):
        server.assert_no_violations()
    server.violations.clear()
    assert server.graph.cells(item, "Sheet1")[4:] == []


def test_worksheets_used_range_and_formats(server: MicrosoftFakeServer,
                                           graph: requests.Session, drive: str) -> None:
    item, url = _workbook(server, drive)
    added = graph.post(f"{url}/workbook/worksheets/add", json={"name": "Tracker"})
    assert added.status_code == 201
    assert set(added.json()) >= {"id", "name", "position", "visibility"}
    assert added.json()["id"].startswith("{")
    duplicate = graph.post(f"{url}/workbook/worksheets", json={"name": "tracker"})
    assert duplicate.status_code == 409
    assert _error(duplicate)["innerError"]["code"] == "itemAlreadyExists"
    listing = graph.get(f"{url}/workbook/worksheets").json()["value"]
    assert [(s["name"], s["position"], s["visibility"]) for s in listing] == [
        ("Sheet1", 0, "Visible"), ("Tracker", 1, "Visible")]

    used = graph.get(f"{url}/workbook/worksheets/Tracker/usedRange").json()
    assert (used["address"], used["values"]) == ("Tracker!A1", [[""]])
    sheet = f"{url}/workbook/worksheets('Tracker')"
    assert graph.patch(f"{sheet}/range(address='A1:B1')", json={
        "values": [["Ref", "Status"]]}).status_code == 200
    assert graph.patch(f"{sheet}/range(address='A1:B1')/format/font",
                       json={"bold": True}).json()["bold"] is True
    assert graph.patch(f"{sheet}/range(address='A1:B1')/format/fill",
                       json={"color": "#FFF2CC"}).status_code == 200
    assert graph.patch(f"{sheet}/range(address='C3')/format/fill",
                       json={"color": "#FFF2CC"}).status_code == 200
    assert graph.patch(f"{sheet}/range(address='A:B')/format",
                       json={"columnWidth": 120, "wrapText": True}).status_code == 200
    assert graph.post(f"{sheet}/range(address='A:B')/format/autofitColumns").status_code == 204
    formats = server.graph.formats(item, "Tracker")
    assert formats.bold == {"A1", "B1"}
    assert formats.fills == {"A1": "#FFF2CC", "B1": "#FFF2CC", "C3": "#FFF2CC"}
    assert formats.column_widths == {"A": 120.0, "B": 120.0}
    assert formats.autofit == ("columns:A:B",)
    # formatting counts as used, unless valuesOnly
    assert graph.get(f"{sheet}/usedRange").json()["address"] == "Tracker!A1:C3"
    assert graph.get(f"{sheet}/usedRange(valuesOnly=true)").json()["address"] == "Tracker!A1:B1"


def test_freeze_panes_is_not_in_v1(server: MicrosoftFakeServer, graph: requests.Session,
                                   drive: str) -> None:
    _, url = _workbook(server, drive)
    response = graph.post(f"{url}/workbook/worksheets/Sheet1/freezePanes/freezeRows",
                          json={"count": 1})
    assert response.status_code == 400
    assert _error(response)["message"] == "Resource not found for the segment 'freezePanes'."
    assert [v.method_id for v in server.violations] == ["graph.workbook.freezePanes"]
    server.violations.clear()


def test_sheet_names_with_spaces_and_quotes(server: MicrosoftFakeServer,
                                            graph: requests.Session, drive: str) -> None:
    name = "Near miss 'Q4'"
    item = server.graph.add_workbook(drive, f"Book {next(_counter)}.xlsx",
                                     {name: [["a", 1], ["b", 2]]})
    quoted = quote(name.replace("'", "''"))
    url = f"{GRAPH_HOST}/v1.0/drives/{drive}/items/{item}/workbook/worksheets('{quoted}')"
    body = graph.get(f"{url}/usedRange").json()
    assert body["address"] == a1_address(name, (0, 0, 1, 1)) == "'Near miss ''Q4'''!A1:B2"
    assert body["values"] == [["a", 1], ["b", 2]]
    lower = url.replace("/v1.0/drives/", "/V1.0/DRIVES/").replace("/workbook/", "/WORKBOOK/")
    assert graph.get(f"{lower}/USEDRANGE").status_code == 200


def test_workbook_routes_by_path_and_by_sheet_id(server: MicrosoftFakeServer,
                                                 graph: requests.Session, site: str,
                                                 drive: str) -> None:
    item, url = _workbook(server, drive)
    path = quote(server.graph.items[item].path)
    by_path = f"{GRAPH_HOST}/v1.0/drives/{drive}/root:/{path}:/workbook"
    sheets = graph.get(f"{by_path}/worksheets").json()["value"]
    sheet_id = sheets[0]["id"]
    by_id = graph.get(f"{by_path}/worksheets/{quote(sheet_id)}/range(address='Sheet1!A1:B1')")
    assert by_id.json()["values"] == [FORM_HEADER[:2]]
    via_site = f"{GRAPH_HOST}/v1.0/sites/{site}/drive/root:/{path}:/workbook"
    table = graph.get(f"{via_site}/worksheets('Sheet1')/tables('Table1')/headerRowRange")
    assert table.json()["address"] == "Sheet1!A1:F1"
    assert graph.post(f"{url}/workbook/worksheets/add", json={"name": "Scratch"}
                      ).status_code == 201
    assert graph.delete(f"{url}/workbook/worksheets('Scratch')").status_code == 204
    assert graph.get(f"{url}/workbook/worksheets('Scratch')").status_code == 404
    assert server.counters["graph.workbook.worksheet.delete"] == 1


def test_quick_xor_hash_vectors() -> None:
    vectors = {"": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "/aNzzCFPS/A=": "/RjFHJgRgicsAR4ACAAAAAAAAAA=",
               "T6LYJIfDh81JrAK309H2JMJTXis=": "zBTHrspn3mEcohlJdIUAbjGNaNg="}
    for data, expected in vectors.items():
        assert quick_xor_hash(base64.b64decode(data)) == expected


def test_range_delete_shifts_rows_and_shrinks_the_table(
        server: MicrosoftFakeServer, graph: requests.Session, drive: str) -> None:
    item, url = _workbook(server, drive, rows=4)
    sheet = f"{url}/workbook/worksheets('Sheet1')"
    assert server.graph.tables(item) == {"Table1": "Sheet1!A1:F5"}
    response = graph.post(f"{sheet}/range(address='3:3')/delete", json={"shift": "Up"})
    assert response.status_code == 204 and response.content == b""
    assert [row[0] for row in server.graph.cells(item, "Sheet1")] == ["ID", 1, 3, 4]
    assert server.graph.tables(item) == {"Table1": "Sheet1!A1:F4"}
    assert graph.post(f"{sheet}/range(address='A2:F2')/delete",
                      json={"shift": "Up"}).status_code == 204
    assert [row[0] for row in server.graph.cells(item, "Sheet1")] == ["ID", 3, 4]
    partial = graph.post(f"{sheet}/range(address='B2:C2')/delete", json={"shift": "Up"})
    assert _error(partial)["innerError"]["code"] == "insertDeleteConflict"
    missing_shift = graph.post(f"{sheet}/range(address='A2:F2')/delete", json={})
    assert missing_shift.status_code == 400
    server.violations.clear()


def test_tables_rows_and_row_adds(server: MicrosoftFakeServer, graph: requests.Session,
                                  drive: str) -> None:
    item, url = _workbook(server, drive, rows=3)
    tables = graph.get(f"{url}/workbook/worksheets('Sheet1')/tables").json()["value"]
    recorded_table = _body(_graph_entry("GET worksheets/{name}/tables"))["value"][0]
    assert list(tables[0]) == list(recorded_table)
    assert tables[0]["name"] == "Table1"

    rows = graph.get(f"{url}/workbook/tables/Table1/rows", params={"$top": 2, "$skip": 1})
    recorded_rows = _body(_graph_entry("GET workbook/tables/{name}/rows"))
    assert set(rows.json()) == set(recorded_rows)
    assert list(rows.json()["value"][0]) == list(recorded_rows["value"][0])
    assert [r["index"] for r in rows.json()["value"]] == [1, 2]
    assert rows.json()["value"][0]["values"][0][0] == 2

    header = graph.get(f"{url}/workbook/tables('Table1')/headerRowRange").json()
    assert header["values"] == [FORM_HEADER]
    added = graph.post(f"{url}/workbook/tables/Table1/rows/add", json={
        "index": None, "values": [[4, "11/4/2026 9:30", "", "r4@contoso.example", "R", "x"]]})
    assert added.status_code == 201
    assert added.json()["index"] == 3
    office365_style = graph.post(f"{url}/workbook/tables/Table1/rows", json={
        "values": [[5, "", "", "", "", "y"]], "@odata.type": "#microsoft.graph.workbookTableRow"})
    assert office365_style.status_code == 201
    assert server.graph.tables(item) == {"Table1": "Sheet1!A1:F6"}
    assert server.graph.cells(item, "Sheet1")[4][1] == excel_serial(dt.datetime(2026, 11, 4,
                                                                                 9, 30))
    narrow = graph.post(f"{url}/workbook/tables/Table1/rows/add", json={"values": [[6, "z"]]})
    assert narrow.status_code == 400
    assert len(server.violations) == 1
    server.violations.clear()


# ---------------------------------------------------------------------------------------
# Sessions, change tags, locks, permissions
# ---------------------------------------------------------------------------------------


def test_sessions_persistent_and_not(server: MicrosoftFakeServer, graph: requests.Session,
                                     drive: str) -> None:
    item, url = _workbook(server, drive)
    recorded = _body(_graph_entry("POST workbook/createSession"))
    cell = f"{url}/workbook/worksheets/Sheet1/range(address='G2')"

    view = graph.post(f"{url}/workbook/createSession", json={"persistChanges": False})
    assert view.status_code == 201 and list(view.json()) == list(recorded)
    view_id = {"workbook-session-id": view.json()["id"]}
    ctag = server.graph.item_json(item)["cTag"]
    assert graph.patch(cell, json={"values": [["draft"]]}, headers=view_id).status_code == 200
    assert graph.get(cell, headers=view_id).json()["values"] == [["draft"]]
    assert graph.get(cell).json()["values"] == [[""]]
    assert graph.post(f"{url}/workbook/closeSession", headers=view_id).status_code == 204
    assert server.graph.item_json(item)["cTag"] == ctag
    closed = graph.get(cell, headers=view_id)
    assert closed.status_code == 404

    edit = graph.post(f"{url}/workbook/createSession", json={"persistChanges": True}).json()
    edit_id = {"workbook-session-id": edit["id"]}
    assert graph.post(f"{url}/workbook/refreshSession", headers=edit_id).status_code == 204
    assert graph.patch(cell, json={"values": [["kept"]]}, headers=edit_id).status_code == 200
    assert server.graph.cells(item, "Sheet1")[1][6] == "kept"
    assert server.graph.item_json(item)["cTag"] != ctag
    server.graph.expire_sessions()
    expired = graph.get(cell, headers=edit_id)
    assert expired.status_code == 404
    assert _error(expired)["innerError"]["code"] == "invalidSessionReCreatable"
    assert server.graph.open_sessions(item) == []


def test_change_tags(server: MicrosoftFakeServer, graph: requests.Session, drive: str) -> None:
    item, url = _workbook(server, drive)
    before = server.graph.item_json(item)
    graph.patch(f"{url}/workbook/worksheets/Sheet1/range(address='F2')",
                json={"values": [["edited"]]})
    after_api = server.graph.item_json(item)
    assert after_api["eTag"] != before["eTag"] and after_api["cTag"] != before["cTag"]
    assert _when(after_api["lastModifiedDateTime"]) > _when(before["lastModifiedDateTime"])
    assert after_api["lastModifiedBy"]["application"]["id"] == FULL_APP
    server.graph.set_cell(item, "Sheet1", 2, "F", "typed in Excel")
    after_outside = server.graph.item_json(item)
    assert after_outside["cTag"] != after_api["cTag"]
    assert graph.get(url).json()["eTag"] == after_outside["eTag"]
    server.graph.rename(item, "Renamed.xlsx")
    renamed = server.graph.item_json(item)
    assert renamed["eTag"] != after_outside["eTag"]
    assert renamed["cTag"] == after_outside["cTag"]
    server.graph.append_rows(item, "Sheet1", [[9, None, None, "x@y.z", "N", "late"]])
    assert server.graph.tables(item) == {"Table1": "Sheet1!A1:F4"}
    server.graph.delete_row(item, "Sheet1", 2)
    assert [r[0] for r in server.graph.cells(item, "Sheet1")] == ["ID", 2, 9]


def test_locked_workbooks(server: MicrosoftFakeServer, graph: requests.Session,
                          drive: str) -> None:
    item, url = _workbook(server, drive)
    target = f"{url}/workbook/worksheets/Sheet1/usedRange"
    server.graph.lock(item, 423)
    locked = graph.get(target)
    assert locked.status_code == 423
    assert (_error(locked)["code"], _error(locked)["innerError"]["code"]) == (
        "notAllowed", "resourceLocked")
    server.graph.lock(item, 409, by="Megan Bowen")
    conflict = graph.post(f"{url}/workbook/createSession", json={"persistChanges": True})
    assert conflict.status_code == 409
    assert _error(conflict)["innerError"]["code"] == "accessConflict"
    assert _error(conflict)["message"] == "Megan Bowen is editing this workbook."
    assert graph.get(url).status_code == 200  # the file itself is still readable
    server.graph.unlock(item)
    assert graph.get(target).status_code == 200


def test_permissions(server: MicrosoftFakeServer, graph: requests.Session, site: str,
                     drive: str, selected_token: str) -> None:
    _, url = _workbook(server, drive)
    selected = _session(server, selected_token)
    assert selected.get(url).status_code == 200  # granted "write" on this site
    assert selected.patch(f"{url}/workbook/worksheets/Sheet1/range(address='G1')",
                          json={"values": [["ok"]]}).status_code == 200

    other_site = server.graph.add_site("contoso.sharepoint.com", "/sites/finance")
    other_item, other_url = _workbook(server, server.graph.drive_of_site(other_site))
    refused = selected.get(other_url)
    assert (refused.status_code, _error(refused)["code"], _error(refused)["message"]) == (
        403, "accessDenied", "Access denied")
    server.graph.grant_site(other_site, SECRET_APP, roles=("read",))
    assert selected.get(other_url).status_code == 200
    read_only = selected.patch(f"{other_url}/workbook/worksheets/Sheet1/range(address='A9')",
                               json={"values": [["no"]]})
    assert read_only.status_code == 403

    reader = _session(server, _msal_app(server, READER_APP, SECRET).acquire_token_for_client(
        [GRAPH_SCOPE])["access_token"])
    assert reader.get(url).status_code == 200
    assert reader.post(f"{url}/workbook/tables/Table1/rows/add",
                       json={"values": [[1, 2, 3, 4, 5, 6]]}).status_code == 403
    mail = reader.post(f"{GRAPH_HOST}/v1.0/users/noreply@contoso.example/sendMail",
                       json={"message": {"toRecipients": [
                           {"emailAddress": {"address": "a@b.c"}}]}})
    assert (mail.status_code, _error(mail)["code"]) == (403, "ErrorAccessDenied")

    server.graph.deny_site(site)
    try:
        denied = graph.get(url)
        assert (denied.status_code, _error(denied)["code"]) == (403, "accessDenied")
    finally:
        server.graph.deny_site(site, denied=False)
    assert server.graph.cells(other_item, "Sheet1")[8:] == []


def test_delegated_token_on_a_user_drive(server: MicrosoftFakeServer) -> None:
    owner = "manager@contoso.example"
    drive = server.graph.add_user_drive(owner)
    item = server.graph.add_workbook(drive, "Tracker.xlsx", {"Sheet1": [["Ref"]]})
    mine = _session(server, server.identity.add_token(scopes=("Files.ReadWrite",), user=owner))
    response = mine.get(f"{GRAPH_HOST}/v1.0/me/drive/root:/Tracker.xlsx:")
    assert (response.status_code, response.json()["id"]) == (200, item)
    assert response.json()["parentReference"]["driveType"] == "business"
    by_upn = mine.get(f"{GRAPH_HOST}/v1.0/users/{owner}/drive/root:/Tracker.xlsx")
    assert by_upn.status_code == 200
    theirs = _session(server, server.identity.add_token(scopes=("Files.ReadWrite",),
                                                       user="other@contoso.example"))
    assert theirs.get(f"{GRAPH_HOST}/v1.0/users/{owner}/drive/items/{item}").status_code == 403


# ---------------------------------------------------------------------------------------
# $batch and sendMail
# ---------------------------------------------------------------------------------------


def test_batch_shape_dependencies_and_limit(server: MicrosoftFakeServer,
                                            graph: requests.Session, drive: str) -> None:
    recorded = _body(_graph_entry("JSON $batch"))
    item, _ = _workbook(server, drive)
    base = f"/drives/{drive}/items/{item}"
    patch = {"values": [["Hello", "100"], ["1/1/2016", None]]}
    response = graph.post(f"{GRAPH_HOST}/v1.0/$batch", json={"requests": [
        {"id": "1", "method": "GET", "url": "/users/noreply@contoso.example"},
        {"id": "2", "method": "PATCH", "url": f"{base}/workbook/worksheets/Sheet1/"
         "range(address='A56:B57')", "headers": {"Content-Type": "application/json"},
         "body": patch},
        {"id": "3", "method": "GET", "url": f"{base}/nope", "dependsOn": ["2"]},
        {"id": "4", "method": "GET", "url": f"{base}/workbook/worksheets", "dependsOn": ["3"]},
    ]})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    answers = {r["id"]: r for r in response.json()["responses"]}
    assert set(response.json()) == set(recorded)
    assert set(answers["1"]) == set(recorded["responses"][0])
    assert answers["1"]["body"]["userPrincipalName"] == "noreply@contoso.example"
    assert set(answers["2"]["body"]) == set(recorded["responses"][1]["body"])
    assert answers["2"]["body"]["values"] == [["Hello", 100], [42370, ""]]
    assert (answers["3"]["status"], answers["4"]["status"]) == (400, 424)
    assert server.counters["graph.workbook.range.update"] >= 1
    server.violations.clear()

    too_many = graph.post(f"{GRAPH_HOST}/v1.0/$batch", json={"requests": [
        {"id": str(n), "method": "GET", "url": base} for n in range(21)]})
    assert too_many.status_code == 400
    assert _error(too_many)["code"] == "BadRequest"
    assert [v.method_id for v in server.violations] == ["graph.batch"]
    server.violations.clear()


def test_batch_sub_request_faults(server: MicrosoftFakeServer, graph: requests.Session,
                                  drive: str) -> None:
    item, _ = _workbook(server, drive)
    base = f"/drives/{drive}/items/{item}/workbook/worksheets/Sheet1"
    steps = [{"id": str(n), "method": "PATCH", "url": f"{base}/range(address='H{n}')",
              "headers": {"Content-Type": "application/json"}, "body": {"values": [[n]]}}
             for n in range(1, 5)]
    server.faults.fail_next(1, 429, retry_after=7, only="graph.workbook.range.update")
    server.faults.lose_next(1, only="graph.workbook.range.update")
    response = graph.post(f"{GRAPH_HOST}/v1.0/$batch", json={"requests": steps})
    answers = {r["id"]: r for r in response.json()["responses"]}
    assert answers["1"]["status"] == 429
    assert answers["1"]["headers"]["Retry-After"] == "7"
    assert answers["1"]["body"]["error"]["code"] == "tooManyRequests"
    assert answers["2"]["status"] == 504  # applied, answer lost behind the front end
    assert (answers["3"]["status"], answers["4"]["status"]) == (200, 200)
    column = [row[7] if len(row) > 7 else None for row in server.graph.cells(item, "Sheet1")]
    assert column[:4] == [None, 2, 3, 4]


def test_send_mail_json_and_mime(server: MicrosoftFakeServer, graph: requests.Session) -> None:
    sender = f"{GRAPH_HOST}/v1.0/users/noreply@contoso.example"
    message = {"subject": "Near misses this week", "body": {"contentType": "HTML",
                                                            "content": "<b>3</b> new"},
               "toRecipients": [{"emailAddress": {"address": "manager@contoso.example"}}]}
    response = graph.post(f"{sender}/sendmail", json={"message": message,
                                                       "saveToSentItems": False})
    assert (response.status_code, response.content) == (202, b"")
    sent = server.graph.sent[-1]
    assert isinstance(sent, SentMail) and not sent.mime and not sent.save_to_sent_items
    assert sent.message == message and sent.sender == "noreply@contoso.example"

    mime = EmailMessage()
    mime["To"], mime["Subject"] = "manager@contoso.example", "MIME digest"
    mime.set_content("Three near misses.")
    encoded = base64.encodebytes(mime.as_bytes())
    response = graph.post(f"{sender}/sendMail", data=encoded,
                          headers={"Content-Type": "text/plain"})
    assert response.status_code == 202
    parsed = server.graph.sent[-1].message
    assert isinstance(parsed, EmailMessage) and parsed["Subject"] == "MIME digest"

    bad = graph.post(f"{sender}/sendMail", data=b"not base64 at all!",
                     headers={"Content-Type": "text/plain"})
    assert (bad.status_code, _error(bad)["code"]) == (400, "ErrorMimeContentInvalidBase64String")
    unknown = graph.post(f"{GRAPH_HOST}/v1.0/users/ghost@contoso.example/sendMail",
                         json={"message": message})
    assert (unknown.status_code, _error(unknown)["code"]) == (404, "ErrorInvalidUser")


# ---------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------


def test_throttling_and_server_error_bodies(server: MicrosoftFakeServer,
                                            graph: requests.Session, drive: str) -> None:
    _, url = _workbook(server, drive)
    server.faults.fail_next(1, 429, retry_after=3, only="graph.driveItem.get")
    throttled = graph.get(url)
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "3")
    assert _error(throttled)["code"] == "activityLimitReached"
    assert graph.get(url).status_code == 200

    server.faults.fail_next(1, 429, only="graph.workbook")
    workbook = graph.get(f"{url}/workbook/worksheets")
    assert workbook.headers["Retry-After"] == "1"  # Graph always sends one
    assert _error(workbook)["innerError"]["code"] == "tooManyRequestsUncategorized"
    server.faults.fail_next(1, 503, only="graph")
    assert _error(graph.get(url))["code"] == "serviceNotAvailable"
    server.faults.fail_next(1, 504, only="graph")
    assert graph.get(url).status_code == 504
    assert server.faults.injected[-1].status == 504


def test_dropped_connection_and_lost_answer(server: MicrosoftFakeServer,
                                            graph: requests.Session, drive: str) -> None:
    item, url = _workbook(server, drive)
    target = f"{url}/workbook/worksheets/Sheet1/range(address='G2')"
    server.faults.drop_next(1, only="graph.workbook.range.update")
    with pytest.raises(requests.ConnectionError):
        graph.patch(target, json={"values": [["dropped"]]})
    assert len(server.graph.cells(item, "Sheet1")[1]) == 6  # not applied

    ctag = server.graph.item_json(item)["cTag"]
    server.faults.lose_next(1, only="graph.workbook.range.update")
    with pytest.raises(requests.ConnectionError):
        graph.patch(target, json={"values": [["lost"]]})
    assert server.graph.cells(item, "Sheet1")[1][6] == "lost"  # applied
    assert server.graph.item_json(item)["cTag"] != ctag
    assert server.faults.injected[-1].lost

    server.faults.set_rate(1.0, statuses=(LOST,), only="graph.workbook.range.update")
    with pytest.raises(requests.ConnectionError):
        graph.patch(target, json={"values": [["lost again"]]})
    assert server.graph.cells(item, "Sheet1")[1][6] == "lost again"
    server.faults.set_rate(1.0, statuses=(DROP,), only="graph.workbook.range.update")
    with pytest.raises(requests.ConnectionError):
        graph.patch(target, json={"values": [["never"]]})
    assert server.graph.cells(item, "Sheet1")[1][6] == "lost again"


def test_random_faults_spare_the_identity_endpoints(server: MicrosoftFakeServer,
                                                    graph: requests.Session,
                                                    drive: str) -> None:
    _, url = _workbook(server, drive)
    server.faults.set_rate(1.0, statuses=(503,))
    result = _msal_app(server, SECRET_APP, SECRET).acquire_token_for_client([GRAPH_SCOPE])
    assert "access_token" in result
    assert graph.get(url).status_code == 503
    server.faults.set_rate(1.0, statuses=(503,), only="identity.token")
    app = _msal_app(server, SECRET_APP, SECRET)
    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
        app.acquire_token_for_client([GRAPH_SCOPE])  # msal raises on a 5xx
    server.faults.set_rate(1.0, statuses=(429,), only="identity.token")
    fresh = _msal_app(server, SECRET_APP, SECRET)  # msal replays a throttled answer
    throttled = fresh.acquire_token_for_client([GRAPH_SCOPE])
    assert throttled["error"] == "temporarily_unavailable"


def test_unknown_query_parameters_are_violations(server: MicrosoftFakeServer,
                                                 graph: requests.Session, drive: str) -> None:
    _, url = _workbook(server, drive)
    assert graph.get(url, params={"foo": "1"}).status_code == 200
    assert graph.get(url, params={"$foo": "1"}).status_code == 400
    assert [v.problem for v in server.violations] == [
        "unknown query parameter 'foo'", "unknown query parameter '$foo'"]
    server.violations.clear()
    unknown = graph.get(f"{GRAPH_HOST}/v1.0/drives/{drive}/list")
    assert (unknown.status_code, _error(unknown)["code"]) == (400, "BadRequest")
    assert len(server.violations) == 1
    server.violations.clear()
    server.assert_no_violations()
