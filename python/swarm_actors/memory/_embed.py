"""Embeddings that need no model hub: the static word vectors the ``wordllama`` wheel ships.

``WordLlama.load()`` as documented is not offline: it looks for its tokenizer under
``wordllama/tokenizer/`` while the wheel ships it under ``wordllama/tokenizers/``, misses it and
downloads it from the Hugging Face hub (checked with every socket refused: one connection
attempt to huggingface.co, then ``FileNotFoundError``). Both files are in the wheel, so this
module points the loader's cache directory at the package itself, where ``weights/`` and
``tokenizers/`` are, and forbids downloads (``disable_download=True``): it loads from the
wheel's files or fails, never reaching the network.

The vectors (256 dimensions, ``l2_supercat``, 16 MB) load in about 2 s; the embedder loads in a
daemon thread so that opening memory never waits for it (``wait()`` does).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from swarm_actors._log import get_logger

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["Embedder", "WordLlamaEmbedder", "default_embedder"]

log = get_logger("swarm_actors.memory")


class Embedder(Protocol):
    """Turns texts into unit vectors (rows of a float32 matrix) for cosine similarity."""

    @property
    def name(self) -> str:
        """What made the vectors (vectors of different embedders never mix)."""
        ...

    @property
    def dim(self) -> int:
        """The vectors' dimensions."""
        ...

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """One L2-normalised row per text."""
        ...


class WordLlamaEmbedder:
    """``wordllama``'s static embeddings, loaded from the wheel's own files (never downloaded).

    Loading starts at construction in a daemon thread; ``embed`` waits for it. ``error`` says
    why it failed (then ``embed`` raises ``RuntimeError``).
    """

    name = "wordllama:l2_supercat:256"
    dim = 256

    def __init__(self) -> None:
        self._model: Any = None
        self.error = ""
        """Why loading failed (``""`` while loading or once loaded)."""
        self._loaded = threading.Event()
        threading.Thread(target=self._load, name="swarm-actors-embedder", daemon=True).start()

    def _load(self) -> None:
        try:
            from wordllama import WordLlama  # type: ignore[import-untyped]

            spec = importlib.util.find_spec("wordllama")
            assert spec is not None
            assert spec.origin is not None
            package = Path(spec.origin).parent
            self._model = WordLlama.load(
                config="l2_supercat", dim=self.dim, cache_dir=package, disable_download=True
            )
        except Exception as exc:  # a broken install: memory goes on with BM25 and keys
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("memory.embedder_unavailable", error=self.error)
        finally:
            self._loaded.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until loaded (or failed); whether it is usable."""
        self._loaded.wait(timeout)
        return self._model is not None

    def embed(self, texts: list[str]) -> NDArray[np.float32]:
        """One L2-normalised float32 row per text."""
        import numpy as np

        if not self.wait(120.0):
            raise RuntimeError(f"the wordllama embedder did not load: {self.error or 'timeout'}")
        vectors = self._model.embed(texts, norm=True)
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


def default_embedder() -> Embedder | None:
    """``WordLlamaEmbedder`` if ``wordllama`` is installed (the ``memory`` extra), else ``None``."""
    if importlib.util.find_spec("wordllama") is None:
        return None
    return WordLlamaEmbedder()
