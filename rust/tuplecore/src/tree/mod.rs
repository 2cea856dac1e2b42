//! A lazily described agent hierarchy where a million agents cost almost nothing.
//!
//! Ids are `u64`, handed out in order and never reused; every id below the next one to hand out
//! names an agent, except the spawned agents [`AgentTree::forget`] dropped. An agent is
//!
//! * **virtual**: a node of a batch (see [`AgentTree::batch_spawn`]) never touched. It costs
//!   nothing: its parent, kind, depth and path are computed from the batch record.
//! * **active**: materialized, in the LRU list that [`AgentTree::prune`] reads.
//! * **compressed**: materialized, its state held as one [`Token`] allocation, out of the LRU.
//!
//! `virtual -> active` by [`AgentTree::touch`], `active -> compressed` by
//! [`AgentTree::compress`], `compressed -> active` by [`AgentTree::restore`]; a token moved from
//! another tree is installed with [`AgentTree::load_token`]. The root (id 0) is always active and
//! never pruned. A failed call changes nothing.
//!
//! Each parent numbers its children 0, 1, 2… in creation order (a batch takes a block of
//! `branching` ordinals at once); the sequence of ordinals from the root is an agent's path, and
//! its first `dims` entries, each clamped to `2^bits - 1`, are the agent's Hilbert coordinate.

mod batch;
mod children;
mod lifecycle;
mod resolve;
mod table;
mod token;
mod types;

#[cfg(test)]
mod tests;

use rustc_hash::FxHashMap;

use crate::{Error, Result};
use batch::{Batch, Position};
use table::Table;

pub use batch::MAX_BATCH_DEPTH;
pub use children::{ChildCursor, Children};
pub use token::Token;
pub use types::{AgentInfo, BatchInfo, Status, TreeStats};

/// Id of the root agent.
pub const ROOT: u64 = 0;
/// Kind of a forgotten spawned record (never an interned kind: those count up from 0).
const FORGOTTEN: u32 = u32::MAX;
/// Kind of the root agent.
pub const ROOT_KIND: &str = "root";
/// Default number of Hilbert dimensions.
pub const DEFAULT_DIMS: u32 = 4;
/// Default bits per Hilbert dimension.
pub const DEFAULT_BITS: u32 = 32;

/// A spawned agent (not from a batch): always materialized, described by this record.
#[derive(Debug, Clone, Copy)]
struct Spawned {
    id: u64,
    parent: u64,
    ordinal: u64,
    kind: u32,
    depth: u32,
}

/// The children an agent was given by `spawn` and `batch_spawn`. Exists only for agents that
/// have such children.
#[derive(Debug, Default)]
struct Family {
    /// Ordinal of the next child; also the number of children ever given, batch-intrinsic ones
    /// included.
    next_ordinal: u64,
    /// Children forgotten since (ordinals are not reused).
    forgotten: u64,
    /// In ordinal order: the id of a spawned child, or the `first_id` of a batch (which stands
    /// for its `branching` level-1 nodes).
    entries: Vec<u64>,
}

/// Where an id is described.
#[derive(Debug, Clone, Copy)]
enum Place {
    Root,
    Spawned(usize),
    Batch(usize, Position),
}

/// Interned kind strings.
#[derive(Debug, Default)]
struct Kinds {
    names: Vec<Box<str>>,
    lookup: FxHashMap<Box<str>, u32>,
}

impl Kinds {
    fn intern(&mut self, kind: &str) -> Result<u32> {
        if let Some(&k) = self.lookup.get(kind) {
            return Ok(k);
        }
        if kind.is_empty() {
            return Err(Error::InvalidArgument {
                detail: "kind must not be empty".to_owned(),
            });
        }
        let k = u32::try_from(self.names.len()).map_err(|_| Error::InvalidArgument {
            detail: "too many distinct kinds".to_owned(),
        })?;
        self.names.push(kind.into());
        self.lookup.insert(kind.into(), k);
        Ok(k)
    }

    fn name(&self, k: u32) -> &str {
        &self.names[k as usize]
    }
}

/// The agent hierarchy. See the [module documentation](self).
pub struct AgentTree {
    dims: u32,
    bits: u32,
    /// The next id to hand out; every smaller id is an agent.
    next_id: u64,
    kinds: Kinds,
    /// Materialized agents, with the LRU list of the active ones.
    table: Table,
    active: u64,
    compressed: u64,
    /// Spawned agents, sorted by id (ids only grow); forgotten ones have kind `FORGOTTEN` until
    /// the next compaction drops them.
    spawned: Vec<Spawned>,
    /// Forgotten records still in `spawned`.
    tombstones: usize,
    /// Agents forgotten so far.
    forgotten: u64,
    /// Batches, sorted by `first_id`.
    batches: Vec<Batch>,
    families: FxHashMap<u64, Family>,
}

