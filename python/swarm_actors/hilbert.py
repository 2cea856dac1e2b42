"""n-dimensional Hilbert mapping (Skilling's transpose algorithm), in Rust.

1 to 128 dimensions, ``dims * bits <= 128`` (indices up to 128 bits). ``hilbert_encode`` maps
a point to its index on the curve and ``hilbert_decode`` back; the ``_batch`` forms do the
same for many points at once (large batches with the GIL released). Points and indices outside
the curve raise ``swarm_actors.errors.CoordinateError``; a point that is not a sequence of the
right length, ``ArityError``.
"""

from swarm_actors._public import publish as _publish
from swarm_actors._tuplecore import (
    hilbert_decode,
    hilbert_decode_batch,
    hilbert_encode,
    hilbert_encode_batch,
)

__all__ = ["hilbert_decode", "hilbert_decode_batch", "hilbert_encode", "hilbert_encode_batch"]

_publish(__name__, hilbert_decode, hilbert_decode_batch, hilbert_encode, hilbert_encode_batch)
