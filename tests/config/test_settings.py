from pathlib import Path

import pytest
import yaml

from config import ConfigError, load_config, load_rules

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
    assert "mapping.What happened?: unknown field 'descripton'" in text
    assert "roles.safeguarding_lead" in text


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
    data["triage"]["rules"][2]["when"][1]["at_least"] = "terrible"
    data["triage"]["rules"][3]["pathway"] = "nowhere"
    data["required"][1]["when"][0]["equals"] = "meds"
    data["repeats"][0]["key"] = ["category", "servise"]
    with pytest.raises(ConfigError) as err:
        load_rules(write(tmp_path, data, "rules.yaml"))
    keys = [k for k, _ in err.value.problems]
    assert "triage.rules.2.when.1.at_least" in keys
    assert "triage.rules.3.pathway" in keys
    assert "required.1.when.0.equals" in keys
    assert "repeats.0.key" in keys


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
