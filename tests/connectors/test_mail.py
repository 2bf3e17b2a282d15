import email
import os
import stat
import tempfile
import time
from email import policy
from pathlib import Path

import pandas as pd
import pytest

from connectors.errors import MailError
from connectors.mail import EmlFolderTransport, SmtpTransport, build_message, message_id
from connectors.templates import Renderer
from tests.fakes.smtp import SmtpServer, free_port, self_signed

NOW = pd.Timestamp("2026-11-23 09:00", tz="UTC").to_pydatetime()


def item(key: str = "ack:NM-000001", to: list[str] | None = None) -> dict:
    return {"key": key, "recipients": to or ["kim@example.org"], "subject": "Near miss",
            "body_text": "Thank you", "body_html": "<p>Thank you</p>"}


def message(key: str = "ack:NM-000001", to: list[str] | None = None):
    return build_message(item(key, to), "Loop <loop@care.example>", "quality@care.example", NOW)


def test_message_is_rfc5322_multipart_with_stable_id():
    msg = message()
    parsed = email.message_from_bytes(bytes(msg), policy=policy.default)
    assert parsed["Message-ID"] == message_id("ack:NM-000001", "loop@care.example")
    assert parsed["Message-ID"].endswith("@care.example>")
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed.get_body(("plain",)).get_content().strip() == "Thank you"
    assert parsed["Reply-To"] == "quality@care.example"


def test_eml_folder_writes_one_file_per_key(tmp_path):
    transport = EmlFolderTransport(tmp_path / "outbox")
    with transport.connect() as send:
        send(message())
        send(message())  # sending again rewrites the same file
        send(message("alert:NM-000001:safeguarding_review"))
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == ["ack_NM-000001.eml", "alert_NM-000001_safeguarding_review.eml"]


def test_smtp_delivers_over_one_connection():
    with SmtpServer() as server:
        transport = SmtpTransport("127.0.0.1", server.port, security="none")
        with transport.connect() as send:
            send(message("a"))
            send(message("b"))
        assert server.keys() == ["a", "b"]


def test_smtp_login_refused_and_server_down_are_clear():
    with SmtpServer(username="loop", password="right") as server:
        good = SmtpTransport("127.0.0.1", server.port, "none", "loop", "right")
        with good.connect() as send:
            send(message())
        bad = SmtpTransport("127.0.0.1", server.port, "none", "loop", "wrong")
        with pytest.raises(MailError, match="refused the login of loop") as err:
            with bad.connect():
                pass
        assert err.value.stop_run
    with pytest.raises(MailError, match="cannot connect to the SMTP server"):
        with SmtpTransport("127.0.0.1", free_port(), "none", timeout=2).connect():
            pass


def test_starttls_with_login_and_certificate_checks(tmp_path):
    context, ca_file = self_signed(tmp_path)
    with SmtpServer(username="loop", password="right", tls=context) as server:
        trusted = SmtpTransport("127.0.0.1", server.port, "starttls", "loop", "right",
                                ca_file=ca_file)
        with trusted.connect() as send:
            send(message())
        assert server.keys() == ["ack:NM-000001"]
        untrusted = SmtpTransport("127.0.0.1", server.port, "starttls", "loop", "right")
        with pytest.raises(MailError, match=r"TLS with the SMTP server .* failed") as err:
            with untrusted.connect():
                pass
        assert err.value.stop_run
        plain = SmtpTransport("127.0.0.1", server.port, "none", "loop", "right")
        with pytest.raises(MailError):  # the server insists on STARTTLS before anything
            with plain.connect() as send:
                send(message("x"))


def test_smtp_without_starttls_says_how_to_fix():
    with SmtpServer() as server:
        with pytest.raises(MailError, match="does not offer STARTTLS"):
            with SmtpTransport("127.0.0.1", server.port, "starttls").connect():
                pass


def test_refused_recipient_and_temporary_rejection():
    with SmtpServer() as server:
        server.refuse = {"gone@example.org"}
        transport = SmtpTransport("127.0.0.1", server.port, "none")
        with transport.connect() as send:
            with pytest.raises(MailError) as err:
                send(message(to=["gone@example.org"]))
            assert not err.value.retry_later  # 550: permanent
            note = send(message("two", to=["gone@example.org", "kim@example.org"]))
            assert "gone@example.org" in note  # delivered to the other: not sent again
            server.reject_after = 1
            with pytest.raises(MailError) as err:
                send(message("three"))
            assert err.value.retry_later and not err.value.stop_run


