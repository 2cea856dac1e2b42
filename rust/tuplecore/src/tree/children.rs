//! Lazy listing of an agent's children.

use std::ops::Range;

use super::AgentTree;

/// Position in the children of one agent, independent of any borrow of the tree so that a
/// binding can keep it between calls. It covers the children that existed when it was made:
/// the batch's own children of a batch node, then the spawned children and batch blocks in
/// ordinal order. Advance it with [`ChildCursor::next`] on the tree that made it.
#[derive(Debug, Clone)]
pub struct ChildCursor {
    parent: u64,
    /// Ids left in the current block (a batch block, a single spawned child, or the intrinsic
    /// children of a batch node).
    block: Range<u64>,
    /// The next family entry is the first whose id is at least this (entries are sorted by id,
    /// and an id survives the removal of other entries where an index would not).
    next_from: u64,
    /// Entries from this id on were added after the cursor was made.
    end: u64,
}

impl ChildCursor {
    pub(super) fn new(parent: u64, intrinsic: Range<u64>, end: u64) -> Self {
        ChildCursor {
            parent,
            block: intrinsic,
            next_from: 0,
            end,
        }
    }

    /// The next child id, or `None` at the end.
    pub fn next(&mut self, tree: &AgentTree) -> Option<u64> {
        loop {
            if let Some(id) = self.block.next() {
                return Some(id);
            }
            let entries = &tree.families.get(&self.parent)?.entries;
            let at = entries.partition_point(|&e| e < self.next_from);
            let entry = *entries.get(at)?;
            if entry >= self.end {
                return None;
            }
            self.next_from = entry + 1;
            self.block = match tree.batch_starting_at(entry) {
                Some(batch) => batch.first_id..batch.first_id + batch.branching,
                None => entry..entry + 1,
            };
        }
    }

    /// Append up to `max` further children to `out`; returns how many were appended.
    pub fn fill(&mut self, tree: &AgentTree, out: &mut Vec<u64>, max: usize) -> usize {
        let before = out.len();
        while out.len() - before < max {
            match self.next(tree) {
                Some(id) => out.push(id),
                None => break,
            }
        }
        out.len() - before
    }
}

/// Iterator over the children of an agent (from [`AgentTree::children`]).
#[derive(Debug)]
pub struct Children<'a> {
    tree: &'a AgentTree,
    cursor: ChildCursor,
}

impl<'a> Children<'a> {
    pub(super) fn new(tree: &'a AgentTree, cursor: ChildCursor) -> Self {
        Children { tree, cursor }
    }
}

impl Iterator for Children<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        self.cursor.next(self.tree)
    }
}
