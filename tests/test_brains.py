"""Brains against real HTTP: the OpenAI client; scripted, recording, replay, deterministic."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from fake_openai import FakeOpenAI, Reply, fake_openai
from swarm_actors.brains import (
    Brain,
    BrainRequest,
    BrainResponse,
    DeterministicBrain,
    OpenAIBrain,
    RecordingBrain,
    ReplayBrain,
    ScriptedBrain,
    Usage,
    findings_in,
    system,
    user,
)
from swarm_actors.errors import (
    BrainConfigError,
    BrainConnectionError,
    BrainError,
    BrainHTTPError,
    BrainRateLimitedError,
    BrainReplyError,
    BrainTimeoutError,
    InvalidArgumentError,
    ReplayMissError,
    ScriptError,
)
from swarm_actors.events import BlobStore, MemoryJournal, ModelCall


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with fake_openai() as state:
        yield state


def ask(text: str, **kw: object) -> BrainRequest:
    return BrainRequest(messages=(system("You are terse."), user(text)), **kw)  # type: ignore[arg-type]


def brain_for(server: FakeOpenAI, **kw: object) -> OpenAIBrain:
    options: dict[str, object] = {"base_url": server.url, "api_key": "k", "model": "m"}
    options.update(kw)
    return OpenAIBrain(**options)  # type: ignore[arg-type]


# --- the protocol and its values ----------------------------------------------------------


@pytest.mark.asyncio
async def test_every_brain_meets_the_protocol(server: FakeOpenAI) -> None:
    async with brain_for(server) as openai:
        for brain in (openai, ScriptedBrain([]), DeterministicBrain(), ReplayBrain({})):
            assert isinstance(brain, Brain)


def test_the_digest_is_of_the_normalized_request() -> None:
    a = ask("hi")
    assert a.digest() == ask("hi").digest() == ask("hi", idempotent=False).digest()
    assert len(a.digest()) == 64
    for other in (
        ask("hi!"),
        ask("hi", model="x"),
        ask("hi", temperature=0.0),
        ask("hi", json_output=True),
    ):
        assert other.digest() != a.digest()
    with pytest.raises(InvalidArgumentError, match="at least one message"):
        BrainRequest(messages=())


def test_json_of_a_response_is_parsed_or_a_typed_error() -> None:
    assert BrainResponse(text='{"a": 1}').json() == {"a": 1}
    with pytest.raises(BrainReplyError, match="not valid JSON"):
        BrainResponse(text="sure! {").json()


# --- the OpenAI-compatible client ---------------------------------------------------------


@pytest.mark.asyncio
async def test_a_call_sends_the_chat_request_and_reads_the_answer(server: FakeOpenAI) -> None:
    server.push(Reply(text="4", usage=(20, 1), finish_reason="length"))
    async with brain_for(server, api_key="secret") as brain:
        answer = await brain.complete(ask("2+2?", temperature=0.0, max_tokens=5, json_output=False))
    assert answer.text == "4"
    assert answer.usage == Usage(20, 1)
    assert answer.finish_reason == "length"
    assert answer.provider == "127.0.0.1"
    assert answer.latency_ns > 0
    (body,) = server.bodies
    assert body["model"] == "m"
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"},
    ]
    assert (body["temperature"], body["max_tokens"]) == (0.0, 5)
    assert "response_format" not in body


@pytest.mark.asyncio
async def test_json_output_is_requested_and_checked(server: FakeOpenAI) -> None:
    server.push(Reply(text='{"ok": true}'), Reply(text="not json"))
    async with brain_for(server) as brain:
        answer = await brain.complete(ask("status?", json_output=True))
        assert answer.json() == {"ok": True}
        assert server.bodies[0]["response_format"] == {"type": "json_object"}
        with pytest.raises(BrainReplyError, match="not valid JSON"):
            await brain.complete(ask("status?", json_output=True))


def test_configuration_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("SWARM_MODEL", "llama")
    brain = OpenAIBrain()
    assert brain.url == "http://127.0.0.1:9/v1/chat/completions"
    assert brain.model == "llama"
    assert OpenAIBrain(model="other", provider="local").provider == "local"


@pytest.mark.parametrize(
    ("env", "kw", "message"),
    [
        (
            {"OPENAI_API_KEY": None},
            {"model": "m"},
            "no API key: pass api_key= or set OPENAI_API_KEY",
        ),
        ({"SWARM_MODEL": None, "OPENAI_MODEL": None}, {"api_key": "k"}, "no model: pass model="),
        ({}, {"api_key": "k", "model": "m", "base_url": "localhost:8000"}, "invalid base URL"),
        ({}, {"api_key": "k", "model": "m", "timeout": 0}, "must be > 0"),
    ],
)
def test_missing_configuration_is_a_typed_error_at_construction(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, None], kw: dict[str, object], message: str
) -> None:
    for name in ("OPENAI_API_KEY", "SWARM_MODEL", "OPENAI_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(BrainConfigError, match=message):
        OpenAIBrain(**kw)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_local_server_may_need_no_key(server: FakeOpenAI) -> None:
    async with brain_for(server, api_key="") as brain:
        assert (await brain.complete(ask("hi"))).text == "hello"


@pytest.mark.asyncio
async def test_an_unreachable_base_url_fails_within_seconds() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    async with OpenAIBrain(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", model="m") as brain:
        with pytest.raises(BrainConnectionError, match="cannot reach") as caught:
            await brain.complete(ask("hi"))
    assert caught.value.retryable
    assert time.monotonic() - started < 10


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("reply", "error", "message", "retryable"),
    [
        (Reply("status", status=429, retry_after="7"), BrainRateLimitedError, "429", True),
        (Reply("status", status=500), BrainHTTPError, "answered 500", True),
        (Reply("status", status=503, retry_after="2"), BrainHTTPError, "answered 503", True),
        (Reply("status", status=400), BrainHTTPError, "answered 400", False),
        (Reply("status", status=401), BrainHTTPError, "answered 401", False),
        (Reply("malformed"), BrainReplyError, "malformed reply", False),
        (Reply("cut"), BrainConnectionError, "cut", True),
        (Reply("content_type"), BrainReplyError, "content type 'text/html'", False),
        (Reply("empty"), BrainReplyError, "no content", False),
        (Reply("huge"), BrainReplyError, "over 100000 bytes", False),
    ],
    ids=["429", "500", "503", "400", "401", "malformed", "cut", "content-type", "empty", "huge"],
)
async def test_bad_replies_are_typed_errors(
    server: FakeOpenAI, reply: Reply, error: type[BrainError], message: str, retryable: bool
) -> None:
    server.push(reply)
    async with brain_for(server, max_reply_bytes=100_000) as brain:
        with pytest.raises(error, match=message) as caught:
            await brain.complete(ask("hi"))
        assert caught.value.retryable is retryable
        assert caught.value.provider == "127.0.0.1"
        if reply.retry_after is not None:
            assert caught.value.retry_after == float(reply.retry_after)  # type: ignore[attr-defined]
        assert (await brain.complete(ask("again"))).text == "hello"  # the client recovers


@pytest.mark.asyncio
async def test_a_stalled_or_slow_reply_times_out(server: FakeOpenAI) -> None:
    server.push(Reply("stall"), Reply("slow", delay=5))
    async with brain_for(server, timeout=0.5) as brain:
        for _ in range(2):
            with pytest.raises(BrainTimeoutError) as caught:
                await brain.complete(ask("hi"))
            assert isinstance(caught.value, TimeoutError)
            assert caught.value.retryable


# --- scripted -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_scripted_brain_answers_in_order() -> None:
    boom = BrainRateLimitedError("scripted 429", status=429, retryable=True)
    with ScriptedBrain(
        ["one", BrainResponse(text="two", usage=Usage(1, 1)), boom, lambda r: r.last_user.upper()]
    ) as brain:
        assert (await brain.complete(ask("a"))).text == "one"
        assert (await brain.complete(ask("b"))).usage == Usage(1, 1)
        with pytest.raises(BrainRateLimitedError):
            await brain.complete(ask("c"))
        assert (await brain.complete(ask("shout"))).text == "SHOUT"
    assert [r.last_user for r in brain.requests] == ["a", "b", "c", "shout"]


@pytest.mark.asyncio
async def test_a_scripted_brain_fails_off_script() -> None:
    brain = ScriptedBrain(["one"], expect=["plan"])
    with pytest.raises(ScriptError, match="expected a request containing 'plan'"):
        await brain.complete(ask("review"))
    with pytest.raises(ScriptError, match="call 2 of a script of 1 steps"):
        await brain.complete(ask("plan"))
    with pytest.raises(AssertionError, match="1 of 2 scripted steps were never used"):
        async with ScriptedBrain(["one", "two"]) as unused:
            await unused.complete(ask("x"))
    with pytest.raises(ScriptError, match="entries for"):
        ScriptedBrain(["a"], expect=[None, None])


# --- recording and replay ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_recording_journals_every_call_and_a_replay_makes_no_request(
    server: FakeOpenAI, tmp_path: object
) -> None:
    server.push(Reply(text="plan: a, b"), Reply("status", status=400), Reply(text="done"))
    journal = MemoryJournal()
    blobs = BlobStore()
    async with brain_for(server) as http:
        recorder = RecordingBrain(http, journal, blobs=blobs, agent_role="planner", run_id="run-1")
        assert (await recorder.complete(ask("plan it"))).text == "plan: a, b"
        with pytest.raises(BrainHTTPError):
            await recorder.complete(ask("bad"))
        assert (await recorder.complete(ask("finish"))).text == "done"
    assert server.requests == 3
    entries = journal.entries("swarm.events.planner.model_call")
    calls = [e.event.payload for e in entries]
    assert all(isinstance(c, ModelCall) for c in calls)
    assert [e.event.sequence for e in entries] == [1, 2, 3]
    assert {e.event.run_id for e in entries} == {"run-1"}
    first, failed, last = calls
    assert isinstance(first, ModelCall)
    assert isinstance(failed, ModelCall)
    assert isinstance(last, ModelCall)
    assert first.request_digest == ask("plan it").digest()
    assert (first.tokens_in, first.tokens_out, first.model, first.attempts) == (11, 7, "m", 1)
    assert blobs.get(first.response_ref) == b"plan: a, b"
    assert json.loads(blobs.get(first.prompt_ref))["messages"][1] == ["user", "plan it"]
    assert first.prompt_preview == "plan it"
    assert failed.error_type == "swarm_actors.errors.BrainHTTPError"
    assert "400" in failed.error_message
    assert not failed.response_ref

    replay = await ReplayBrain.from_journal(journal, blobs, run_id="run-1")
    before = server.requests
    assert (await replay.complete(ask("plan it"))).text == "plan: a, b"
    assert (await replay.complete(ask("finish"))).text == "done"
    with pytest.raises(ReplayMissError, match="never recorded") as caught:
        await replay.complete(ask("bad"))  # recorded only as an error
    assert caught.value.digest == ask("bad").digest()
    with pytest.raises(ReplayMissError):
        await replay.complete(ask("something new"))
    assert server.requests == before  # zero model calls, counted by the server
    assert replay.calls == 2
    other_run = await ReplayBrain.from_journal(journal, blobs, run_id="run-2")
    assert other_run.recorded == 0


@pytest.mark.asyncio
async def test_a_replay_gives_repeated_requests_their_answers_in_order() -> None:
    journal = MemoryJournal()
    recorder = RecordingBrain(ScriptedBrain(["first", "second"]), journal)
    for _ in range(2):
        await recorder.complete(ask("same"))
    replay = await ReplayBrain.from_journal(journal, recorder.blobs)
    assert [(await replay.complete(ask("same"))).text for _ in range(3)] == [
        "first",
        "second",
        "second",
    ]


# --- deterministic ---------------------------------------------------------------------------

PYTEST_OUTPUT = """\
tests/test_auth.py:41: AssertionError
=========================== short test summary info ============================
FAILED tests/test_auth.py::test_login - AssertionError: assert 401 == 200
ERROR tests/test_db.py::test_migrate - ModuleNotFoundError: No module named 'alembic'
==================== 1 failed, 12 passed, 1 error in 0.52s =====================
"""
RUFF_OUTPUT = "src/app/models.py:3:1: F401 [*] `os` imported but unused\n"
MYPY_OUTPUT = (
    'src/app/api.py:17: error: Incompatible return value type (got "str", expected "int")'
    "  [return-value]\n"
)
TRACEBACK = """Traceback (most recent call last):
  File "src/app/main.py", line 9, in <module>
    run()
  File "src/app/core.py", line 33, in run
    raise ValueError("bad config")
