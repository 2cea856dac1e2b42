//! Python binding of the agent hierarchy (`crate::tree`).
//!
//! The tree sits behind a `Mutex`; every method extracts its arguments first, holds the lock
//! only for the core call, and builds Python objects after releasing it. Encoding, validating or
//! decoding a state of `DETACH_BYTES` or more runs with the GIL released.

use std::sync::{Mutex, MutexGuard, PoisonError};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyList, PyRange, PyString, PyTuple};

use super::errors::{to_pyerr, MapPyErr};
use crate::tree::{self as core, ChildCursor, Token, MAX_BATCH_DEPTH};
use crate::Error;

/// States at least this long are encoded, validated and decoded with the GIL released.
const DETACH_BYTES: usize = 1 << 20;
/// Child ids fetched per lock by `ChildIterator`.
const CHILD_CHUNK: usize = 256;

fn invalid(detail: String) -> PyErr {
    to_pyerr(&Error::InvalidArgument { detail })
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// A non-negative int argument that fits in 64 bits (an agent id, a count, a depth…), with an
/// error naming the argument: `InvalidArgumentError` for a negative or too large int,
/// `TypeError` for anything that is not an int.
fn uint_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<u64> {
    match obj.extract::<u64>() {
        Ok(value) => Ok(value),
        Err(_) => Err(uint_error(obj, name)),
    }
}

#[cold]
fn uint_error(obj: &Bound<'_, PyAny>, name: &str) -> PyErr {
    match obj.extract::<i128>() {
        Ok(value) if value < 0 => invalid(format!("{name} must be >= 0, got {value}")),
        Ok(value) => invalid(format!("{name} must be < 2**64, got {value}")),
        Err(_) if obj.is_instance_of::<PyInt>() => {
            invalid(format!("{name} must be an int in 0..2**64, got {obj}"))
        }
        Err(_) => PyTypeError::new_err(format!("{name} must be an int, not {}", type_name(obj))),
    }
}

/// [`uint_arg`] for an argument that must also fit in 32 bits.
fn u32_arg(obj: &Bound<'_, PyAny>, name: &str, limit: u32) -> PyResult<u32> {
    let value = uint_arg(obj, name)?;
    u32::try_from(value).map_err(|_| invalid(format!("{name} must be <= {limit}, got {value}")))
}

fn py_repr(py: Python<'_>, s: &str) -> String {
    PyString::new(py, s)
        .repr()
        .map_or_else(|_| format!("{s:?}"), |r| r.to_string())
}

// ---------------------------------------------------------------------------------------------
// Value objects

/// Everything about one agent, as returned by ``AgentTree.info()``. Immutable; compares and
/// hashes by value.
#[pyclass(frozen, eq, hash, module = "swarm_actors.tree")]
#[derive(PartialEq, Eq, Hash)]
pub struct AgentInfo(core::AgentInfo);

#[pymethods]
impl AgentInfo {
    /// The agent's id.
    #[getter]
    fn id(&self) -> u64 {
        self.0.id
    }

    /// The parent's id, ``None`` for the root.
    #[getter]
    fn parent(&self) -> Option<u64> {
        self.0.parent
    }

    /// The agent's kind (``"root"`` for the root).
    #[getter]
    fn kind(&self) -> &str {
        &self.0.kind
    }

    /// Depth below the root (the root is at depth 0).
    #[getter]
    fn depth(&self) -> u32 {
        self.0.depth
    }

    /// Child ordinals from the root down to this agent (``()`` for the root).
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.path)
    }

    /// Hilbert index of the path's first ``dims`` ordinals (zero-padded, each clamped to
    /// ``2**bits - 1``).
    #[getter]
    fn hilbert(&self) -> u128 {
        self.0.hilbert
    }

    /// ``"virtual"``, ``"active"`` or ``"compressed"``, when ``info()`` was called.
    #[getter]
    fn status(&self) -> &'static str {
        self.0.status.as_str()
    }

    /// ``AgentInfo(id=…, parent=…, kind=…, depth=…, path=…, hilbert=…, status=…)``.
    fn __repr__(&self, py: Python<'_>) -> String {
        let i = &self.0;
        let parent = i
            .parent
            .map_or_else(|| "None".to_owned(), |p| p.to_string());
        let path = match i.path.as_slice() {
            [one] => format!("({one},)"),
            many => format!(
                "({})",
                many.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        format!(
            "AgentInfo(id={}, parent={parent}, kind={}, depth={}, path={path}, hilbert={}, \
             status='{}')",
            i.id,
            py_repr(py, &i.kind),
            i.depth,
            i.hilbert,
            i.status
        )
    }
}

/// What ``AgentTree.batch_spawn()`` reserved: a full subtree of ``depth`` levels with
/// ``branching`` children per node, numbered level by level from ``first_id``. Immutable;
/// compares and hashes by value.
#[pyclass(frozen, eq, hash, module = "swarm_actors.tree")]
#[derive(PartialEq, Eq, Hash)]
pub struct BatchInfo(core::BatchInfo);

#[pymethods]
impl BatchInfo {
    /// The agent the batch hangs below.
    #[getter]
    fn parent(&self) -> u64 {
        self.0.parent
    }

    /// Kind of every node of the batch.
    #[getter]
    fn kind(&self) -> &str {
        &self.0.kind
    }

    /// Number of levels.
    #[getter]
    fn depth(&self) -> u32 {
        self.0.depth
    }

    /// Children per node.
    #[getter]
    fn branching(&self) -> u64 {
        self.0.branching
    }

    /// First id of the batch (the first child of ``parent``).
    #[getter]
    fn first_id(&self) -> u64 {
        self.0.first_id
    }

    /// Number of nodes in all levels; the batch's ids are ``range(first_id, first_id + count)``.
    #[getter]
    fn count(&self) -> u64 {
        self.0.count
    }

    /// First id of the last level.
    #[getter]
    fn leaf_first_id(&self) -> u64 {
        self.0.leaf_first_id
    }

    /// Number of nodes in the last level (``branching ** depth``).
    #[getter]
    fn leaves(&self) -> u64 {
        self.0.leaves
    }

    /// The ids of ``level`` (1 to ``depth``; level 1 holds the children of ``parent``) as a
    /// ``range``. Raises ``InvalidArgumentError`` for a level outside ``1..depth``.
    fn level_range<'py>(
        &self,
        py: Python<'py>,
        level: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let level = u32_arg(level, "level", self.0.depth)?;
        let range = self.0.level_range(level).map_pyerr()?;
        py.get_type::<PyRange>().call1((range.start, range.end))
    }

    /// ``BatchInfo(parent=…, kind=…, depth=…, branching=…, first_id=…, count=…, …)``.
    fn __repr__(&self, py: Python<'_>) -> String {
        let b = &self.0;
        format!(
            "BatchInfo(parent={}, kind={}, depth={}, branching={}, first_id={}, count={}, \
             leaf_first_id={}, leaves={})",
            b.parent,
            py_repr(py, &b.kind),
            b.depth,
            b.branching,
            b.first_id,
            b.count,
            b.leaf_first_id,
            b.leaves
        )
    }
}

