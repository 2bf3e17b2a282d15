"""Signing in to Microsoft with real msal against the identity fake: app-only tokens cached
across runs, the device-code sign-in of `nearmiss auth microsoft`, refusals in one line."""

from __future__ import annotations

import re
import stat
import threading
import time
from pathlib import Path

import pytest
import yaml

from config.settings import MicrosoftSettings
from connectors.graph import CredentialsRefused, GraphClients, Tokens, token_claims
from jobs.cli import main
from tests.fakes.microsoft import MicrosoftFakeServer
from tests.fakes.microsoft_deployment import (
    CLIENT_ID,
    MicrosoftDeployment,
    microsoft_section,
    tenant,
)


@pytest.fixture
def server():
    with MicrosoftFakeServer() as fake:
        yield fake
        fake.assert_no_violations()


def token_requests(server: MicrosoftFakeServer) -> int:
    return sum(r.method_id == "identity.token" for r in server.requests)


def test_an_app_token_is_cached_on_disk_for_the_next_runs(server, tmp_path, monkeypatch):
    tenant(server)
    monkeypatch.setenv("NEARMISS_TEST_MS_SECRET", "fake-client-secret")
    ms = MicrosoftSettings.model_validate(microsoft_section(server, tmp_path))
    first = Tokens(ms)()
    assert token_claims(first["access_token"])["roles"] == ["Sites.Selected", "Mail.Send"]
    cache = Path(ms.token_cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    again = Tokens(ms)()  # another run: a new process would read the same file
    assert again["access_token"] == first["access_token"] and token_requests(server) == 1


def test_a_wrong_secret_is_one_line_with_the_fix(server, tmp_path, monkeypatch):
    tenant(server)
    monkeypatch.setenv("NEARMISS_TEST_MS_SECRET", "wrong")
    ms = MicrosoftSettings.model_validate(microsoft_section(server, tmp_path))
    clients = GraphClients(Tokens(ms), endpoint=server.url, sleep=lambda s: None)
    with pytest.raises(CredentialsRefused) as err:
        clients.call("reading", "GET", "/me")
    assert str(err.value) == ("Microsoft sign-in refused: the client secret is wrong or "
                              "expired: create a new one in the app registration and export it")
    assert not any(r.api == "graph" for r in server.requests)


def _approve_when_asked(server: MicrosoftFakeServer, user: str) -> threading.Thread:
    """The person at another device: types the code once the sign-in shows it."""
    def approve() -> None:
        for _ in range(200):
            codes = list(server.identity._device_codes.values())
            if codes:
                server.identity.approve(codes[0].user_code, user=user)
                return
            time.sleep(0.02)
    thread = threading.Thread(target=approve, daemon=True)
    thread.start()
    return thread


def test_auth_microsoft_signs_a_person_in_and_later_runs_need_no_sign_in(
        server, tmp_path, capsys):
    server.identity.register_app(CLIENT_ID, public=True, delegated_scopes=(
        "Files.ReadWrite.All", "Sites.ReadWrite.All", "Mail.Send", "User.Read",
        "offline_access"))
    server.identity.device_interval = 1  # the shortest poll msal keeps to
    dep_data = yaml.safe_load((Path(__file__).parents[2] / "config" / "demo.yaml").read_text())
    dep_data["microsoft"] = {**microsoft_section(server, tmp_path), "auth": "device"}
    del dep_data["microsoft"]["client_secret_env"]
    dep_data["mail"]["transport"] = {"kind": "graph_mail"}
    config = tmp_path / "nearmiss.yaml"
    config.write_text(yaml.safe_dump(dep_data))
    thread = _approve_when_asked(server, "registered.manager@oakfield-care.example")
    assert main(["--config", str(config), "auth", "microsoft"]) == 0
    thread.join()
    out = capsys.readouterr().out
    assert re.search(r"enter the code \S+", out)
    assert "signed in as registered.manager@oakfield-care.example" in out
    cache = tmp_path / "ms-token.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    # The next run: the refresh token in the cache, no person needed.
    server.identity.expire_tokens()
    ms = MicrosoftSettings.model_validate(dep_data["microsoft"])
    claims = token_claims(Tokens(ms)()["access_token"])
    assert "Mail.Send" in claims["scp"].split()


def test_a_device_sign_in_that_was_revoked_says_to_sign_in_again(server, tmp_path):
    server.identity.register_app(CLIENT_ID, public=True, delegated_scopes=(
        "Files.ReadWrite.All", "Sites.ReadWrite.All", "Mail.Send", "offline_access"))
    ms = MicrosoftSettings.model_validate({**microsoft_section(server, tmp_path),
                                           "auth": "device", "client_secret_env": None})
    with pytest.raises(CredentialsRefused, match="run `nearmiss auth microsoft` again"):
        Tokens(ms)()


def test_a_run_goes_on_after_its_token_expires(tmp_path):
    with MicrosoftFakeServer() as server:
        dep = MicrosoftDeployment(tmp_path, server)
        dep.add("2026-11-16 10:00")
        dep.run()
        server.identity.expire_tokens()  # an hour later, the cached token is refused
        dep.add("2026-11-16 11:00")
        assert dep.run("2026-11-23 10:00").new_responses == 1
