import json

from ledger.config import Settings, flag, load_settings


def test_defaults_when_the_file_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("LEDGER_CURRENCY", raising=False)
    assert load_settings(str(tmp_path / "missing.json")) == Settings()


def test_load_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("LEDGER_CURRENCY", raising=False)
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"currency": "CHF", "flags": {"weekly": True}}))
    settings = load_settings(str(path))
    assert settings.currency == "CHF"
    assert flag(settings, "weekly") is True


def test_environment_overrides_the_currency(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGER_CURRENCY", "USD")
    assert load_settings(str(tmp_path / "missing.json")).currency == "USD"


def test_only_true_switches_a_flag_on():
    settings = Settings(flags={"weekly": True, "monthly": "no", "daily": "yes", "yearly": 0})
    assert [flag(settings, name) for name in ("weekly", "monthly", "daily", "yearly")] == [
        True,
        False,
        False,
        False,
    ]
    assert flag(settings, "unset") is False