/// Agent counts of a tree, as returned by ``AgentTree.stats()``. Immutable; compares and
/// hashes by value.
#[pyclass(frozen, eq, hash, module = "swarm_actors.tree")]
#[derive(PartialEq, Eq, Hash)]
pub struct TreeStats(core::TreeStats);

#[pymethods]
impl TreeStats {
    /// Batch nodes never materialized.
    #[getter(r#virtual)]
    fn virtual_agents(&self) -> u64 {
        self.0.virtual_agents
    }

    /// Active agents, the root included.
    #[getter]
    fn active(&self) -> u64 {
        self.0.active
    }

    /// Compressed agents.
    #[getter]
    fn compressed(&self) -> u64 {
        self.0.compressed
    }

    /// All agents: ``virtual + materialized``.
    #[getter]
    fn total(&self) -> u64 {
        self.0.total
    }

    /// Agents held in memory: ``active + compressed``.
    #[getter]
    fn materialized(&self) -> u64 {
        self.0.materialized
    }

    /// Number of batches spawned.
    #[getter]
    fn batches(&self) -> u64 {
        self.0.batches
    }

    /// ``TreeStats(virtual=…, active=…, compressed=…, total=…, materialized=…, batches=…)``.
    fn __repr__(&self) -> String {
        let s = &self.0;
        format!(
            "TreeStats(virtual={}, active={}, compressed={}, total={}, materialized={}, \
             batches={})",
            s.virtual_agents, s.active, s.compressed, s.total, s.materialized, s.batches
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The tree

/// An agent hierarchy where a million agents cost almost nothing.
///
/// Ids are non-negative ints, handed out in order and never reused; the root is id 0 (kind
/// ``"root"``, always active). An agent is *virtual* (a node of a batch never touched: it costs
/// nothing), *active* (materialized, tracked for least-recently-used pruning) or *compressed*
/// (its state held as a compact, validated token). ``touch`` materializes and marks use,
/// ``prune`` names the agents to passivate, ``compress`` / ``restore`` passivate and revive
/// them, ``token`` / ``load_token`` move a compressed agent between trees.
///
/// Each parent numbers its children 0, 1, 2… in creation order; an agent's ``path`` is the list
/// of those ordinals from the root, and its Hilbert index is computed from the first ``dims``
/// of them on a curve of ``bits`` bits per dimension (``dims * bits <= 128``).
///
/// A refused call raises a subclass of ``AgentError`` or ``InvalidArgumentError`` and leaves the
/// tree unchanged.
#[pyclass(frozen, module = "swarm_actors.tree")]
pub struct AgentTree {
    inner: Mutex<core::AgentTree>,
}

impl AgentTree {
    fn lock(&self) -> MutexGuard<'_, core::AgentTree> {
        // Core operations validate before they mutate, so a panic cannot leave a half-made
        // change behind: the data behind a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl AgentTree {
    /// Create a tree holding only the root.
    ///
    /// ``dims`` (>= 1) and ``bits`` (1 to 64) shape the Hilbert curve used for ``info().hilbert``;
    /// ``dims * bits`` must not exceed 128.
    #[new]
    #[pyo3(signature = (*, dims = None, bits = None), text_signature = "(*, dims=4, bits=32)")]
    fn new(dims: Option<&Bound<'_, PyAny>>, bits: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let dims = dims.map_or(Ok(core::DEFAULT_DIMS), |d| u32_arg(d, "dims", 128))?;
        let bits = bits.map_or(Ok(core::DEFAULT_BITS), |b| u32_arg(b, "bits", 64))?;
        let tree = core::AgentTree::new(dims, bits).map_pyerr()?;
        Ok(AgentTree {
            inner: Mutex::new(tree),
        })
    }

    /// Id of the root agent (0).
    #[getter]
    #[allow(clippy::unused_self)] // a property, for symmetry with the other tree attributes
    fn root(&self) -> u64 {
        core::ROOT
    }

    /// Hilbert dimensions.
    #[getter]
    fn dims(&self) -> u32 {
        self.lock().dims()
    }

    /// Bits per Hilbert dimension.
    #[getter]
    fn bits(&self) -> u32 {
        self.lock().bits()
    }

    /// Spawn an active agent of ``kind`` (a non-empty string) below ``parent`` and return its
    /// id. The parent may be in any state and keeps it. The new agent is the most recently
    /// used.
    fn spawn(&self, parent: &Bound<'_, PyAny>, kind: &str) -> PyResult<u64> {
        let parent = uint_arg(parent, "parent")?;
        self.lock().spawn(parent, kind).map_pyerr()
    }

    /// Describe a full subtree below ``parent`` without creating it: ``branching`` children of
    /// ``parent``, ``branching`` children of each, for ``depth`` levels (1 to 64). Its nodes
    /// take the next ``count`` ids level by level and are all virtual. Constant time and
    /// memory, even for a billion leaves. Raises ``InvalidArgumentError`` for ``depth`` or
    /// ``branching`` 0, or when the subtree would exhaust the 64-bit id space.
    fn batch_spawn(
        &self,
        parent: &Bound<'_, PyAny>,
        kind: &str,
        depth: &Bound<'_, PyAny>,
        branching: &Bound<'_, PyAny>,
    ) -> PyResult<BatchInfo> {
        let parent = uint_arg(parent, "parent")?;
        let depth = u32_arg(depth, "depth", MAX_BATCH_DEPTH)?;
        let branching = uint_arg(branching, "branching")?;
        let info = self
            .lock()
            .batch_spawn(parent, kind, depth, branching)
            .map_pyerr()?;
        Ok(BatchInfo(info))
    }

    /// Everything about agent ``id`` (virtual ones are resolved by arithmetic, not
    /// materialized).
    fn info(&self, id: &Bound<'_, PyAny>) -> PyResult<AgentInfo> {
        let id = uint_arg(id, "id")?;
        let info = self.lock().info(id).map_pyerr()?;
        Ok(AgentInfo(info))
    }

    /// ``"virtual"``, ``"active"`` or ``"compressed"``.
    fn status(&self, id: &Bound<'_, PyAny>) -> PyResult<&'static str> {
        let id = uint_arg(id, "id")?;
        Ok(self.lock().status(id).map_pyerr()?.as_str())
    }

    /// Record a use of ``id`` in constant time: a virtual agent becomes active, an active one
    /// the most recently used. Raises ``AgentStateError`` for a compressed agent (restore it
    /// first).
    fn touch(&self, id: &Bound<'_, PyAny>) -> PyResult<()> {
        let id = uint_arg(id, "id")?;
        self.lock().touch(id).map_pyerr()
    }

    /// The least recently used active agents beyond ``max_active``, oldest first, for the
    /// caller to snapshot and ``compress``. Nothing changes. The root counts towards
    /// ``max_active`` but is never returned. Cost is proportional to the number returned.
    fn prune<'py>(
        &self,
        py: Python<'py>,
        max_active: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let max_active = uint_arg(max_active, "max_active")?;
        let ids = self.lock().prune(max_active);
        PyList::new(py, ids)
    }

    /// Compress the active agent ``id``, keeping ``state`` as a validated token (LZ4 when that
    /// shrinks a state of 128 bytes or more) and taking the agent out of the LRU order.
    fn compress(&self, py: Python<'_>, id: &Bound<'_, PyAny>, state: &[u8]) -> PyResult<()> {
        let id = uint_arg(id, "id")?;
        if state.len() < DETACH_BYTES {
            return self.lock().compress(id, state).map_pyerr();
        }
        self.lock().check_compress(id).map_pyerr()?;
        let token = py.detach(|| Token::encode(state)).map_pyerr()?;
        self.lock().compress_with(id, token).map_pyerr()
    }

    /// Restore the compressed agent ``id`` and return its state, byte-identical to what was
    /// compressed. It becomes active and the most recently used. Raises ``CorruptStateError``
    /// (the agent stays compressed) if the length or digest does not match.
    fn restore<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let id = uint_arg(id, "id")?;
        let large = self
            .lock()
            .token(id)
            .is_ok_and(|t| t.state_len() >= DETACH_BYTES);
        let state = if large {
            py.detach(|| self.lock().restore(id))
        } else {
            self.lock().restore(id)
        }
        .map_pyerr()?;
        Ok(PyBytes::new(py, &state))
    }

    /// Make ``id`` active and the most recently used, as an activation needs it, in one call:
    /// a compressed agent is restored and its state returned (as ``restore``), a virtual or
    /// active one is touched (as ``touch``) and ``None`` returned. Raises as they do
    /// (``CorruptStateError``: the agent stays compressed).
    fn activate<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let id = uint_arg(id, "id")?;
        let state = {
            let mut tree = self.lock();
            match tree.token(id).map(|t| t.state_len() >= DETACH_BYTES) {
                Err(_) => return tree.touch(id).map(|()| None).map_pyerr(),
                Ok(false) => tree.activate(id),
                Ok(true) => {
                    drop(tree);
                    py.detach(|| self.lock().activate(id))
                }
            }
        }
        .map_pyerr()?;
        Ok(state.map(|state| PyBytes::new(py, &state)))
    }

    /// The serialized token of the compressed agent ``id``: a versioned header, the xxh3-128
    /// digest and length of the state, and the payload. ``load_token`` on another tree makes
    /// the same id compressed with this state.
    fn token<'py>(&self, py: Python<'py>, id: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let id = uint_arg(id, "id")?;
        let bytes = self.lock().token(id).map_pyerr()?.as_bytes().to_vec();
        Ok(PyBytes::new(py, &bytes))
    }

