"""A content-addressed blob store: large contents stored once and referenced from events.

Events stay small: a model's prompt and response, a tool's output, a binary file's content are
put here and the event carries their SHA-256 hex digest (``ModelCall.response_ref``,
``ToolRun.output_ref``...). The digest is the name, so storing the same bytes twice stores
them once, and a reader can check what it got.

On disk (``BlobStore(root)``) a blob lives at ``root/ab/cdef...``: the first two hex digits of
its digest as a directory, the other 62 as the file name, like git's loose objects (256
directories keep any one directory small). Writes are atomic: a temporary file in the same
directory, written, flushed and ``fsync``-ed, then renamed over the final name, and the
directory ``fsync``-ed; a crash leaves the blob whole or absent, never half-written (a
leftover temporary file is named ``.tmp-*`` and never read). Reads hash what they read and
raise ``BlobCorruptError`` rather than return bytes that do not match the digest.

Without a root (``BlobStore()``) blobs are kept in memory: for tests, and for a process whose
events go no further than itself.

The methods are synchronous (a blob is a file read or write of at most a few megabytes):
from a coroutine, call them through ``asyncio.to_thread`` when blobs are large or the disk is
slow.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from swarm_actors._exceptions import BlobCorruptError, BlobNotFoundError, InvalidArgumentError

__all__ = ["BlobStore", "blob_digest"]

_DIGEST = re.compile(r"[0-9a-f]{64}\Z")


def blob_digest(data: bytes | bytearray | memoryview) -> str:
    """The SHA-256 hex digest a blob of ``data`` is stored under (64 lowercase hex digits)."""
    return hashlib.sha256(data).hexdigest()


def _check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InvalidArgumentError(
            f"not a blob digest: {digest!r}; expected 64 lowercase hex digits (SHA-256)"
        )
    return digest


class BlobStore:
    """Blobs by SHA-256 digest, in a directory (``root``) or, without one, in memory.

    ``put`` returns the digest and is idempotent; ``get`` returns the bytes, checked against
    the digest (``BlobCorruptError`` if they no longer match, ``BlobNotFoundError`` if there
    is no such blob); ``has`` says whether a blob is stored. A malformed digest is an
    ``InvalidArgumentError``. Safe to share between threads and processes: every write is
    a rename of a complete file, and equal names hold equal bytes.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self._root = None if root is None else Path(root)
        self._memory: dict[str, bytes] = {}
        if self._root is not None:
            self._root.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path | None:
        """The directory blobs are stored in, or ``None`` for a store in memory."""
        return self._root

    def path(self, digest: str) -> Path:
        """Where the blob of ``digest`` is (or would be) stored: ``root/ab/cdef...``."""
        _check_digest(digest)
        if self._root is None:
            raise InvalidArgumentError("an in-memory BlobStore has no paths; give it a root")
        return self._root / digest[:2] / digest[2:]

    def put(self, data: bytes | bytearray | memoryview) -> str:
        """Store ``data`` (once) and return its digest.

        A blob already stored under the digest is kept as it is when its size matches;
        otherwise (a damaged file) it is rewritten from ``data``.
        """
        data = bytes(data)
        digest = blob_digest(data)
        if self._root is None:
            self._memory.setdefault(digest, data)
            return digest
        path = self.path(digest)
        try:
            if path.stat().st_size == len(data):
                return digest
        except FileNotFoundError:
            pass
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return digest

    def get(self, digest: str) -> bytes:
        """The blob stored under ``digest``, checked against it.

        Raises ``BlobNotFoundError`` if none is stored, ``BlobCorruptError`` if the stored
        bytes no longer hash to ``digest``.
        """
        _check_digest(digest)
        if self._root is None:
            data = self._memory.get(digest)
            if data is None:
                raise BlobNotFoundError(f"no blob {digest} in this store", digest=digest)
        else:
            try:
                data = self.path(digest).read_bytes()
            except FileNotFoundError:
                raise BlobNotFoundError(
                    f"no blob {digest} under {self._root}", digest=digest
                ) from None
        if blob_digest(data) != digest:
            raise BlobCorruptError(
                f"blob {digest} is corrupt: its content hashes to {blob_digest(data)}; "
                "put the original content again to repair it",
                digest=digest,
            )
        return data

    def has(self, digest: str) -> bool:
        """Whether a blob is stored under ``digest`` (not checked: ``get`` checks)."""
        _check_digest(digest)
        if self._root is None:
            return digest in self._memory
        return self.path(digest).is_file()

    def __repr__(self) -> str:
        return f"BlobStore({str(self._root) if self._root else 'memory'!r})"


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows opening directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)