impl std::fmt::Debug for AgentTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTree")
            .field("dims", &self.dims)
            .field("bits", &self.bits)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for AgentTree {
    fn default() -> Self {
        Self::new(DEFAULT_DIMS, DEFAULT_BITS).expect("the default curve is valid")
    }
}

fn state_error(id: u64, status: Status, operation: &'static str) -> Error {
    Error::AgentState {
        id,
        state: status.as_str(),
        operation,
    }
}

impl AgentTree {
    /// A tree holding only the root, with a `dims`-dimensional Hilbert curve of `bits` bits per
    /// dimension (`1 <= bits <= 64`, `dims >= 1`, `dims * bits <= 128`).
    pub fn new(dims: u32, bits: u32) -> Result<Self> {
        if dims == 0 || bits == 0 || bits > 64 || u64::from(dims) * u64::from(bits) > 128 {
            return Err(Error::InvalidArgument {
                detail: format!(
                    "need dims >= 1, 1 <= bits <= 64 and dims * bits <= 128; got dims={dims}, \
                     bits={bits}"
                ),
            });
        }
        let mut kinds = Kinds::default();
        kinds.intern(ROOT_KIND)?;
        let mut table = Table::new();
        table.insert_active(ROOT, false);
        Ok(AgentTree {
            dims,
            bits,
            next_id: ROOT + 1,
            kinds,
            table,
            active: 1,
            compressed: 0,
            spawned: Vec::new(),
            tombstones: 0,
            forgotten: 0,
            batches: Vec::new(),
            families: FxHashMap::default(),
        })
    }

    /// Hilbert dimensions.
    pub fn dims(&self) -> u32 {
        self.dims
    }

    /// Bits per Hilbert dimension.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Number of agents (virtual and materialized), the root included.
    pub fn total(&self) -> u64 {
        self.next_id - self.forgotten
    }

    /// Whether `id` names an agent (a forgotten one does not).
    pub fn contains(&self, id: u64) -> bool {
        self.place(id).is_ok()
    }

    /// Counts of agents by status.
    pub fn stats(&self) -> TreeStats {
        let materialized = self.table.len() as u64;
        TreeStats {
            virtual_agents: self.next_id - self.forgotten - materialized,
            active: self.active,
            compressed: self.compressed,
            total: self.next_id - self.forgotten,
            materialized,
            batches: self.batches.len() as u64,
        }
    }

    // ----------------------------------------------------------------------------------------
    // Growing the tree

    /// Spawn a materialized, active agent of `kind` below `parent` (any agent, even a virtual
    /// one, which stays virtual). It becomes the most recently used.
    pub fn spawn(&mut self, parent: u64, kind: &str) -> Result<u64> {
        let depth = self.depth_of(self.place(parent)?);
        let depth = depth.checked_add(1).ok_or_else(|| Error::InvalidArgument {
            detail: "the tree is too deep".to_owned(),
        })?;
        let id = self.next_id;
        let next_id = id.checked_add(1).ok_or_else(ids_exhausted)?;
        if !self.table.has_room() {
            return Err(slots_exhausted());
        }
        let ordinal = self.next_ordinal(parent);
        let ordinal_after = ordinal
            .checked_add(1)
            .ok_or_else(|| ordinals_exhausted(parent))?;
        let kind = self.kinds.intern(kind)?;
        // Nothing can fail from here on.
        self.add_child(parent, id, ordinal_after);
        self.spawned.push(Spawned {
            id,
            parent,
            ordinal,
            kind,
            depth,
        });
        self.table.insert_active(id, true);
        self.active += 1;
        self.next_id = next_id;
        Ok(id)
    }

