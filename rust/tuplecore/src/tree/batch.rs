//! Batches: a whole subtree described by one record and resolved by arithmetic.
//!
//! A batch below `parent` with `depth` levels and `branching` children per node owns the
//! contiguous id range `first_id .. first_id + count`, numbered level by level (BFS order):
//! level 1 holds the `branching` children of `parent`, level `L` holds `branching^L` nodes, and
//! node `index` of level `L > 1` is child number `index % branching` of node `index / branching`
//! of level `L - 1`.

use std::ops::Range;

/// Deepest batch accepted. With `branching >= 2` a batch deeper than 64 levels cannot fit in
/// the id space anyway; the cap keeps `branching == 1` chains (and the paths of their nodes)
/// from growing without bound.
pub const MAX_BATCH_DEPTH: u32 = 64;

/// One batch record (56 bytes).
#[derive(Debug, Clone)]
pub(super) struct Batch {
    /// First id of level 1.
    pub first_id: u64,
    /// Number of nodes in all levels.
    pub count: u64,
    /// The agent the batch hangs below.
    pub parent: u64,
    /// Ordinal of the first level-1 node among `parent`'s children.
    pub ordinal_base: u64,
    pub branching: u64,
    /// Number of levels (>= 1).
    pub depth: u32,
    /// Absolute depth of `parent`.
    pub parent_depth: u32,
    /// Interned kind of every node.
    pub kind: u32,
}

/// Where an id sits inside its batch: level (1-based), index within the level, and the offset
/// of the level's first node from `first_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Position {
    pub level: u32,
    pub index: u64,
    pub level_start: u64,
}

/// Node count and leaf count of a batch, or `None` when either overflows `u64`.
pub(super) fn plan(depth: u32, branching: u64) -> Option<(u64, u64)> {
    let mut level_len = 1u64;
    let mut count = 0u64;
    for _ in 0..depth {
        level_len = level_len.checked_mul(branching)?;
        count = count.checked_add(level_len)?;
    }
    Some((count, level_len))
}

impl Batch {
    /// Whether `id` belongs to this batch.
    pub fn contains(&self, id: u64) -> bool {
        id.checked_sub(self.first_id)
            .is_some_and(|offset| offset < self.count)
    }

    /// Level and index of an id of this batch (the caller checked [`Batch::contains`]).
    pub fn locate(&self, id: u64) -> Position {
        let offset = id - self.first_id;
        if self.branching == 1 {
            // A chain: one node per level.
            return Position {
                level: offset as u32 + 1,
                index: 0,
                level_start: offset,
            };
        }
        let (mut level, mut start, mut len) = (1u32, 0u64, self.branching);
        // Every level but the last ends inside `count`, so neither sum overflows; the loop runs
        // at most `depth` (<= 64) times.
        while offset - start >= len {
            start += len;
            len *= self.branching;
            level += 1;
        }
        Position {
            level,
            index: offset - start,
            level_start: start,
        }
    }

    /// Number of nodes on `level` (1-based, `<= depth`).
    pub fn level_len(&self, level: u32) -> u64 {
        self.branching.pow(level)
    }

    /// Parent id and ordinal (among the parent's children) of the node at `pos`.
    pub fn parent_and_ordinal(&self, pos: Position) -> (u64, u64) {
        if pos.level == 1 {
            return (self.parent, self.ordinal_base + pos.index);
        }
        let parent_len = self.level_len(pos.level - 1);
        let parent_start = pos.level_start - parent_len;
        let parent = self.first_id + parent_start + pos.index / self.branching;
        (parent, pos.index % self.branching)
    }

    /// The ordinals from the batch's parent down to the node at `pos`, deepest first.
    pub fn push_ordinals_reversed(&self, pos: Position, out: &mut Vec<u64>) {
        let mut index = pos.index;
        for _ in 1..pos.level {
            out.push(index % self.branching);
            index /= self.branching;
        }
        out.push(self.ordinal_base + index);
    }

    /// The batch's own children of the node at `pos`: a contiguous id range, empty at the
    /// leaf level.
    pub fn children(&self, pos: Position) -> Range<u64> {
        if pos.level == self.depth {
            return 0..0;
        }
        let next_start = self.first_id
            + pos.level_start
            + self.level_len(pos.level)
            + pos.index * self.branching;
        next_start..next_start + self.branching
    }
}