    /// Validate ``token`` completely (header, lengths, decompression, digest) and make ``id``
    /// compressed with its state. ``id`` must be virtual or compressed (its token is replaced);
    /// an active agent must be compressed first. Raises ``CorruptStateError`` for invalid,
    /// truncated or altered bytes; nothing changes then.
    fn load_token(&self, py: Python<'_>, id: &Bound<'_, PyAny>, token: &[u8]) -> PyResult<()> {
        let id = uint_arg(id, "id")?;
        if token.len() < DETACH_BYTES {
            return self.lock().load_token(id, token).map_pyerr();
        }
        self.lock().check_load_token(id).map_pyerr()?;
        let token = py.detach(|| Token::parse(id, token)).map_pyerr()?;
        self.lock().load_parsed(id, token).map_pyerr()
    }

    /// Forget the compressed, childless spawned agent ``id`` for good: its token and its
    /// record are dropped, and its id names no agent from then on (``UnknownAgentError``; ids
    /// are never reused). For states kept elsewhere, read back on the next use. Raises
    /// ``AgentStateError`` unless it is compressed, ``InvalidArgumentError`` for a batch node
    /// or an agent with children.
    fn forget(&self, id: &Bound<'_, PyAny>) -> PyResult<()> {
        let id = uint_arg(id, "id")?;
        self.lock().forget(id).map_pyerr()
    }

