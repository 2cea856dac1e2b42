//! Plain values returned by the tree.

use std::fmt;
use std::ops::Range;

use crate::{Error, Result};

/// Life-cycle state of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// A batch node never materialized.
    Virtual,
    /// Materialized and in the LRU list (or the root).
    Active,
    /// Materialized, its state held as a token.
    Compressed,
}

impl Status {
    /// `"virtual"`, `"active"` or `"compressed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Virtual => "virtual",
            Status::Active => "active",
            Status::Compressed => "compressed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything about one agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentInfo {
    pub id: u64,
    /// `None` for the root.
    pub parent: Option<u64>,
    pub kind: String,
    /// The root is at depth 0.
    pub depth: u32,
    /// Child ordinals from the root down to this agent.
    pub path: Vec<u64>,
    /// Hilbert index of the path's first `dims` ordinals.
    pub hilbert: u128,
    pub status: Status,
}

/// What [`super::AgentTree::batch_spawn`] reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchInfo {
    pub parent: u64,
    pub kind: String,
    pub depth: u32,
    pub branching: u64,
    /// First id of level 1 (and of the batch).
    pub first_id: u64,
    /// Number of nodes in all levels.
    pub count: u64,
    /// First id of the last level.
    pub leaf_first_id: u64,
    /// Number of nodes in the last level (`branching^depth`).
    pub leaves: u64,
}

impl BatchInfo {
    /// Id range of `level` (`1..=depth`): level 1 holds the children of `parent`.
    pub fn level_range(&self, level: u32) -> Result<Range<u64>> {
        if level == 0 || level > self.depth {
            return Err(Error::InvalidArgument {
                detail: format!("level must be in 1..={}, got {level}", self.depth),
            });
        }
        let len = self.branching.pow(level);
        let start = self.first_id + (1..level).map(|l| self.branching.pow(l)).sum::<u64>();
        Ok(start..start + len)
    }
}

/// Agent counts by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TreeStats {
    /// Batch nodes never materialized.
    pub virtual_agents: u64,
    /// Active agents, the root included.
    pub active: u64,
    pub compressed: u64,
    /// All agents: `virtual_agents + materialized`.
    pub total: u64,
    /// `active + compressed`.
    pub materialized: u64,
    /// Number of `batch_spawn` calls that succeeded.
    pub batches: u64,
}
