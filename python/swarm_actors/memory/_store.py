"""``MemoryStore``: entries on disk under ``DATA/memory/``, searched three ways, fused by RRF.

Layout (``entries.jsonl`` is the truth; the rest is rebuilt from it when it lags behind):

* ``entries.jsonl``: one JSON object per entry, appended, in order (row ``n`` is line ``n``);
* ``tantivy/``: the BM25 index (``text``, stemmed English) with each entry's row;
* ``vectors.f32`` + ``vectors.json``: one embedding row per entry and the embedder's name.

Writers take ``memory.lock`` (``fcntl.flock``): two runs finishing together append in turn.
Exact keys (``path:``, ``rule:``, ``sig:``, ``change:``, ``kind:``) are an in-memory map from key
to rows, rebuilt on open: a key matches exactly or not at all, at dictionary speed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._log import get_logger
from swarm_actors.memory._embed import Embedder, default_embedder
from swarm_actors.memory._entry import MemoryEntry, is_verified, query_keys

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["RRF_K", "Added", "MemoryHit", "MemoryStats", "MemoryStore", "memory_dir"]

log = get_logger("swarm_actors.memory")

RRF_K = 60
"""Reciprocal rank fusion's constant: a hit at rank ``r`` of a list scores ``1 / (RRF_K + r)``
(Cormack et al. 2009: 60 works across collections; large enough that no single list's top
rank dominates)."""
_DEPTH = 50  # candidates taken from each list before fusing
# Over this many entries, embeddings are searched in two steps: the Hamming distance of the
# vectors' sign bits (32 bytes an entry) picks _RESCORE candidates, and only their float
# vectors are scored. A full float scan reads 1 KB an entry: 100 MB a query at 100,000
# entries, 24 ms on the project's machine, all of it memory bandwidth.
_EXACT_ROWS = 4096
_RESCORE = 1000
_WORD = re.compile(r"\w+")
# fmt: off
_STOP_WORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is",
    "it", "its", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "were", "will", "with",
))  # Lucene's English stop words, less "no" and "not" (they matter in code)
# fmt: on
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(MemoryEntry)


def memory_dir(data_dir: str | os.PathLike[str]) -> Path:
    """Where memory lives in a data directory: ``DATA/memory``."""
    return Path(data_dir) / "memory"


class Added(msgspec.Struct, frozen=True):
    """What ``add_many`` did with the entries it was given."""

    stored: tuple[str, ...]
    """Ids of the entries newly stored."""
    duplicates: int
    """Entries already there (same content hash): not stored again."""
    unverified: int
    """Entries left out because no evidence backs them (``verified_only``)."""


class MemoryHit(msgspec.Struct, frozen=True):
    """One search result: the entry, its fused score, and its rank in each list (1 = top)."""

    entry: MemoryEntry
    score: float
    ranks: dict[str, int]
    """``{"keys": 1, "bm25": 3, "embedding": 2}``: the lists it was found in."""

    @property
    def id(self) -> str:
        """The entry's id (``mem-...``)."""
        return self.entry.id


class MemoryStats(msgspec.Struct, frozen=True):
    """What a store holds."""

    path: str
    entries: int
    by_kind: dict[str, int]
    runs: int
    embedder: str
    """The embedder's name, or why there is none."""
    bytes: int


