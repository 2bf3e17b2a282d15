"""Service-account keys and clients for tests against the local Google fakes."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.google_auth import GoogleClients
from tests.fakes.google import GoogleFakeServer

SA_EMAIL = "nearmiss@nearmiss-test.iam.gserviceaccount.com"
KEY_ENV = "NEARMISS_TEST_GOOGLE_KEY"


@functools.lru_cache(maxsize=1)
def private_key_pem() -> str:
    """One RSA key per test session: generating it is the slow part."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def write_service_account_key(path: Path, token_uri: str, email: str = SA_EMAIL) -> Path:
    """A service-account key file as the Cloud console downloads it, with its token_uri
    pointed at the fake."""
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "nearmiss-test", "private_key_id": "k1",
        "private_key": private_key_pem(), "client_email": email, "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri}))
    return path


def fake_clients(server: GoogleFakeServer, **kwargs: Any) -> GoogleClients:
    """Unauthenticated clients pointed at the fake, with no waiting."""
    return GoogleClients(endpoint=server.url, sleep=lambda s: None,
                         max_requests_per_minute=100000, **kwargs)


FAST = {"sleep": lambda s: None, "max_requests_per_minute": 100000}
