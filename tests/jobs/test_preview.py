"""nearmiss preview: the loop on a scratch copy of the store, sending and writing nothing,
and saying what a run would do."""

from connectors.store import Store
from jobs.cli import main
from tests.fakes.deployment import Deployment


def test_a_preview_sends_and_writes_nothing_and_says_what_a_run_would(tmp_path, capsys):
    dep = Deployment(tmp_path)
    dep.add_google("2026-11-20 10:00", email="kim@example.org")
    dep.add_google("2026-11-20 11:00", email="jo@example.org", medication_name=None)
    dep.add_google("2026-11-20 12:00", email="sam@example.org", category="Safeguarding",
                   safeguarding_cue="She said her nephew keeps her bank card")
    config = str(dep.config().path)
    assert main(["preview", "--config", config, "--now", "2026-11-23T09:00Z"]) == 0
    out = capsys.readouterr().out
    assert "reports: 3 (1 complete, 2 incomplete, 0 held)" in out
    assert "incomplete for want of: medication name 1, immediate safety action 1" in out
    assert "Immediate safeguarding review 1" in out
    assert "tracker: " in out and " rows would be added" in out
    assert "emails that would go out: " in out and "--- one ack, to " in out
    assert "--- one missing, to jo@example.org" in out and "medication name" in out
    # Nothing of the deployment was created or sent.
    assert not (tmp_path / "nearmiss.db").exists() and not dep.tracker_path.exists()
    assert dep.emails() == []

    # A real run does what the preview said; a preview after it changes nothing stored.
    summary = dep.run("2026-11-23 09:00")
    would = int(out.split("emails that would go out: ")[1].split()[0])
    assert summary.emails_sent == would == len(dep.emails())
    store = Store.open(tmp_path / "nearmiss.db")
    before = (len(store.audit_trail()), store.report_count())
    store.close()
    assert main(["preview", "--config", config, "--now", "2026-11-23T09:30Z"]) == 0
    assert "emails that would go out: 0" in capsys.readouterr().out
    store = Store.open(tmp_path / "nearmiss.db")
    assert (len(store.audit_trail()), store.report_count()) == before
    store.close()
    assert len(dep.emails()) == would