class MemoryStore:
    """Long-term memory of past runs under ``directory`` (``memory_dir(data_dir)``).

    ``embedder``: ``"auto"`` (``default_embedder()``: wordllama if installed), ``None`` (BM25
    and exact keys only) or an ``Embedder``. ``verified_only`` (default): ``add_many`` keeps
    out what no evidence backs (``is_verified``). Methods block (files, the index, numpy):
    call them from a thread in async code (``asyncio.to_thread``). Thread-safe.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        embedder: Embedder | str | None = "auto",
        verified_only: bool = True,
    ) -> None:
        import tantivy

        if isinstance(embedder, str):
            if embedder != "auto":
                raise InvalidArgumentError(
                    f"embedder must be 'auto', None or an Embedder, not {embedder!r}"
                )
            embedder = default_embedder()
        self.directory = Path(directory)
        self.embedder = embedder
        self.verified_only = verified_only
        self._lock = threading.RLock()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._entries: list[MemoryEntry] = []
        self._ids: dict[str, int] = {}
        self._keys: dict[str, list[int]] = {}
        self._vectors: NDArray[np.float32] | None = None
        self._bits: NDArray[np.uint64] | None = None
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("text", stored=False, tokenizer_name="en_stem")
        builder.add_integer_field("row", stored=True, indexed=False, fast=True)
        self._schema = builder.build()
        index_dir = self.directory / "tantivy"
        index_dir.mkdir(exist_ok=True)
        self._index = tantivy.Index(self._schema, path=str(index_dir), reuse=True)
        with self._locked():
            self._load()

    # --- files --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The process's lock and the directory's (another process may write too)."""
        with self._lock, open(self.directory / "memory.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _load(self) -> None:
        """Read the entries written since the last load, and bring the indexes up to them."""
        path = self.directory / "entries.jsonl"
        if path.exists():
            with open(path, "rb") as handle:
                lines = handle.read().splitlines()
            for line in lines[len(self._entries) :]:
                if line.strip():
                    self._remember(_DECODER.decode(line))
        self._index.reload()
        indexed = self._index.searcher().num_docs
        if indexed != len(self._entries):
            self._reindex(indexed)
        self._sync_vectors()

    def _remember(self, entry: MemoryEntry) -> int:
        row = len(self._entries)
        self._entries.append(entry)
        self._ids[entry.id] = row
        for key in entry.exact_keys():
            self._keys.setdefault(key, []).append(row)
        return row

    def _reindex(self, indexed: int) -> None:
        import tantivy

        writer = self._index.writer(heap_size=50_000_000, num_threads=1)
        if indexed > len(self._entries):  # an index ahead of its entries: start it over
            writer.delete_all_documents()
            indexed = 0
        for row in range(indexed, len(self._entries)):
            writer.add_document(tantivy.Document(text=_index_text(self._entries[row]), row=row))
        writer.commit()
        writer.wait_merging_threads()
        self._index.reload()

    def _sync_vectors(self) -> None:
        if self.embedder is None:
            return
        import numpy as np  # with the embedder only (the memory extra brings it)

        meta_path, data_path = self.directory / "vectors.json", self.directory / "vectors.f32"
        dim = self.embedder.dim
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        if meta.get("embedder") != self.embedder.name or not data_path.exists():
            data_path.write_bytes(b"")
            meta_path.write_text(json.dumps({"embedder": self.embedder.name, "dim": dim}))
        have = data_path.stat().st_size // (4 * dim)
        if have > len(self._entries):
            data_path.write_bytes(b"")
            have = 0
        if have < len(self._entries):
            texts = [_index_text(e) for e in self._entries[have:]]
            with open(data_path, "r+b") as handle:
                handle.seek(have * 4 * dim)
                handle.truncate()
                for start in range(0, len(texts), 4096):
                    handle.write(self.embedder.embed(texts[start : start + 4096]).tobytes())
        self._vectors = np.fromfile(data_path, dtype=np.float32).reshape(-1, dim)
        self._bits = np.ascontiguousarray(_sign_bits(self._vectors).T)  # words x rows

    # --- writing ------------------------------------------------------------------------

    def add(self, entry: MemoryEntry) -> bool:
        """Store ``entry``; whether it was stored (not a duplicate, verified if required)."""
        return bool(self.add_many([entry]).stored)

    def add_many(self, entries: Iterable[MemoryEntry]) -> Added:
        """Store the entries that are new (by content hash) and, by default, verified."""
        fresh: list[MemoryEntry] = []
        duplicates = unverified = 0
        with self._locked():
            self._load()  # another process may have added since
            seen = set(self._ids)
            for entry in entries:
                if self.verified_only and not is_verified(entry):
                    unverified += 1
                    continue
                if entry.id in seen:
                    duplicates += 1
                    continue
                seen.add(entry.id)
                if not entry.recorded_ns:
                    entry = msgspec.structs.replace(entry, recorded_ns=time.time_ns())
                fresh.append(entry)
            if fresh:
                with open(self.directory / "entries.jsonl", "ab") as handle:
                    handle.write(b"".join(_ENCODER.encode(e) + b"\n" for e in fresh))
                    handle.flush()
                    os.fsync(handle.fileno())
                self._load()
        log.info("memory.added", stored=len(fresh), duplicates=duplicates, unverified=unverified)
        return Added(tuple(e.id for e in fresh), duplicates, unverified)

    # --- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, entry_id: str) -> MemoryEntry | None:
        """The entry with this id (``mem-...``), if stored."""
        row = self._ids.get(entry_id)
        return None if row is None else self._entries[row]

    def entries(self) -> list[MemoryEntry]:
        """Every entry, oldest first."""
        return list(self._entries)

    def lookup(self, *keys: str) -> list[MemoryEntry]:
        """The entries with every one of ``keys`` (``"path:a.py"``...), oldest first."""
        rows = self._rows(keys)
        if rows is None:
            return list(self._entries)
        return [self._entries[r] for r in sorted(rows)]

    def _rows(self, keys: Sequence[str]) -> set[int] | None:
        rows: set[int] | None = None
        for key in keys:
            found = set(self._keys.get(key, ()))
            rows = found if rows is None else rows & found
        return rows

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        keys: Sequence[str] = (),
        methods: Sequence[str] = ("keys", "bm25", "embedding"),
    ) -> list[MemoryHit]:
        """The ``k`` entries that best answer ``query``, best first.

        Three ranked lists are fused by reciprocal rank fusion: entries sharing the most exact
        keys the query names (``query_keys``: paths, rule codes, failure signatures), BM25 on
        the text (tantivy), and cosine similarity of embeddings; an entry with more of the
        named keys ranks first (keys match exactly: they are not one opinion among three).
        ``keys``: exact keys every hit must have (a filter). ``methods``: which lists to use
        (the benchmark compares them).
        """
        if k < 1:
            raise InvalidArgumentError(f"k must be >= 1, got {k}")
        allowed = self._rows(keys)
        lists: dict[str, list[int]] = {}
        keys_named = query_keys(query) if "keys" in methods else ()
        if "keys" in methods:
            lists["keys"] = self._by_keys(keys_named, allowed)
        if "bm25" in methods:
            lists["bm25"] = self._bm25(query, allowed)
        if "embedding" in methods:
            lists["embedding"] = self._similar(query, allowed)
        scores: dict[int, float] = {}
        ranks: dict[int, dict[str, int]] = {}
        for name, rows in lists.items():
            for rank, row in enumerate(rows, 1):
                scores[row] = scores.get(row, 0.0) + 1.0 / (RRF_K + rank)
                ranks.setdefault(row, {})[name] = rank
        # Keys match exactly: an entry with more of the keys the query names comes first,
        # whatever the fuzzy lists say (RRF alone would rank an entry found at middling ranks
        # by all three lists over the one entry with the very file and rule asked for).
        named = [set(self._keys.get(key, ())) for key in keys_named] if keys_named else []
        matched = {r: sum(r in rows for rows in named) for r in scores}
        best = sorted(scores, key=lambda r: (-matched[r], -scores[r], -r))[:k]
        return [MemoryHit(self._entries[r], scores[r], ranks[r]) for r in best]

    def _by_keys(self, keys: Sequence[str], allowed: set[int] | None) -> list[int]:
        counts: dict[int, int] = {}
        for key in keys:
            for row in self._keys.get(key, ()):
                if allowed is None or row in allowed:
                    counts[row] = counts.get(row, 0) + 1
        return sorted(counts, key=lambda r: (-counts[r], -r))[:_DEPTH]

    def _bm25(self, query: str, allowed: set[int] | None) -> list[int]:
        # Stop words match nearly every entry: scoring them costs most of a query at 100,000
        # entries and ranks nothing (their IDF is about 0).
        words = [w for w in _WORD.findall(query) if w.lower() not in _STOP_WORDS]
        if not words or not self._entries:
            return []
        parsed = self._index.parse_query(" ".join(words), ["text"])
        searcher = self._index.searcher()
        depth = _DEPTH if allowed is None else max(_DEPTH * 10, 1000)
        rows: list[int] = []
        for _, address in searcher.search(parsed, depth).hits:
            row = int(searcher.doc(address)["row"][0])
            if allowed is None or row in allowed:
                rows.append(row)
        return rows[:_DEPTH]

    def _similar(self, query: str, allowed: set[int] | None) -> list[int]:
        vectors = self._vectors
        if self.embedder is None or vectors is None or not len(vectors) or not query.strip():
            return []
        import numpy as np

        try:
            q = self.embedder.embed([query])[0]
        except RuntimeError as exc:  # the embedder did not load: the other lists stand
            log.warning("memory.embedding_skipped", error=str(exc))
            return []
        if allowed is not None:
            rows = np.fromiter(allowed, dtype=np.int64, count=len(allowed))
        elif len(vectors) <= _EXACT_ROWS or self._bits is None:
            rows = np.arange(len(vectors))
        else:  # the sign bits' nearest, then their exact scores
            # Words x rows: the sum runs across whole rows of words (a reduction along the
            # short axis of a rows x words array is several times slower).
            words = _sign_bits(q[None, :]).T
            distance = np.bitwise_count(self._bits ^ words).sum(axis=0, dtype=np.uint16)
            rows = np.argpartition(distance, _RESCORE - 1)[:_RESCORE]
        scores = vectors[rows] @ q
        depth = min(_DEPTH, len(rows))
        top = np.argpartition(-scores, depth - 1)[:depth]
        order = top[np.argsort(-scores[top], kind="stable")]
        return [int(r) for r in rows[order]]

    def stats(self) -> MemoryStats:
        """What the store holds, and how it searches."""
        by_kind: dict[str, int] = {}
        for entry in self._entries:
            by_kind[entry.kind] = by_kind.get(entry.kind, 0) + 1
        size = sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())
        if self.embedder is None:
            embedder = "none (pip install 'swarm-actors[memory]' for semantic search)"
        else:
            embedder = self.embedder.name
            error: Any = getattr(self.embedder, "error", "")
            if error:
                embedder += f" (unavailable: {error})"
        return MemoryStats(
            path=str(self.directory),
            entries=len(self._entries),
            by_kind=by_kind,
            runs=len({e.run_id for e in self._entries if e.run_id}),
            embedder=embedder,
            bytes=size,
        )


def _sign_bits(vectors: NDArray[np.float32]) -> NDArray[np.uint64]:
    """Each row's signs as bits, packed into 64-bit words (zero-padded)."""
    import numpy as np

    packed = np.packbits(vectors > 0, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _index_text(entry: MemoryEntry) -> str:
    """What BM25 sees: the text, the reason, the path's words and the rule codes."""
    return " ".join((entry.text, entry.reason, entry.path, " ".join(entry.rules)))