    /// The ids of the children of ``id`` that exist now, in ordinal order, listed lazily: a
    /// batch node's own children, then spawned children and batch blocks. Nothing is
    /// materialized.
    fn children(slf: &Bound<'_, Self>, id: &Bound<'_, PyAny>) -> PyResult<ChildIterator> {
        let id = uint_arg(id, "id")?;
        let cursor = slf.get().lock().child_cursor(id).map_pyerr()?;
        Ok(ChildIterator {
            tree: slf.clone().unbind(),
            cursor,
            buffer: Vec::new(),
            next: 0,
        })
    }

    /// Number of children of ``id``.
    fn child_count(&self, id: &Bound<'_, PyAny>) -> PyResult<u64> {
        let id = uint_arg(id, "id")?;
        self.lock().child_count(id).map_pyerr()
    }

    /// Agent counts by status.
    fn stats(&self) -> TreeStats {
        TreeStats(self.lock().stats())
    }

    /// Number of agents, virtual ones included.
    fn __len__(&self) -> usize {
        // `usize` is 64 bits on every supported target; a count beyond `isize::MAX` makes
        // Python raise OverflowError, like any oversized `len()`.
        self.lock().total() as usize
    }

    /// Whether ``id`` is an agent of this tree (``False`` for anything but a non-negative int).
    fn __contains__(&self, id: &Bound<'_, PyAny>) -> bool {
        id.extract::<u64>().is_ok_and(|id| self.lock().contains(id))
    }

