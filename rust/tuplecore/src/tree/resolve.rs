//! Resolving ids: where an id is described, and everything computed from that.

use super::{AgentInfo, AgentTree, Batch, ChildCursor, Children, Place, Status, FORGOTTEN, ROOT};
use crate::{Error, Result};

impl AgentTree {
    /// Where `id` is described.
    pub(super) fn place(&self, id: u64) -> Result<Place> {
        if id == ROOT {
            return Ok(Place::Root);
        }
        if id >= self.next_id {
            return Err(Error::UnknownAgent { id });
        }
        if let Ok(i) = self.spawned.binary_search_by_key(&id, |s| s.id) {
            if self.spawned[i].kind == FORGOTTEN {
                return Err(Error::UnknownAgent { id });
            }
            return Ok(Place::Spawned(i));
        }
        let b = self.batches.partition_point(|b| b.first_id <= id);
        match b.checked_sub(1).map(|b| (b, &self.batches[b])) {
            Some((b, batch)) if batch.contains(id) => Ok(Place::Batch(b, batch.locate(id))),
            // A forgotten spawned agent whose record was compacted away.
            _ => Err(Error::UnknownAgent { id }),
        }
    }

    pub(super) fn depth_of(&self, place: Place) -> u32 {
        match place {
            Place::Root => 0,
            Place::Spawned(i) => self.spawned[i].depth,
            Place::Batch(b, pos) => self.batches[b].parent_depth + pos.level,
        }
    }

    pub(super) fn kind_of(&self, place: Place) -> &str {
        self.kinds.name(match place {
            Place::Root => 0,
            Place::Spawned(i) => self.spawned[i].kind,
            Place::Batch(b, _) => self.batches[b].kind,
        })
    }

    pub(super) fn parent_of(&self, place: Place) -> Option<u64> {
        match place {
            Place::Root => None,
            Place::Spawned(i) => Some(self.spawned[i].parent),
            Place::Batch(b, pos) => Some(self.batches[b].parent_and_ordinal(pos).0),
        }
    }

    /// The batch's own children of a batch node (empty for every other agent).
    pub(super) fn intrinsic_children(&self, id: u64) -> std::ops::Range<u64> {
        match self.place(id) {
            Ok(Place::Batch(b, pos)) => self.batches[b].children(pos),
            _ => 0..0,
        }
    }

    /// The batch whose level-1 block starts at `first_id`, if any.
    pub(super) fn batch_starting_at(&self, first_id: u64) -> Option<&Batch> {
        let i = self
            .batches
            .binary_search_by_key(&first_id, |b| b.first_id)
            .ok()?;
        Some(&self.batches[i])
    }

    /// Parent of `id` (`None` for the root).
    pub fn parent(&self, id: u64) -> Result<Option<u64>> {
        Ok(self.parent_of(self.place(id)?))
    }

    /// Kind of `id`.
    pub fn kind(&self, id: u64) -> Result<&str> {
        Ok(self.kind_of(self.place(id)?))
    }

    /// Depth of `id` (the root is at depth 0).
    pub fn depth(&self, id: u64) -> Result<u32> {
        Ok(self.depth_of(self.place(id)?))
    }

    /// Child ordinals from the root down to `id` (empty for the root).
    pub fn path(&self, id: u64) -> Result<Vec<u64>> {
        let place = self.place(id)?;
        let mut path = Vec::with_capacity(self.depth_of(place) as usize);
        let mut place = place;
        loop {
            let parent = match place {
                Place::Root => break,
                Place::Spawned(i) => {
                    let s = &self.spawned[i];
                    path.push(s.ordinal);
                    s.parent
                }
                Place::Batch(b, pos) => {
                    let batch = &self.batches[b];
                    batch.push_ordinals_reversed(pos, &mut path);
                    batch.parent
                }
            };
            place = self.place(parent)?;
        }
        path.reverse();
        Ok(path)
    }

    /// Hilbert index of a path: its first `dims` ordinals (zero-padded), each clamped to
    /// `2^bits - 1`.
    pub fn hilbert_of_path(&self, path: &[u64]) -> Result<u128> {
        let max = if self.bits == 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        };
        let mut point = vec![0u64; self.dims as usize];
        for (coord, &ordinal) in point.iter_mut().zip(path) {
            *coord = ordinal.min(max);
        }
        crate::hilbert::encode(&point, self.bits)
    }

    /// Hilbert index of `id`.
    pub fn hilbert(&self, id: u64) -> Result<u128> {
        self.hilbert_of_path(&self.path(id)?)
    }

    /// Status of `id`.
    pub fn status(&self, id: u64) -> Result<Status> {
        match self.table.find(id) {
            Some(pos) if self.table.is_compressed(pos) => Ok(Status::Compressed),
            Some(_) => Ok(Status::Active),
            None => self.place(id).map(|_| Status::Virtual),
        }
    }

    /// Everything about `id`.
    pub fn info(&self, id: u64) -> Result<AgentInfo> {
        let place = self.place(id)?;
        let path = self.path(id)?;
        Ok(AgentInfo {
            id,
            parent: self.parent_of(place),
            kind: self.kind_of(place).to_owned(),
            depth: self.depth_of(place),
            hilbert: self.hilbert_of_path(&path)?,
            path,
            status: self.status(id)?,
        })
    }

    /// A cursor over the children of `id` as they are now, in ordinal order. It lists the
    /// batch's own children of a batch node, then spawned children and batch blocks, all by
    /// arithmetic: nothing is materialized.
    pub fn child_cursor(&self, id: u64) -> Result<ChildCursor> {
        self.place(id)?;
        Ok(ChildCursor::new(
            id,
            self.intrinsic_children(id),
            self.next_id,
        ))
    }

    /// Iterator over the children of `id` (see [`AgentTree::child_cursor`]).
    pub fn children(&self, id: u64) -> Result<Children<'_>> {
        Ok(Children::new(self, self.child_cursor(id)?))
    }

    /// Number of children of `id`.
    pub fn child_count(&self, id: u64) -> Result<u64> {
        self.place(id)?;
        let forgotten = self.families.get(&id).map_or(0, |f| f.forgotten);
        Ok(self.next_ordinal(id) - forgotten)
    }
}
