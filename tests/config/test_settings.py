from pathlib import Path

import pytest
import yaml

from config import ConfigError, load_config, load_rules
from config.settings import KeyFileError, google_api, google_apis, key_file

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"


def write(tmp_path: Path, data: dict, name: str = "nearmiss.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def demo_data() -> dict:
    return yaml.safe_load(DEMO.read_text())


def test_demo_config_loads_with_paths_relative_to_the_file(tmp_path):
    path = write(tmp_path, demo_data())
    config = load_config(path)
    assert config.settings.sources[0].path == tmp_path / "exports/near-miss-google-form.csv"
    assert config.settings.store.path == tmp_path / "nearmiss.db"
    assert config.rules.fields["category"].type == "choice"


def test_two_mistakes_are_both_reported_with_their_keys(tmp_path):
    data = demo_data()
    data["tracker"] = {"kind": "xlsx"}  # path missing
    data["timezone"] = "Europe/Londn"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    keys = [k for k, _ in err.value.problems]
    assert "tracker.path" in keys and "timezone" in keys
    lines = err.value.lines()
    assert any("required" in line for line in lines)
    assert any("unknown time zone 'Europe/Londn'" in line for line in lines)


def test_unknown_setting_and_unknown_kind_are_named(tmp_path):
    data = demo_data()
    data["trackr"] = {}
    data["sources"][0]["kind"] = "typeform"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    text = "\n".join(err.value.lines())
    assert "trackr: not a known setting" in text
    assert "typeform" in text


def test_mapping_to_an_unknown_field_and_role_without_address(tmp_path):
    data = demo_data()
    data["mapping"]["What happened?"] = "descripton"
    del data["roles"]["safeguarding_lead"]
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    text = "\n".join(err.value.lines())
    assert ("mapping.What happened?: unknown field 'descripton': did you mean 'description'? "
            "map the question to a field of the rules file (`nearmiss fields` lists them)"
            ) in text
    assert "roles.safeguarding_lead" in text


def test_a_question_may_fill_several_fields_but_not_ignore(tmp_path):
    data = demo_data()
    data["mapping"]["What did you do straight away to keep people safe?"] = [
        "immediate_action", "staff_involvd"]
    data["mapping"]["What happened?"] = ["description", "ignore"]
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    problems = err.value.problems
    assert ("mapping.What did you do straight away to keep people safe?",
            "unknown field 'staff_involvd': did you mean 'staff_involved'? map the question to "
            "a field of the rules file (`nearmiss fields` lists them), or to `ignore`"
            ) in problems
    assert any(k == "mapping.What happened?" and "without `ignore`" in m for k, m in problems)


def test_value_maps_name_fields_and_values_the_rules_do_not_have(tmp_path):
    data = demo_data()
    data["value_maps"] = {"potential_harm": {"3 - Serious": "serious", "n/a": None,
                                             "4 - Major": "catastrophic"},
                          "shfit": {"Nights": "night"}}
    data["sources"][0]["value_maps"] = {"description": {"x": "y"}}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    problems = dict(err.value.problems)
    assert problems["value_maps.potential_harm.3 - Serious"].startswith(
        "'serious' is not a potential_harm value: use one of none, low, moderate, severe")
    assert "unknown field 'shfit'" in problems["value_maps.shfit"]
    assert "only choice fields" in problems["sources.0.value_maps.description"]
    assert len(problems) == 3


def test_addresses_that_are_not_addresses_are_named(tmp_path):
    data = demo_data()
    data["roles"]["clinical_lead"] = ["not-an-email", "nurse@example.org"]
    data["mail"]["sender"] = "nobody"
    data["mail"]["reply_to"] = "Quality Team <quality at example.org>"
    data["mail"]["learning_briefs"] = [{"team": "Oak", "to": ["oak-team"]}]
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    lines = err.value.lines()
    assert [line.split(": ")[1] for line in lines] == [
        "roles.clinical_lead", "mail.learning_briefs.0.to", "mail.sender", "mail.reply_to"]
    assert "'not-an-email' is not an email address" in lines[0]
    # A display name with the address in it is fine.
    data = demo_data()
    data["mail"]["sender"] = "Quality Team <quality@example.org>"
    assert load_config(write(tmp_path, data)).settings.mail.sender.startswith("Quality")


def test_missing_secret_variable_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NM_TEST_SMTP_PASSWORD", raising=False)
    data = demo_data()
    data["mail"]["transport"] = {"kind": "smtp", "host": "mail.example.org", "username": "u",
                                 "password_env": "NM_TEST_SMTP_PASSWORD"}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    assert "NM_TEST_SMTP_PASSWORD is not set" in "\n".join(err.value.lines())


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)


def rules_data() -> dict:
    return yaml.safe_load((DEMO.parent / "rules.yaml").read_text())


