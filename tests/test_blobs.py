"""The content-addressed blob store: idempotent, atomic, and checked on every read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from swarm_actors.errors import (
    BlobCorruptError,
    BlobError,
    BlobNotFoundError,
    EventError,
    InvalidArgumentError,
)
from swarm_actors.events import BlobStore, blob_digest

DATA = b"a prompt\x00with binary \xff bytes"
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(params=["disk", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs") if request.param == "disk" else BlobStore()


def test_put_returns_the_sha256_and_get_returns_the_bytes(store: BlobStore) -> None:
    assert not store.has(DIGEST)
    assert store.put(DATA) == DIGEST == blob_digest(DATA)
    assert store.has(DIGEST)
    assert store.get(DIGEST) == DATA
    assert store.put(bytearray(b"")) == hashlib.sha256(b"").hexdigest()
    assert store.get(hashlib.sha256(b"").hexdigest()) == b""


def test_put_is_idempotent(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.put(DATA) == store.put(memoryview(DATA)) == DIGEST
    path = tmp_path / DIGEST[:2] / DIGEST[2:]
    assert store.path(DIGEST) == path
    assert path.read_bytes() == DATA
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [DIGEST[2:]]


def test_a_missing_blob_is_a_typed_error(store: BlobStore) -> None:
    with pytest.raises(BlobNotFoundError) as caught:
        store.get(DIGEST)
    assert caught.value.digest == DIGEST
    assert isinstance(caught.value, (BlobError, EventError, LookupError))


@pytest.mark.parametrize("bad", ["", "abc", DIGEST.upper(), DIGEST + "0", "../" + DIGEST[3:], 5])
def test_a_malformed_digest_is_refused(store: BlobStore, bad: object) -> None:
    for call in (store.get, store.has):
        with pytest.raises(InvalidArgumentError, match="64 lowercase hex"):
            call(bad)  # type: ignore[arg-type]


def test_corruption_on_disk_is_detected_and_put_repairs_it(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.put(DATA)
    path = store.path(DIGEST)
    path.write_bytes(DATA[:-1] + b"X")  # same size, other content
    with pytest.raises(BlobCorruptError, match="put the original content") as caught:
        store.get(DIGEST)
    assert caught.value.digest == DIGEST
    path.write_bytes(DATA[:5])  # a truncated file: put sees the wrong size and rewrites it
    assert store.put(DATA) == DIGEST
    assert store.get(DIGEST) == DATA


def test_a_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path)

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        store.put(DATA)
    assert not store.has(DIGEST)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_stores_on_one_directory_share_blobs(tmp_path: Path) -> None:
    BlobStore(tmp_path).put(DATA)
    assert BlobStore(tmp_path).get(DIGEST) == DATA
    assert "blobs" not in repr(BlobStore())


def test_a_memory_store_has_no_paths() -> None:
    with pytest.raises(InvalidArgumentError, match="give it a root"):
        BlobStore().path(DIGEST)
