import json
import os
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from ledger.config import Settings, flag, load_settings


class LoadSettingsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.dir = Path(self.tmp.name)
        environ = {k: v for k, v in os.environ.items() if k != "LEDGER_CURRENCY"}
        patcher = mock.patch.dict(os.environ, environ, clear=True)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_defaults_when_the_file_is_missing(self):
        self.assertEqual(load_settings(str(self.dir / "missing.json")), Settings())

    def test_load_settings(self):
        path = self.dir / "ledger.json"
        path.write_text(json.dumps({"currency": "CHF", "flags": {"weekly": True}}))
        settings = load_settings(str(path))
        self.assertEqual(settings.currency, "CHF")
        self.assertIs(flag(settings, "weekly"), True)

    def test_environment_overrides_the_currency(self):
        os.environ["LEDGER_CURRENCY"] = "USD"
        self.assertEqual(load_settings(str(self.dir / "missing.json")).currency, "USD")


class FlagTest(unittest.TestCase):
    def test_only_true_switches_a_flag_on(self):
        settings = Settings(flags={"weekly": True, "monthly": "no", "daily": "yes", "yearly": 0})
        names = ("weekly", "monthly", "daily", "yearly")
        self.assertEqual([flag(settings, name) for name in names], [True, False, False, False])
        self.assertIs(flag(settings, "unset"), False)
