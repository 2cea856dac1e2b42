"""``swarm_actors.memory``: what is stored (verified only, deduplicated, persisted), how it is
found (exact keys, BM25, embeddings, fused by rank), offline embeddings, the context window.
The role swarm's use of it, over two real demo runs, is in ``test_memory_runs.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from numpy.typing import NDArray

import swarm_actors
from swarm_actors.brains import Message
from swarm_actors.memory import (
    APPROVED,
    DECISION,
    REJECTED,
    ContextWindow,
    MemoryEntry,
    MemoryStore,
    WordLlamaEmbedder,
    change_key,
    change_key_of_diff,
    failure_signatures,
    is_verified,
    query_keys,
)
from swarm_actors.tools import unified_diff


def approved(path: str, rule: str, text: str, **kw: Any) -> MemoryEntry:
    return MemoryEntry(
        kind=APPROVED, text=text, path=path, rules=(rule,), evidence=("ev-tests",), **kw
    )


def rejected(path: str, rule: str, text: str, reason: str, **kw: Any) -> MemoryEntry:
    return MemoryEntry(
        kind=REJECTED,
        text=text,
        path=path,
        rules=(rule,),
        reason=reason,
        signatures=failure_signatures(reason),
        **kw,
    )


CORPUS = [
    approved("app/io.py", "F401", "remove the unused import of os"),
    approved("app/cli.py", "I001", "sort the import block alphabetically"),
    rejected(
        "app/money.py",
        "B006",
        "replace a mutable default argument with None",
        "the tests fail: tests/test_money.py::Rates::test_cache (AssertionError)",
    ),
    approved("app/report.py", "UP032", "use an f-string instead of str.format"),
    approved("app/model.py", "A001", "rename a variable that shadows a builtin"),
]


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    loaded = WordLlamaEmbedder()
    assert loaded.wait(120), loaded.error
    return loaded


@pytest.fixture
def store(tmp_path: Path, embedder: WordLlamaEmbedder) -> MemoryStore:
    memory = MemoryStore(tmp_path / "memory", embedder=embedder)
    memory.add_many(CORPUS)
    return memory


# --- what is stored ----------------------------------------------------------------------


def test_entries_are_deduplicated_by_content_and_persist(tmp_path: Path) -> None:
    memory = MemoryStore(tmp_path / "m", embedder=None)
    first = memory.add_many([*CORPUS, CORPUS[0]])
    assert len(first.stored) == len(CORPUS)
    assert first.duplicates == 1
    # The same outcome from another run is the same entry: the run is not part of its id.
    again = approved("app/io.py", "F401", "remove the unused import of os", run_id="run-2")
    assert again.id == CORPUS[0].id
    assert not memory.add(again)
    reopened = MemoryStore(tmp_path / "m", embedder=None)
    assert [e.id for e in reopened.entries()] == [e.id for e in CORPUS]
    assert reopened.get(CORPUS[2].id) == memory.get(CORPUS[2].id)
    assert reopened.search("mutable default", k=1)[0].id == CORPUS[2].id  # the index too


def test_only_verified_outcomes_are_stored_by_default(tmp_path: Path) -> None:
    no_evidence = MemoryEntry(kind=APPROVED, text="approved, no check cited", path="a.py")
    no_reason = MemoryEntry(kind=REJECTED, text="rejected, no reason given", path="a.py")
    mined = MemoryEntry(kind=DECISION, text="a plan nobody checked", path="a.py")
    good = [CORPUS[0], CORPUS[2]]
    assert [is_verified(e) for e in (no_evidence, no_reason, mined, *good)] == [
        False, False, False, True, True,
    ]  # fmt: skip
    memory = MemoryStore(tmp_path / "m", embedder=None)
    added = memory.add_many([no_evidence, no_reason, mined, *good])
    assert added.unverified == 3
    assert set(added.stored) == {e.id for e in good}
    everything = MemoryStore(tmp_path / "all", embedder=None, verified_only=False)
    assert len(everything.add_many([no_evidence, no_reason, mined]).stored) == 3


def test_a_store_catches_up_with_entries_another_process_wrote(tmp_path: Path) -> None:
    one = MemoryStore(tmp_path / "m", embedder=None)
    two = MemoryStore(tmp_path / "m", embedder=None)
    one.add(CORPUS[0])
    assert two.add_many([CORPUS[0], CORPUS[1]]).duplicates == 1  # it reads before writing
    assert len(MemoryStore(tmp_path / "m", embedder=None)) == 2


# --- keys --------------------------------------------------------------------------------


def test_change_key_is_the_changed_lines_not_their_place() -> None:
    before = "import os\nx = 1\n"
    after = "x = 1\n"
    moved = "# a header\n\n" + before
    assert change_key("a.py", before, after) == change_key("a.py", moved, "# a header\n\n" + after)
    assert change_key("a.py", before, after) != change_key("b.py", before, after)
    assert change_key("a.py", before, after) != change_key("a.py", before, "import os\n")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("import os\nx = 1\n", "x = 1\n"),
        ("a\nb\nc\n" * 40, ("a\nb\nc\n" * 40).replace("b\n", "B\n", 3)),
        ("x = 1", "x = 2\n"),  # no final newline on one side
        ("", "print(1)\n"),
        ("def f():\n    return 1\n" * 5, "def f():\n    return 1\n" * 3),
    ],
)
def test_the_change_key_of_a_recorded_diff_is_the_change_key_of_its_sides(
    before: str, after: str
) -> None:
    # The swarm keys a change from the diff its Workspace recorded; a later run keys the
    # change it is about to make from the two contents: both must agree.
    diff = unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True), "m.py")
    assert change_key_of_diff("m.py", diff) == change_key("m.py", before, after)


def test_failure_signatures_and_query_keys() -> None:
    text = "FAILED tests/test_x.py::Case::test_y[1] - KeyError: 'a'; see app/io.py (F401)"
    assert failure_signatures(text) == ("KeyError", "tests/test_x.py::Case::test_y[1]")
    assert set(query_keys(text)) == {
        "sig:KeyError", "sig:tests/test_x.py::Case::test_y[1]", "path:app/io.py", "rule:F401",
    }  # fmt: skip


def test_structured_keys_match_exactly(store: MemoryStore) -> None:
    assert [e.id for e in store.lookup("path:app/io.py")] == [CORPUS[0].id]
    assert store.lookup("path:io.py") == []  # a key is whole or nothing
    assert store.lookup("path:app/io.py", "rule:I001") == []
    # A query naming a rule code finds its entry though no word of the text matches.
    hits = store.search("B006", k=2)
    assert hits[0].id == CORPUS[2].id
    assert hits[0].ranks["keys"] == 1
    # A failing test's id finds the rejection it caused.
    hit = store.search("tests/test_money.py::Rates::test_cache", k=1)[0]
    assert hit.id == CORPUS[2].id
    # keys= filters: only entries with every key.
    only = store.search("import", k=5, keys=("kind:approved", "path:app/cli.py"))
    assert [h.id for h in only] == [CORPUS[1].id]


# --- ranking -----------------------------------------------------------------------------


def test_bm25_ranks_by_shared_terms(store: MemoryStore) -> None:
    hits = store.search("unused imports", k=5, methods=("bm25",))
    assert hits[0].id == CORPUS[0].id  # stemmed: "imports" matches "import"
    assert {h.id for h in hits} == {CORPUS[0].id, CORPUS[1].id}  # only what shares a term
    assert store.search("library pulled in but never referenced", methods=("bm25",)) == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("library pulled in but never referenced", 0),
        ("list literal as the default value of a parameter", 2),
        ("string interpolation modernisation", 3),
    ],
)
def test_embeddings_find_paraphrases(store: MemoryStore, query: str, expected: int) -> None:
    hits = store.search(query, k=1, methods=("embedding",))
    assert hits[0].id == CORPUS[expected].id


class _Fake:
    """Vectors set by hand: by the file an entry's text names; any other text is the query's."""

    name = "fake"
    dim = 3
    table: ClassVar[dict[str, tuple[float, float, float]]] = {
        "a.py": (1.0, 0.0, 0.0),
        "b.py": (0.0, 1.0, 0.0),
        "c.py": (0.0, 0.6, 0.8),
    }

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        rows = [next((v for k, v in self.table.items() if k in t), (0.0, 1.0, 0.0)) for t in texts]
        return np.array(rows, dtype=np.float32)


def test_reciprocal_rank_fusion_prefers_agreement(tmp_path: Path) -> None:
    memory = MemoryStore(tmp_path / "m", embedder=_Fake())
    a = approved("a.py", "X100", "alpha alpha alpha")  # BM25 first, embeddings last
    b = approved("b.py", "X101", "alpha beta beta beta beta")  # BM25 second, embeddings first
    c = approved("c.py", "X102", "gamma")  # not in BM25, embeddings second
    memory.add_many([a, b, c])
    assert [h.id for h in memory.search("alpha", k=3, methods=("bm25",))] == [a.id, b.id]
    assert [h.id for h in memory.search("alpha", k=3, methods=("embedding",))] == [
        b.id, c.id, a.id,
    ]  # fmt: skip
    fused = memory.search("alpha", k=3)
    assert [h.id for h in fused] == [b.id, a.id, c.id]
    assert fused[0].ranks == {"bm25": 2, "embedding": 1}
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1].score == pytest.approx(1 / 61 + 1 / 63)


def test_wordllama_loads_from_the_wheel_with_no_network() -> None:
    """Every socket refused and the hub offline: it loads and embeds, and tried no connection."""
    probe = textwrap.dedent(
        """
        import socket
        tried = []
        def refuse(*args, **kwargs):
            tried.append(args[:2])
            raise OSError("no network in this test")
        socket.getaddrinfo = refuse
        socket.socket.connect = lambda self, address: refuse(address)
        from swarm_actors.memory import WordLlamaEmbedder
        embedder = WordLlamaEmbedder()
        assert embedder.wait(120), embedder.error
        assert embedder.embed(["remove an unused import"]).shape == (1, 256)
        print("tried", tried)
        """
    )
    package = Path(swarm_actors.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(package), "HF_HUB_OFFLINE": "1"}
    env["HOME"] = env["XDG_CACHE_HOME"] = str(Path(os.environ.get("TMPDIR", "/tmp")))
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "tried []"


# --- the context window ------------------------------------------------------------------


def test_the_context_window_drops_the_oldest_turns_and_says_so() -> None:
    window = ContextWindow(400, count=lambda text: len(text.split()))
    window.add(Message("system", "you are the coder"))
    for n in range(12):
        window.add(Message("user" if n % 2 == 0 else "assistant", f"turn {n} " + "word " * 40))
    request = window.request()
    assert sum(len(m.content.split()) + 4 for m in request.messages) <= 400
    assert request.messages[0] == Message("system", "you are the coder")
    assert request.messages[-1].content.startswith("turn 11 ")  # the newest is kept
    dropped = [d.turn for d in window.dropped]
    assert dropped == list(range(1, len(dropped) + 1))  # the oldest first (turn 0: system)
    assert window.dropped[0].content.startswith("turn 0 ")
    assert len(dropped) + len(window.messages) == 13  # nothing lost without a record
    note = request.messages[1].content
    assert f"{len(dropped)} earlier turns were dropped" in note
    assert window.dropped[0].sha256[:12] in note
    # A newest turn too large alone is cut by the brains' compressor, head and tail kept.
    window.add(Message("user", "start " + "filler " * 1000 + "end"))
    cut = window.request().messages[-1].content
    assert cut.startswith("start ")
    assert cut.endswith("end")
    assert "cut from the middle" in cut


class _Random:
    """Random unit vectors, one per distinct text (seeded by the text)."""

    name = "random"
    dim = 256

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        rows = []
        for text in texts:
            key = text.split()[0]  # the entry's own word (the index text adds path and rules)
            rng = np.random.default_rng(zlib.crc32(key.encode()))
            v = rng.standard_normal(self.dim).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.array(rows, dtype=np.float32)


def test_a_large_store_finds_the_nearest_vectors_in_two_steps(tmp_path: Path) -> None:
    """Over 4096 entries the sign bits pick candidates and floats rescore them.

    An entry's own vector is always found first (Hamming distance 0); the rest of the top 5
    is the exact scan's, or nearly (the candidates are an approximation).
    """
    memory = MemoryStore(tmp_path / "m", embedder=_Random())
    entries = [approved(f"f{n}.py", "X100", f"w{n}") for n in range(5000)]
    memory.add_many(entries)
    vectors = _Random().embed([e.text for e in entries])
    for n in (0, 1234, 4999):
        hits = memory.search(f"w{n}", k=5, methods=("embedding",))
        exact = [entries[int(i)].id for i in np.argsort(-(vectors @ vectors[n]))[:5]]
        assert hits[0].id == exact[0] == entries[n].id
        assert len({h.id for h in hits} & set(exact)) >= 4
