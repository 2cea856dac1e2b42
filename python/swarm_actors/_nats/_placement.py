"""Where a virtual actor lives in a cluster: its key (and tree position) -> a shard.

A virtual actor is identified cluster-wide by its class and key. Its *shard* (one of
``Placement.shards``, a power of two) decides which node runs it: nodes own shards through
leases (``_shards``).

* A key with a *position* (the actor's path in the agent hierarchy: child ordinals from the
  root, as ``AgentTree`` numbers them) maps through the Hilbert curve. The ordinals are written
  level by level, most significant first, as ``level_bits`` bits each, and those bits are dealt
  round-robin over the curve's ``dims`` coordinates. So every subtree is an aligned box of the
  grid, which a Hilbert curve walks in one or a few contiguous runs; the shard is the top bits of
  the curve index, so a subtree (siblings, their parent, its neighbours) falls into one shard,
  or a few adjacent ones. Ordinals wider than ``level_bits`` bits wrap around; levels below
  ``dims * bits / level_bits`` share their ancestor's cell. A parent sits at its first child's
  corner (missing levels are zero bits).
* A key without a position hashes (BLAKE2b of class and key, the same in every process) to a
  shard: uniform, no locality.

``strategy="hash"`` hashes every key, positions ignored (the baseline of the locality bench).
Every node of a cluster must use the same placement: it is written to the shard bucket by the
first node, and a node with another one refuses to join.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

import msgspec

from swarm_actors._exceptions import InvalidArgumentError
from swarm_actors._tuplecore import hilbert_encode

__all__ = ["Placement", "check_position"]


def check_position(position: object) -> tuple[int, ...] | None:
    """``position`` as a tuple of ordinals; ``InvalidArgumentError`` if it is not one."""
    if position is None:
        return None
    if isinstance(position, (str, bytes)) or not isinstance(position, Sequence):
        raise InvalidArgumentError(
            f"position must be a sequence of non-negative ints (a tree path), got {position!r}"
        )
    out = tuple(position)
    for ordinal in out:
        if type(ordinal) is not int or ordinal < 0:
            raise InvalidArgumentError(
                f"position must hold non-negative ints (child ordinals), got {position!r}"
            )
    return out


class Placement(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How virtual actors are spread over shards (see the module docstring).

    ``shards``: a power of two from 1 to 4096 (more shards than nodes, so that load evens out
    and a joining node takes over a share). ``dims`` and ``bits``: the Hilbert curve's
    dimensions and bits per dimension (``dims * bits <= 128``). ``level_bits``: bits of each
    tree level's ordinal (siblings beyond ``2**level_bits`` wrap around).
    """

    shards: int = 64
    strategy: Literal["hilbert", "hash"] = "hilbert"
    dims: int = 3
    bits: int = 8
    level_bits: int = 3

    def __post_init__(self) -> None:
        if not (
            type(self.shards) is int
            and 1 <= self.shards <= 4096
            and self.shards & (self.shards - 1) == 0
        ):
            raise InvalidArgumentError(
                f"shards must be a power of two, 1-4096, got {self.shards!r}"
            )
        if self.strategy not in ("hilbert", "hash"):
            raise InvalidArgumentError(
                f'strategy must be "hilbert" or "hash", got {self.strategy!r}'
            )
        if not (type(self.dims) is int and type(self.bits) is int and type(self.level_bits) is int):
            raise InvalidArgumentError("dims, bits and level_bits must be ints")
        if not (self.dims >= 1 and 1 <= self.bits <= 64 and self.dims * self.bits <= 128):
            raise InvalidArgumentError(
                "need dims >= 1, 1 <= bits <= 64 and dims * bits <= 128, "
                f"got {self.dims}, {self.bits}"
            )
        if not 1 <= self.level_bits <= self.dims * self.bits:
            raise InvalidArgumentError(
                f"level_bits must be 1 to dims * bits, got {self.level_bits}"
            )
        if self.shards > 1 << (self.dims * self.bits):
            raise InvalidArgumentError("more shards than cells of the Hilbert grid")

    def point(self, position: Sequence[int]) -> tuple[int, ...]:
        """The grid point of a tree path (see the module docstring)."""
        dims, bits, level_bits = self.dims, self.bits, self.level_bits
        total = dims * bits
        coords = [0] * dims
        j = 0  # the next bit of the path, counted from the most significant
        for ordinal in position:
            if j >= total:
                break
            # Only the ordinal's low ``level_bits`` bits are read: wider ones wrap around.
            for k in range(level_bits - 1, -1, -1):
                if j >= total:
                    break
                if (ordinal >> k) & 1:
                    coords[j % dims] |= 1 << (bits - 1 - j // dims)
                j += 1
        return tuple(coords)

    def shard(self, class_name: str, key: str, position: Sequence[int] | None = None) -> int:
        """The shard of the virtual actor ``class_name`` / ``key``."""
        if position is None or self.strategy == "hash":
            digest = hashlib.blake2b(f"{class_name}\0{key}".encode(), digest_size=8).digest()
            return int.from_bytes(digest, "big") % self.shards
        index = hilbert_encode(self.point(position), self.bits)
        return index >> (self.dims * self.bits - (self.shards.bit_length() - 1))