def test_rules_with_unknown_field_and_operator_are_rejected_with_keys(tmp_path):
    data = rules_data()
    data["triage"]["rules"][0]["when"] = [{"field": "categroy", "equals": "safeguarding"}]
    data["triage"]["rules"][1]["when"] = [{"field": "category", "contains": "x"}]
    path = write(tmp_path, data, "rules.yaml")
    with pytest.raises(ConfigError) as err:
        load_rules(path)
    text = "\n".join(err.value.lines())
    assert "triage.rules.1.when.0: unknown operator 'contains'" in text
    # the operator error stops pydantic; fix it and the field error is reported by key
    data["triage"]["rules"][1]["when"] = [{"field": "category", "equals": "safeguarding"}]
    with pytest.raises(ConfigError) as err:
        load_rules(write(tmp_path, data, "rules.yaml"))
    assert "triage.rules.0.when.0.field: unknown field 'categroy'" in "\n".join(err.value.lines())


def test_rules_reject_unknown_values_pathways_and_levels(tmp_path):
    data = rules_data()
    ids = [r["id"] for r in data["triage"]["rules"]]
    severe, escalation = ids.index("escalation-severe"), ids.index("escalation")
    data["triage"]["rules"][severe]["when"][1]["at_least"] = "terrible"
    data["triage"]["rules"][escalation]["pathway"] = "nowhere"
    data["required"][1]["when"][0]["equals"] = "meds"
    data["repeats"][0]["key"] = ["category", "servise"]
    with pytest.raises(ConfigError) as err:
        load_rules(write(tmp_path, data, "rules.yaml"))
    keys = [k for k, _ in err.value.problems]
    assert f"triage.rules.{severe}.when.1.at_least" in keys
    assert f"triage.rules.{escalation}.pathway" in keys
    assert "required.1.when.0.equals" in keys
    assert "repeats.0.key" in keys


def test_a_required_any_of_names_only_known_fields(tmp_path):
    data = rules_data()
    data["required"][0]["fields"].append(["immediate_action", "staff_involvd"])
    with pytest.raises(ConfigError) as err:
        load_rules(write(tmp_path, data, "rules.yaml"))
    assert any(k == "required.0.fields" and "'staff_involvd'" in m
               for k, m in err.value.problems)
    data["required"][0]["fields"][-1] = ["immediate_action", "staff_involved"]
    assert load_rules(write(tmp_path, data, "rules.yaml")).required[0].names[-1] == (
        "immediate_action|staff_involved")


def test_deployment_points_at_a_broken_rules_file(tmp_path):
    data = rules_data()
    del data["triage"]["default"]
    write(tmp_path, data, "rules.yaml")
    deploy = demo_data()
    deploy["rules"] = "rules.yaml"
    deploy["timezone"] = "Mars/Olympus"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, deploy))
    text = "\n".join(err.value.lines())
    assert "triage.default" in text and "Mars/Olympus" in text


# -- credential files -------------------------------------------------------------------------