    /// ``<AgentTree dims=… bits=… total=… active=… compressed=… virtual=…>``.
    fn __repr__(&self) -> String {
        let (dims, bits, s) = {
            let tree = self.lock();
            (tree.dims(), tree.bits(), tree.stats())
        };
        format!(
            "<AgentTree dims={dims} bits={bits} total={} active={} compressed={} virtual={}>",
            s.total, s.active, s.compressed, s.virtual_agents
        )
    }
}

/// Lazy iterator over the children of an agent, from ``AgentTree.children()``. It covers the
/// children that existed when it was created and fetches their ids in small chunks.
#[pyclass(module = "swarm_actors._tuplecore")]
pub struct ChildIterator {
    tree: Py<AgentTree>,
    cursor: ChildCursor,
    buffer: Vec<u64>,
    next: usize,
}

#[pymethods]
impl ChildIterator {
    /// The iterator itself.
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next child id.
    fn __next__(&mut self) -> Option<u64> {
        if self.next == self.buffer.len() {
            self.buffer.clear();
            self.next = 0;
            let tree = self.tree.get().lock();
            self.cursor.fill(&tree, &mut self.buffer, CHILD_CHUNK);
        }
        let id = self.buffer.get(self.next).copied()?;
        self.next += 1;
        Some(id)
    }
}