def test_dropped_connection_stops_the_run():
    with SmtpServer() as server:
        server.drop_after = 0
        with pytest.raises(MailError) as err:
            with SmtpTransport("127.0.0.1", server.port, "none", timeout=5).connect() as send:
                send(message())
        assert err.value.stop_run


def test_templates_escape_html_and_can_be_overridden(tmp_path):
    ctx = {"provider": "Oak <Care>", "tracker": "t.xlsx", "report": {
        "id": "NM-000001", "category": "<script>alert(1)</script>", "service": "Oak House",
        "submitted": "2026-11-20 10:00", "pathway": "Operational fix",
        "triage_due": "Sat 21 Nov 10:00"}}
    subject, text, html = Renderer().render("acknowledgement", ctx)
    assert subject == "Near miss NM-000001 received: thank you"
    assert "<script>" in text and "<script>" not in html
    assert "&lt;script&gt;" in html and "Oak &lt;Care&gt;" in html
    (tmp_path / "acknowledgement.txt.j2").write_text("Subject: Got it {{ report.id }}\nThanks")
    subject, text, _ = Renderer(tmp_path).render("acknowledgement", ctx)
    assert (subject, text) == ("Got it NM-000001", "Thanks")
    (tmp_path / "outcome.txt.j2").write_text("No subject line {{ report.id }}")
    with pytest.raises(Exception, match="must start with a 'Subject:' line"):
        Renderer(tmp_path).render("outcome", ctx)


# -- hostile text from a report or a sheet cell ------------------------------------------------

def hostile_item() -> dict:
    return {"key": "ack:NM-000001", "recipients": ["kim@example.org", "x\x00y@example.org"],
            "subject": "Near miss\x00 NM-000001\r\nBcc: all@example.org\x0b" + "y" * 100_000,
            "body_text": "line one\r\nline\x00two\x1f \u202eשלום 😀\n" + "z" * 100_000,
            "body_html": "<p>line\x00two \u202eשלום 😀</p>" + "<p>" + "z" * 100_000 + "</p>"}


def test_hostile_text_builds_a_message_with_single_line_headers(tmp_path):
    msg = build_message(hostile_item(), "Loop <loop@care.example>", None, NOW)
    raw = bytes(msg)
    assert b"\x00" not in raw
    assert max(len(line) for line in raw.split(b"\n")) <= 998  # RFC 5322 line limit
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert "Bcc" not in parsed
    for name, value in parsed.items():
        assert not any(c in str(value) for c in "\r\n\x00\x0b"), name
    subject = parsed["Subject"]
    assert subject.startswith("Near miss\ufffd NM-000001 Bcc: all@example.org\ufffdyyy")
    assert len(subject) <= 250 and subject.endswith("…")
    text = parsed.get_body(("plain",)).get_content()
    assert text.startswith("line one\nline\ufffdtwo\ufffd \u202eשלום 😀\n")
    assert "z" * 100_000 in text
    html = parsed.get_body(("html",)).get_content()
    assert "line\ufffdtwo \u202eשלום 😀" in html and "z" * 100_000 in html
    with EmlFolderTransport(tmp_path / "outbox").connect() as send:
        send(msg)
    assert (tmp_path / "outbox" / "ack_NM-000001.eml").read_bytes() == raw


def test_hostile_text_is_sent_over_smtp_and_a_bad_address_is_refused_alone():
    item = {**hostile_item(), "recipients": ["kim@example.org"]}
    with SmtpServer() as server:
        with SmtpTransport("127.0.0.1", server.port, security="none").connect() as send:
            send(build_message(item, "loop@care.example", None, NOW))
            with pytest.raises(MailError, match="not an email address") as err:
                send(build_message(hostile_item(), "loop@care.example", None, NOW))
        assert not err.value.retry_later and server.keys() == ["ack:NM-000001"]
        assert "line\ufffdtwo" in server.messages[0].get_body(("plain",)).get_content()