ValueError: bad config
"""


def test_findings_are_read_from_tool_reports() -> None:
    found = findings_in(PYTEST_OUTPUT + RUFF_OUTPUT + MYPY_OUTPUT + TRACEBACK)
    kinds = {(f.kind, f.file, f.line, f.code) for f in found}
    assert ("test_failure", "tests/test_auth.py", 0, "test_login") in kinds
    assert ("test_error", "tests/test_db.py", 0, "test_migrate") in kinds
    assert ("lint", "src/app/models.py", 3, "F401") in kinds
    assert ("type_error", "src/app/api.py", 17, "") in kinds
    assert ("exception", "src/app/core.py", 33, "ValueError") in kinds
    ruff_json = json.dumps(
        [{"filename": "a.py", "code": "E501", "message": "long", "location": {"row": 4}}]
    )
    assert [(f.kind, f.file, f.line, f.code) for f in findings_in(ruff_json)] == [
        ("lint", "a.py", 4, "E501")
    ]


@pytest.mark.asyncio
async def test_the_deterministic_brain_plans_from_what_tools_report() -> None:
    brain = DeterministicBrain()
    request = ask(f"The checks said:\n{PYTEST_OUTPUT}{RUFF_OUTPUT}", json_output=True)
    answer = await brain.complete(request)
    plan = answer.json()
    assert plan["verdict"] == "changes_needed"
    files = [s["file"] for s in plan["steps"]]
    assert "tests/test_auth.py" in files
    assert "src/app/models.py" in files
    login = next(s for s in plan["steps"] if "test_login" in s["action"])
    assert "assert 401 == 200" in login["evidence"]
    assert answer == await brain.complete(request)  # deterministic
    text = (await brain.complete(ask(RUFF_OUTPUT))).text
    assert text.startswith("changes_needed: 1 lint in 1 file")
    assert "Fix lint finding F401 in src/app/models.py:3" in text
    assert answer.usage.prompt_tokens > 0


@pytest.mark.asyncio
async def test_the_deterministic_brain_approves_clean_reports_and_plans_requests() -> None:
    brain = DeterministicBrain()
    ok = (
        await brain.complete(
            ask("==== 14 passed in 0.31s ====\nAll checks passed!", json_output=True)
        )
    ).json()
    assert ok["verdict"] == "ok"
    assert ok["steps"] == []
    plan = (
        await brain.complete(
            ask(
                "Add a --verbose flag to src/cli.py. Then document it in README.md.",
                json_output=True,
            )
        )
    ).json()
    assert plan["verdict"] == "plan"
    assert [s["file"] for s in plan["steps"]] == ["src/cli.py", "README.md"]
    assert "touching README.md, src/cli.py" in plan["summary"]


@pytest.mark.asyncio
async def test_the_deterministic_brain_takes_rules() -> None:
    brain = DeterministicBrain([lambda r: None, lambda r: f"echo {r.last_user}"])
    assert (await brain.complete(ask("x"))).text == "echo x"


DIFF = """\
--- a/src/app/io.py
+++ b/src/app/io.py
@@ -10,3 +10,6 @@ def load(path):
     with open(path) as f:
-        return f.read()
+        try:
+            return f.read()
+        except:
+            print("failed")
"""


@pytest.mark.asyncio
async def test_the_deterministic_brain_reviews_a_diff() -> None:
    brain = DeterministicBrain()
    review = (await brain.complete(ask(f"Review this change:\n{DIFF}", json_output=True))).json()
    assert review["verdict"] == "changes_needed"
    assert [(s["kind"], s["line"]) for s in review["steps"]] == [("bare_except", 13), ("print", 14)]
    assert "src/app/io.py (+4/-1)" in review["summary"]
    clean = DIFF.replace('+        except:\n+            print("failed")\n', "")
    ok = (await brain.complete(ask(f"Review:\n{clean}", json_output=True))).json()
    assert ok["verdict"] == "ok"