def test_key_file_says_why_a_credential_file_cannot_be_used(tmp_path, monkeypatch):
    monkeypatch.delenv("NM_TEST_KEY", raising=False)
    with pytest.raises(KeyFileError) as err:
        key_file("NM_TEST_KEY")
    assert (err.value.reason, err.value.problem) == (
        "unset", "environment variable NM_TEST_KEY is not set")
    monkeypatch.setenv("NM_TEST_KEY", str(tmp_path / "gone.json"))
    with pytest.raises(KeyFileError) as err:
        key_file("NM_TEST_KEY", "service_account")
    assert (err.value.reason, err.value.problem) == (
        "missing", f"NM_TEST_KEY points at {tmp_path}/gone.json, which does not exist")
    path = tmp_path / "key.json"
    path.write_text("not JSON")
    monkeypatch.setenv("NM_TEST_KEY", str(path))
    assert key_file("NM_TEST_KEY") == path  # without a kind the content is not read
    def refuse(*args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")  # as for another user's 0600 file

    with monkeypatch.context() as m:
        m.setattr(Path, "read_text", refuse)
        with pytest.raises(KeyFileError) as err:
            key_file("NM_TEST_KEY", "service_account")
    assert (err.value.reason, err.value.problem) == (
        "unreadable", f"cannot read {path} as JSON (PermissionError)")


@pytest.mark.parametrize(("content", "kind", "reason", "problem"), [
    (b"not JSON", "service_account", "not_json", "cannot read {} as JSON (JSONDecodeError)"),
    (b"\xff\xfe{}", "oauth_client", "not_json", "cannot read {} as JSON (UnicodeDecodeError)"),
    (b'{"installed": {}}', "service_account", "wrong_kind",
     "{} is not a service account key file"),
    (b"[1, 2]", "service_account", "wrong_kind", "{} is not a service account key file"),
    (b'{"type": "service_account"}', "oauth_client", "wrong_kind",
     "{} is not an OAuth client file"),
    (b'{"type": "service_account"}', "service_account", None, None),
    (b'{"installed": {"client_id": "x"}}', "oauth_client", None, None),
    (b'{"web": {"client_id": "x"}}', "oauth_client", None, None),
])
def test_key_file_reads_the_kind_asked_for(tmp_path, monkeypatch, content, kind, reason,
                                           problem):
    path = tmp_path / "key.json"
    path.write_bytes(content)
    monkeypatch.setenv("NM_TEST_KEY", str(path))
    if reason is None:
        assert key_file("NM_TEST_KEY", kind) == path
        return
    with pytest.raises(KeyFileError) as err:
        key_file("NM_TEST_KEY", kind)
    assert (err.value.reason, err.value.problem) == (reason, problem.format(path))
    assert err.value.variable == "NM_TEST_KEY" and err.value.path == path


def test_the_config_check_names_the_key_file_as_written(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NM_TEST_KEY", "~/keys/sa.json")
    data = demo_data()
    data["mail"]["transport"] = {"kind": "gmail"}
    data["google"] = {"key_file_env": "NM_TEST_KEY"}
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == [("google.key_file_env", "NM_TEST_KEY points at "
                                   "~/keys/sa.json, which does not exist: download the "
                                   "service account's JSON key there")]
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "sa.json").write_text("{}")  # the content is the connectors' concern
    assert google_apis(load_config(path).settings) == ["gmail"]


def test_google_apis_are_those_of_the_kinds_in_use_in_a_fixed_order(tmp_path):
    data = demo_data()
    assert google_apis(load_config(write(tmp_path, data)).settings) == []
    data["mail"]["transport"] = {"kind": "gmail"}
    data["tracker"] = {"kind": "google_sheets", "spreadsheet_id": "sheet"}
    data["sources"].append({"name": "api", "kind": "google_forms_api", "form_id": "form"})
    data["google"] = {"auth": "user"}
    settings = load_config(write(tmp_path, data), check_credentials=False).settings
    assert google_apis(settings) == ["forms", "sheets", "gmail"]
    assert [google_api(part) for part in settings.sources] == [None, None, "forms"]


MICROSOFT_EXAMPLE = DEMO.parent / "microsoft.example.yaml"


def test_the_microsoft_example_loads_and_names_its_missing_certificate(monkeypatch):
    monkeypatch.delenv("NEARMISS_MS_CERTIFICATE", raising=False)
    settings = load_config(MICROSOFT_EXAMPLE, check_credentials=False).settings
    assert settings.sources[0].workbook.site == "oakfieldcare.sharepoint.com/sites/quality"
    assert settings.tracker.kind == "excel_graph" and settings.mail.transport.kind == "graph_mail"
    with pytest.raises(ConfigError) as err:
        load_config(MICROSOFT_EXAMPLE)
    assert [k for k, _ in err.value.problems] == ["microsoft.certificate_env"]
    assert "NEARMISS_MS_CERTIFICATE is not set" in err.value.lines()[0]


@pytest.mark.parametrize("workbook, says", [
    ({"site": "contoso.sharepoint.com/sites/q"}, "path is missing"),
    ({"path": "a.xlsx"}, "in one way"),
    ({"site": "contoso.sharepoint.com/sites/q", "path": "a.xlsx", "link": "https://x"},
     "in one way"),
    ({"drive_id": "b!x"}, "both drive_id and item_id"),
    ({}, "in one way"),
])
def test_a_workbook_is_placed_in_exactly_one_way(tmp_path, workbook, says):
    data = demo_data()
    data["tracker"] = {"kind": "excel_graph", "workbook": workbook}
    data["microsoft"] = {"tenant": "t", "client_id": "c", "client_secret_env": "X"}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data), check_credentials=False)
    assert [k for k, _ in err.value.problems] == ["tracker.workbook"]
    assert says in err.value.problems[0][1]


def test_graph_connectors_need_a_microsoft_section_with_one_credential(tmp_path, monkeypatch):
    data = demo_data()
    data["mail"]["transport"] = {"kind": "graph_mail"}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    assert [k for k, _ in err.value.problems] == ["microsoft"]
    data["microsoft"] = {"tenant": "t", "client_id": "c"}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    assert "one credential" in err.value.lines()[0]
    data["microsoft"]["client_secret_env"] = "NEARMISS_TEST_MS_SECRET"
    monkeypatch.delenv("NEARMISS_TEST_MS_SECRET", raising=False)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    assert [k for k, _ in err.value.problems] == ["microsoft.client_secret_env"]
    monkeypatch.setenv("NEARMISS_TEST_MS_SECRET", "s3cret")
    assert load_config(write(tmp_path, data)).settings.microsoft.secret() == "s3cret"
    data["microsoft"] = {"tenant": "t", "client_id": "c", "auth": "device",
                         "token_cache": "ms.json"}
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    assert "nearmiss auth microsoft" in err.value.lines()[0]
