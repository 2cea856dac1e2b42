"""Logging: the library writes nothing to stdout; its records go to ``logging`` when asked for.

The programs run in subprocesses: what reaches a real process's stdout and stderr is the point,
and an interpreter of its own keeps the logging configuration of pytest out of the picture.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from log_capture import capture_logs
from swarm_actors import _cli
from swarm_actors._log import get_logger

PING_PONG = """
import asyncio, sys
import msgspec
from swarm_actors import Actor, ActorSystem, handler
from swarm_actors.cluster import Cluster
{configure}

class Ping(msgspec.Struct):
    pass

class Ponger(Actor):
    @handler
    async def ping(self, msg: Ping) -> str:
        return "pong"

async def main() -> None:
    cluster = Cluster(data_dir=sys.argv[1], node="solo")
    async with ActorSystem(nats="embedded", cluster=cluster) as system:
        ref = await system.start(Ponger, name="ponger")
        print(await ref.ask(Ping(), timeout=10.0))
    print("done")

asyncio.run(main())
"""


def run_python(code: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; its output, and a failure if it did not exit 0."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_a_nats_program_prints_only_its_own_lines(tmp_path: Path) -> None:
    proc = run_python(PING_PONG.format(configure=""), str(tmp_path / "data"))
    assert proc.stdout == "pong\ndone\n"
    assert proc.stderr == ""  # nothing below a warning is shown unless logging is configured


def test_the_library_logs_once_the_application_configures_logging(tmp_path: Path) -> None:
    configure = (
        "import logging\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,"
        " format='%(levelname)s %(name)s %(message)s')\n"
    )
    proc = run_python(PING_PONG.format(configure=configure), str(tmp_path / "data"))
    assert proc.stdout == "pong\ndone\n"
    lines = proc.stderr.splitlines()
    # The event and its key=value data, under a swarm_actors logger.
    assert any(
        line.startswith("DEBUG swarm_actors.nats nats.connected connection=swarm-solo server=")
        for line in lines
    ), lines
    assert "INFO swarm_actors.nats nats.disconnected connection=swarm-solo" in lines


def test_warnings_stay_silent_without_configuration() -> None:
    # Without the NullHandler on "swarm_actors", logging's last resort prints warnings to stderr.
    code = (
        "from swarm_actors._log import get_logger\n"
        "get_logger('swarm_actors.test').warning('something.odd', n=1)\n"
    )
    proc = run_python(code)
    assert (proc.stdout, proc.stderr) == ("", "")


def test_an_application_structlog_configuration_does_not_capture_library_logs() -> None:
    # The application's structlog (here: everything to stdout) is its own; ours goes to logging.
    code = (
        "import structlog, logging, sys\n"
        "structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stdout))\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format='%(message)s')\n"
        "from swarm_actors._log import get_logger\n"
        "get_logger('swarm_actors.test').info('library.event', n=1)\n"
        "structlog.get_logger().info('application.event')\n"
    )
    proc = run_python(code)
    assert proc.stderr == "library.event n=1\n"
    assert "application.event" in proc.stdout
    assert "library.event" not in proc.stdout


def test_a_record_renders_its_data_and_keeps_it_structured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="swarm_actors")
    log = get_logger("swarm_actors.test").bind(node="n1")
    log.info("thing.happened", n=1, text="two words", path="/a")
    try:
        raise KeyError("boom")
    except KeyError:
        log.exception("thing.failed")
    happened, failed = caplog.records
    assert happened.name == "swarm_actors.test"
    assert happened.levelno == logging.INFO
    assert happened.getMessage() == "thing.happened node=n1 n=1 text='two words' path=/a"
    assert happened.msg == {"node": "n1", "n": 1, "text": "two words", "path": "/a"} | {
        "event": "thing.happened"
    }
    # The caller's location, not structlog's.
    assert happened.pathname == __file__
    assert happened.funcName == "test_a_record_renders_its_data_and_keeps_it_structured"
    assert failed.levelno == logging.ERROR
    assert failed.getMessage() == "thing.failed node=n1"
    assert failed.exc_info is not None
    assert failed.exc_info[0] is KeyError
    # structlog's own formatter for logging renders the event dict as such.
    formatter = structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer())
    assert json.loads(formatter.format(happened)) == {
        "event": "thing.happened",
        "node": "n1",
        "n": 1,
        "text": "two words",
        "path": "/a",
    }


def test_below_the_configured_level_nothing_is_recorded() -> None:
    with capture_logs() as entries:
        logging.getLogger("swarm_actors").setLevel(logging.WARNING)
        get_logger("swarm_actors.test").info("quiet")
        get_logger("swarm_actors.test").warning("loud")
    assert [e["event"] for e in entries] == ["loud"]


# --- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        ([], logging.WARNING),
        (["-v"], logging.INFO),
        (["-vv"], logging.DEBUG),
        (["-q"], logging.ERROR),
    ],
)
def test_cli_verbosity_flags_pick_the_log_level(flags: list[str], level: int) -> None:
    assert _cli.log_level(_cli.parser().parse_args([*flags, "demo"])) == level
    assert _cli.log_level(_cli.parser().parse_args(["demo", *flags])) == level


def test_cli_refuses_verbose_and_quiet_together() -> None:
    with pytest.raises(SystemExit):
        _cli.parser().parse_args(["-v", "-q", "demo"])


def test_cli_logs_to_stderr_only_when_asked(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "calc.py").write_text("import os\n\n\ndef double(x):\n    return x * 2\n")
    (project / "test_calc.py").write_text(
        "import unittest\n\nfrom calc import double\n\n\nclass T(unittest.TestCase):\n"
        "    def test_double(self):\n        self.assertEqual(double(2), 4)\n"
    )
    demo = ["demo", str(project), "--json", "--data-dir", str(tmp_path / "data")]
    env = {**os.environ, "PYTHONASYNCIODEBUG": ""}
    runs = {
        flag: subprocess.run(
            [sys.executable, "-m", "swarm_actors._cli", *flag.split(), *demo],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=120,
        )
        for flag in ("", "-vv")
    }
    # By default stderr has the demo's progress and no log record.
    for level in ("DEBUG", "INFO", "WARNING"):
        assert f" {level} " not in runs[""].stderr
    # asyncio logs its selector at DEBUG when the demo's event loop starts.
    assert "DEBUG asyncio: Using selector" in runs["-vv"].stderr
    for run in runs.values():
        assert "DEBUG" not in run.stdout
        assert json.loads(run.stdout)["approved"] == 1  # stdout: the one JSON object