    /// Describe, without enumerating it, a full subtree below `parent`: `branching` children of
    /// `parent`, `branching` children of each of those, and so on for `depth` levels. Its nodes
    /// take the next `count` ids level by level and are all virtual. O(1) time and memory.
    pub fn batch_spawn(
        &mut self,
        parent: u64,
        kind: &str,
        depth: u32,
        branching: u64,
    ) -> Result<BatchInfo> {
        if depth == 0 || branching == 0 || depth > MAX_BATCH_DEPTH {
            return Err(Error::InvalidArgument {
                detail: format!(
                    "need 1 <= depth <= {MAX_BATCH_DEPTH} and branching >= 1; got depth={depth}, \
                     branching={branching}"
                ),
            });
        }
        let parent_depth = self.depth_of(self.place(parent)?);
        parent_depth
            .checked_add(depth)
            .ok_or_else(|| Error::InvalidArgument {
                detail: "the tree is too deep".to_owned(),
            })?;
        let (count, leaves) =
            batch::plan(depth, branching).ok_or_else(|| Error::InvalidArgument {
                detail: format!(
                    "a batch of depth {depth} and branching {branching} has more than 2^64 nodes"
                ),
            })?;
        let first_id = self.next_id;
        let next_id = first_id.checked_add(count).ok_or_else(ids_exhausted)?;
        let ordinal_base = self.next_ordinal(parent);
        let ordinal_after = ordinal_base
            .checked_add(branching)
            .ok_or_else(|| ordinals_exhausted(parent))?;
        let kind_id = self.kinds.intern(kind)?;
        // Nothing can fail from here on.
        self.add_child(parent, first_id, ordinal_after);
        self.batches.push(Batch {
            first_id,
            count,
            parent,
            ordinal_base,
            branching,
            depth,
            parent_depth,
            kind: kind_id,
        });
        self.next_id = next_id;
        Ok(BatchInfo {
            parent,
            kind: kind.to_owned(),
            depth,
            branching,
            first_id,
            count,
            leaf_first_id: next_id - leaves,
            leaves,
        })
    }

    /// Forget the compressed, childless spawned agent `id` for good: its token, its entry and
    /// its record go, its id is never handed out again and names no agent from then on
    /// (`UnknownAgent`). The caller keeps its state elsewhere (a store it reads back from).
    /// Costs O(1) amortized plus O(children of its parent) to drop it from their list.
    pub fn forget(&mut self, id: u64) -> Result<()> {
        let i = match self.place(id)? {
            Place::Spawned(i) => i,
            Place::Root => {
                return Err(state_error(id, Status::Active, "forget the root"));
            }
            Place::Batch(..) => {
                return Err(Error::InvalidArgument {
                    detail: format!(
                        "agent {id} is a batch node: only spawned agents are forgotten"
                    ),
                });
            }
        };
        let pos = match self.status(id)? {
            Status::Compressed => self.table.find(id).ok_or(Error::UnknownAgent { id })?,
            status => {
                return Err(state_error(id, status, "forget it (compress it first)"));
            }
        };
        if self
            .families
            .get(&id)
            .is_some_and(|f| !f.entries.is_empty())
        {
            return Err(Error::InvalidArgument {
                detail: format!("agent {id} has children: only a childless agent is forgotten"),
            });
        }
        // Nothing can fail from here on.
        self.table.remove(pos);
        self.compressed -= 1;
        self.families.remove(&id);
        let parent = self.spawned[i].parent;
        if let Some(family) = self.families.get_mut(&parent) {
            if let Ok(at) = family.entries.binary_search(&id) {
                family.entries.remove(at);
            }
            family.forgotten += 1;
        }
        self.spawned[i].kind = FORGOTTEN;
        self.tombstones += 1;
        self.forgotten += 1;
        if self.tombstones > 64 && self.tombstones * 2 > self.spawned.len() {
            self.spawned.retain(|s| s.kind != FORGOTTEN);
            self.tombstones = 0;
        }
        Ok(())
    }

    /// Ordinal the next child of `parent` gets.
    fn next_ordinal(&self, parent: u64) -> u64 {
        if let Some(family) = self.families.get(&parent) {
            family.next_ordinal
        } else {
            let block = self.intrinsic_children(parent);
            block.end - block.start
        }
    }

    /// Record a new child (a spawned id or a batch's `first_id`) of `parent`.
    fn add_child(&mut self, parent: u64, entry: u64, next_ordinal: u64) {
        let family = self.families.entry(parent).or_default();
        family.next_ordinal = next_ordinal;
        family.entries.push(entry);
    }
}

fn ids_exhausted() -> Error {
    Error::InvalidArgument {
        detail: "agent ids would run out (the id space is u64)".to_owned(),
    }
}

fn slots_exhausted() -> Error {
    Error::InvalidArgument {
        detail: format!(
            "too many materialized agents (the limit is {})",
            table::MAX_MATERIALIZED
        ),
    }
}

fn ordinals_exhausted(parent: u64) -> Error {
    Error::InvalidArgument {
        detail: format!("agent {parent} has too many children"),
    }
}