def test_a_value_spanning_lines_stays_in_the_subject():
    ctx = {"provider": "Oak", "tracker": "t.xlsx", "pattern": {
        "id": "PT-000001", "event": "opened", "label": "Ward 1\r\nWard\x002 <b>",
        "reason": "", "count": 3, "rule": "Same service", "window_days": "7", "also": [],
        "members": ["NM-000001"], "first": "2026-11-20", "last": "2026-11-21"}}
    subject, text, html = Renderer().render("alert_pattern", ctx)
    assert subject == "Repeat pattern PT-000001 opened: Ward 1 Ward\ufffd2 <b>"
    assert text.startswith("3 similar near misses")
    assert "Pattern: PT-000001, Ward 1\nWard\ufffd2 <b>\n" in text
    assert "Ward 1\nWard\ufffd2 &lt;b&gt;" in html and "\x00" not in html


# -- the outbox folder: owner-only files, no temporary file left behind --------------------------

AN_HOUR_AND_MORE = 3700


@pytest.fixture
def umask_022():
    old = os.umask(0o022)  # the usual umask, under which open() and mkdir() share with all
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _aged(path):
    then = time.time() - AN_HOUR_AND_MORE
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def test_outbox_folder_and_messages_are_owner_only(tmp_path, umask_022):
    outbox = tmp_path / "deployment" / "outbox"
    with EmlFolderTransport(outbox).connect() as send:
        send(message())
    assert _mode(outbox) == 0o700
    assert _mode(outbox / "ack_NM-000001.eml") == 0o600
    (outbox / "ack_NM-000001.eml").chmod(0o644)
    with EmlFolderTransport(outbox).connect() as send:
        send(message())  # a message sent again is a new file: owner-only again
    assert _mode(outbox / "ack_NM-000001.eml") == 0o600
    assert sorted(p.name for p in outbox.iterdir()) == ["ack_NM-000001.eml"]


def test_an_existing_outbox_folder_keeps_its_mode(tmp_path):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    outbox.chmod(0o750)  # an operator's choice: a group that collects the messages
    with EmlFolderTransport(outbox).connect() as send:
        send(message())
    assert _mode(outbox) == 0o750


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    outbox = tmp_path / "outbox"
    (outbox / "ack_NM-000001.eml").mkdir(parents=True)  # the rename cannot replace it
    (outbox / "ack_NM-000001.eml" / "x").write_text("x")
    with EmlFolderTransport(outbox).connect() as send:
        with pytest.raises(MailError, match="cannot write") as err:
            send(message())
    assert err.value.stop_run
    assert sorted(p.name for p in outbox.iterdir()) == ["ack_NM-000001.eml"]


def test_a_killed_runs_temporary_files_are_removed_when_sending_starts(tmp_path):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    # What a SIGKILL during a write leaves behind: this version's names and the empty
    # `.xxxxxxxx.eml` files of earlier versions.
    killed = [outbox / n for n in (".sending-k1lled_9.eml.tmp", ".abc_1234.eml")]
    fd, name = tempfile.mkstemp(prefix=".sending-", suffix=".eml.tmp", dir=outbox)
    os.close(fd)
    killed.append(Path(name))
    for p in killed:
        p.touch()
        _aged(p)
    in_progress = outbox / ".sending-writing1.eml.tmp"  # another deployment's, being written
    in_progress.touch()
    # Messages and files a person saved, or that only look alike: all kept, however old.
    kept = [outbox / n for n in (
        "ack_NM-000001.eml", ".abc_123.eml", ".ABCDEFGH.eml", ".abcdefgh.eml.bak",
        "notes.eml.tmp", ".sending-abcdefgh.eml", ".sending-abcdefghi.eml.tmp", "abcdefgh.eml")]
    for p in kept:
        p.write_bytes(b"mine")
        _aged(p)
    folder = outbox / ".abcdefgh.eml"
    folder.mkdir()
    _aged(folder)

    with EmlFolderTransport(outbox).connect() as send:
        assert not any(p.exists() for p in killed)
        send(message("alert:NM-000002"))
    assert in_progress.exists() and folder.is_dir()
    assert all(p.read_bytes() == b"mine" for p in kept)
    assert (outbox / "alert_NM-000002.eml").stat().st_size > 0
