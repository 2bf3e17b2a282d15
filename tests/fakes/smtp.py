"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records what it receives and can be told
to refuse recipients, reject messages or drop the connection part-way through a run."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    """`messages` holds every accepted message; set `refuse`, `reject_after`,
    `drop_after` or `down` to misbehave the way real relays do."""

    def __init__(self, username: str | None = None, password: str | None = None,
                 port: int | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse: set[str] = set()  # recipients answered 550
        self.reject_after: int | None = None  # answer 451 to DATA once this many accepted
        self.drop_after: int | None = None  # close the connection once this many accepted
        self.username, self.password = username, password
        self.port = port or free_port()
        self.running = False
        kwargs: dict = {}
        if username:
            kwargs = {"authenticator": self._auth, "auth_require_tls": tls is not None,
                      "auth_required": True}
        if tls is not None:  # offers STARTTLS, and insists on it
            kwargs |= {"tls_context": tls, "require_starttls": True}
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)

    def _auth(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(), auth_data.password.decode()) == (self.username,
                                                                       self.password)
        # handled=False lets aiosmtpd answer 535 itself; True would leave the client hanging
        return AuthResult(success=ok, handled=False)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.drop_after is not None and len(self.messages) >= self.drop_after:
            server.transport.close()
            return "421 closing"
        if self.reject_after is not None and len(self.messages) >= self.reject_after:
            return "451 4.3.0 try again later"
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content,
                                                policy=policy.default))
        return "250 Message accepted for delivery"

    def keys(self) -> list[str]:
        return [str(m["X-Nearmiss-Key"]) for m in self.messages]

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        self.running = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Take the server down (a relay outage); a new SmtpServer may reuse the port."""
        if self.running:
            self.controller.stop()
            self.running = False


def self_signed(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A certificate for 127.0.0.1 and the server context using it; returns the context and
    the certificate's path, which a client trusts as its CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "smtp.pem", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
