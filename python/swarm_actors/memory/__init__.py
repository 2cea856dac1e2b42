"""Memory: "have we done this before?", across runs, offline.

Long-term memory (``MemoryStore``, under ``DATA/memory/``) holds the outcomes of past runs:
approved changes with their evidence (the check runs that passed), rejected attempts with the
reviewer's reasons (``MemoryEntry``), deduplicated by content hash, and by default only what
evidence backs (``is_verified``). ``search`` fuses three rankings by reciprocal rank fusion:
exact keys (file paths, rule codes, failure signatures, change keys), BM25 (``tantivy``) and
cosine similarity of static word embeddings shipped inside the ``wordllama`` wheel (the
``memory`` extra; never downloaded: ``WordLlamaEmbedder``). Without wordllama, memory works on
BM25 and exact keys, and ``stats()`` says so.

Short-term memory (``ContextWindow``) keeps one agent's conversation within its brain's
context limit, dropping the oldest turns and saying what it dropped.

The role swarm uses it (``SwarmConfig.memory``): the architect consults it before planning
and cites what it used (``AgentDecision.memory_ids``); a coder skips a change that an earlier
run saw rejected (``change_key``) and, retrying, consults it with the failure signature; the
run's approved and rejected changes are stored at its end.

Owns: ``_entry`` (what is stored, its keys, verification), ``_embed`` (offline embeddings),
``_store`` (files, indexes, search), ``_context`` (the context window).

May import: ``brains`` (the request, the token counter, the compressor), ``_exceptions``,
``_log``, ``_public``; tantivy, numpy and (optionally) wordllama.
"""

from swarm_actors._public import publish as _publish
from swarm_actors.memory._context import ContextWindow, Dropped
from swarm_actors.memory._embed import Embedder, WordLlamaEmbedder, default_embedder
from swarm_actors.memory._entry import (
    APPROVED,
    DECISION,
    REJECTED,
    MemoryEntry,
    change_key,
    change_key_of_diff,
    failure_signatures,
    is_verified,
    query_keys,
)
from swarm_actors.memory._store import (
    RRF_K,
    Added,
    MemoryHit,
    MemoryStats,
    MemoryStore,
    memory_dir,
)

__all__ = [
    "APPROVED",
    "DECISION",
    "REJECTED",
    "RRF_K",
    "Added",
    "ContextWindow",
    "Dropped",
    "Embedder",
    "MemoryEntry",
    "MemoryHit",
    "MemoryStats",
    "MemoryStore",
    "WordLlamaEmbedder",
    "change_key",
    "change_key_of_diff",
    "default_embedder",
    "failure_signatures",
    "is_verified",
    "memory_dir",
    "query_keys",
]

_publish(
    __name__,
    Added,
    ContextWindow,
    Dropped,
    Embedder,
    MemoryEntry,
    MemoryHit,
    MemoryStats,
    MemoryStore,
    WordLlamaEmbedder,
    change_key,
    change_key_of_diff,
    default_embedder,
    failure_signatures,
    is_verified,
    memory_dir,
    query_keys,
)
