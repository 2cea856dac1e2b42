//! The `TupleSpace` Python class: synchronous operations, waiter hand-off and capabilities.
//!
//! The async `take` / `read` live in Python (`swarm_actors/_space.py`), which subclasses this
//! class: they register a future here with `_add_waiter`, and `out` completes it.
//!
//! Locking rule: the core sits behind a mutex that is never held while Python code can run
//! (object creation, future callbacks, the clock), so a thread switch inside the interpreter can
//! never deadlock against it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use rustc_hash::FxHashMap;

use super::convert::{
    stack_template_from_py, template_from_py, tuple_from_py, tuple_to_py, value_from_py,
    value_to_py,
};
use super::errors::MapPyErr;
use crate::space::{Capability as CoreCapability, Operation, Space, Stats, Tuple};
use crate::Error;

/// The type of `ANY`, the template wildcard that matches any field value.
#[pyclass(frozen, module = "swarm_actors.space", name = "AnyType")]
pub struct AnyType;

#[pymethods]
impl AnyType {
    fn __repr__(slf: &Bound<'_, Self>) -> &'static str {
        let _ = slf;
        "ANY"
    }

    /// Pickles as a reference to the module attribute, so unpickling gives the singleton.
    fn __reduce__(slf: &Bound<'_, Self>) -> &'static str {
        let _ = slf;
        "ANY"
    }
}

/// Adds the `ANY` singleton to the module (the class has no constructor, so there is one).
pub fn init_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ANY", Py::new(m.py(), AnyType)?)
}

struct State {
    space: Space,
    futures: FxHashMap<u64, Py<PyAny>>,
}

struct Shared {
    state: Mutex<State>,
    clock: Option<Py<PyAny>>,
    epoch: Instant,
    /// Set by the first leased `out`; until then no operation needs the time.
    leased: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn clock_now(&self, py: Python<'_>) -> PyResult<u64> {
        match &self.clock {
            None => Ok(self.epoch.elapsed().as_nanos() as u64),
            Some(clock) => {
                let t: f64 = clock.bind(py).call0()?.extract()?;
                if !t.is_finite() || t < 0.0 {
                    return Err::<u64, _>(Error::InvalidArgument {
                        detail: format!("clock returned {t}; it must return seconds >= 0"),
                    })
                    .map_pyerr();
                }
                Ok((t * 1e9) as u64)
            }
        }
    }

    /// The current time when any lease exists, else 0 (nothing can expire).
    fn now(&self, py: Python<'_>) -> PyResult<u64> {
        if self.leased.load(Ordering::Relaxed) {
            self.clock_now(py)
        } else {
            Ok(0)
        }
    }

    /// Write `fields` (whose Python form is `obj`) with a lease of `ttl_ns`, completing the
    /// futures of waiters it serves.
    fn out(
        &self,
        py: Python<'_>,
        fields: Tuple,
        obj: &Bound<'_, PyAny>,
        ttl_ns: Option<u64>,
    ) -> PyResult<()> {
        let now = if ttl_ns.is_some() {
            self.leased.store(true, Ordering::Relaxed);
            self.clock_now(py)?
        } else {
            self.now(py)?
        };
        let expires = ttl_ns.map(|t| now.saturating_add(t));
        self.offer(py, fields, obj, expires, now, false)
    }

    /// Give back a tuple a cancelled taker received, with the absolute expiry it was written
    /// with (the lease runs on; a lease that ran out meanwhile drops the tuple as expired).
    fn put_back(
        &self,
        py: Python<'_>,
        fields: Tuple,
        obj: &Bound<'_, PyAny>,
        expires: Option<u64>,
    ) -> PyResult<()> {
        let now = if expires.is_some() {
            self.clock_now(py)?
        } else {
            self.now(py)?
        };
        self.offer(py, fields, obj, expires, now, true)
    }

    /// Store `fields` or hand it to waiters: every matching reader gets the tuple, the oldest
    /// matching taker gets `(tuple, expires)` (so that it can put the tuple back with its
    /// lease if it was cancelled before it resumed).
    fn offer(
        &self,
        py: Python<'_>,
        mut fields: Tuple,
        obj: &Bound<'_, PyAny>,
        expires: Option<u64>,
        now: u64,
        back: bool,
    ) -> PyResult<()> {
        let mut as_tuple: Option<Bound<'_, PyAny>> = None;
        loop {
            let (readers, taker) = {
                let mut st = self.lock();
                let outcome = if back {
                    match st.space.put_back(fields, expires, now).map_pyerr()? {
                        Some(outcome) => outcome,
                        None => return Ok(()), // its lease ran out meanwhile
                    }
                } else {
                    st.space.out(fields, expires, now).map_pyerr()?
                };
                let readers: Vec<Py<PyAny>> = outcome
                    .readers
                    .iter()
                    .filter_map(|id| st.futures.remove(id))
                    .collect();
                let taker = outcome.taker.map(|(id, t)| (st.futures.remove(&id), t));
                (readers, taker)
            };
            if readers.is_empty() && taker.is_none() {
                return Ok(());
            }
            let value = if let Some(v) = &as_tuple {
                v.clone()
            } else {
                let v = if obj.is_exact_instance_of::<PyTuple>() {
                    obj.clone()
                } else {
                    PyTuple::new(py, obj.try_iter()?.collect::<PyResult<Vec<_>>>()?)?.into_any()
                };
                as_tuple = Some(v.clone());
                v
            };
            for fut in readers {
                complete(py, &fut, &value)?;
            }
            match taker {
                None => return Ok(()),
                Some((Some(fut), t)) => {
                    let handed = (value, expires).into_pyobject(py)?.into_any();
                    if complete(py, &fut, &handed)? {
                        return Ok(());
                    }
                    // That taker was cancelled before it could receive: offer the tuple again.
                    fields = t;
                }
                Some((None, t)) => fields = t,
            }
        }
    }
}

/// Set a waiter's result unless it is already done (cancelled). Returns whether it was set.
fn complete(py: Python<'_>, fut: &Py<PyAny>, value: &Bound<'_, PyAny>) -> PyResult<bool> {
    let fut = fut.bind(py);
    if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(false);
    }
    fut.call_method1(intern!(py, "set_result"), (value,))?;
    Ok(true)
}

/// Counters and sizes of a tuple space, as returned by `TupleSpace.stats()`.
#[pyclass(frozen, get_all, module = "swarm_actors.space", name = "SpaceStats")]
pub struct SpaceStats {
    /// Tuples currently stored.
    tuples: usize,
    /// Blocked takers and readers.
    waiters: usize,
    /// Tuples written, including those handed straight to a waiter.
    outs: u64,
    /// Tuples removed by a take, including hand-offs.
    takes: u64,
    /// Tuples returned by reads, including copies handed to waiting readers.
    reads: u64,
    /// Tuples handed straight to a waiting taker without being stored.
    handoffs: u64,
    /// Tuples reclaimed because their lease expired.
    expired: u64,
    /// Distinct signatures (arity and field types) seen.
    signatures: usize,
    /// Index keys currently held.
    postings: usize,
}

#[pymethods]
impl SpaceStats {
    fn __repr__(&self) -> String {
        format!(
            "SpaceStats(tuples={}, waiters={}, outs={}, takes={}, reads={}, handoffs={}, \
             expired={}, signatures={}, postings={})",
            self.tuples,
            self.waiters,
            self.outs,
            self.takes,
            self.reads,
            self.handoffs,
            self.expired,
            self.signatures,
            self.postings
        )
    }
}

impl From<Stats> for SpaceStats {
    fn from(s: Stats) -> Self {
        SpaceStats {
            tuples: s.tuples,
            waiters: s.waiters,
            outs: s.outs,
            takes: s.takes,
            reads: s.reads,
            handoffs: s.handoffs,
            expired: s.expired,
            signatures: s.signatures,
            postings: s.postings,
        }
    }
}

/// The rights of a restricted handle (see `TupleSpace.restrict`).
#[pyclass(frozen, module = "swarm_actors.space", name = "Capability")]
pub struct Capability(CoreCapability);

#[pymethods]
impl Capability {
    /// The lanes granted, or `None` when every lane is.
    #[getter]
    fn lanes<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.0
            .lanes()
            .map(|l| {
                PyTuple::new(
                    py,
                    l.iter()
                        .map(|v| value_to_py(py, v))
                        .collect::<PyResult<Vec<_>>>()?,
                )
            })
            .transpose()
    }

    /// Whether reads are granted.
    #[getter]
    fn read(&self) -> bool {
        self.0.allows(Operation::Read)
    }

    /// Whether takes are granted.
    #[getter]
    fn take(&self) -> bool {
        self.0.allows(Operation::Take)
    }

    /// Whether writes are granted.
    #[getter]
    fn write(&self) -> bool {
        self.0.allows(Operation::Write)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let lanes = match self.lanes(py)? {
            Some(t) => t.repr()?.to_string(),
            None => "None".to_owned(),
        };
        Ok(format!(
            "Capability(lanes={lanes}, read={}, take={}, write={})",
            py_bool(self.read()),
            py_bool(self.take()),
            py_bool(self.write())
        ))
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// A Linda tuple space owned by Rust (the synchronous core; use `swarm_actors.space.TupleSpace`).
#[pyclass(
    subclass,
    frozen,
    module = "swarm_actors._tuplecore",
    name = "TupleSpace"
)]
pub struct TupleSpace {
    shared: Arc<Shared>,
    cap: Option<CoreCapability>,
}

impl TupleSpace {
    fn check_tuple(&self, op: Operation, t: &Tuple) -> PyResult<()> {
        match &self.cap {
            Some(c) => c.check_tuple(op, t).map_pyerr(),
            None => Ok(()),
        }
    }

    fn check_template(&self, op: Operation, t: &[crate::space::Field]) -> PyResult<()> {
        match &self.cap {
            Some(c) => c.check_template(op, t).map_pyerr(),
            None => Ok(()),
        }
    }
}

fn ttl_to_ns(ttl: Option<f64>) -> PyResult<Option<u64>> {
    match ttl {
        None => Ok(None),
        Some(t) if t.is_finite() && t > 0.0 => Ok(Some(((t * 1e9) as u64).max(1))),
        Some(t) => Err::<Option<u64>, _>(Error::InvalidArgument {
            detail: format!("ttl must be a finite number of seconds > 0, got {t}"),
        })
        .map_pyerr(),
    }
}

fn limit_to_usize(limit: Option<i64>) -> PyResult<usize> {
    match limit {
        None => Ok(usize::MAX),
        Some(n) if n >= 0 => Ok(n as usize),
        Some(n) => Err::<usize, _>(Error::InvalidArgument {
            detail: format!("limit must be >= 0 or None, got {n}"),
        })
        .map_pyerr(),
    }
}

fn tuples_to_list<'py>(py: Python<'py>, ts: &[Tuple]) -> PyResult<Bound<'py, PyList>> {
    PyList::new(
        py,
        ts.iter()
            .map(|t| tuple_to_py(py, t))
            .collect::<PyResult<Vec<_>>>()?,
    )
}

#[pymethods]
impl TupleSpace {
    #[new]
    #[pyo3(signature = (*, clock=None, _share=None, _capability=None))]
    // The underscore marks the two keywords as private in Python's signature.
    #[allow(clippy::used_underscore_binding)]
    fn new(
        py: Python<'_>,
        clock: Option<Py<PyAny>>,
        _share: Option<&Bound<'_, TupleSpace>>,
        _capability: Option<&Bound<'_, Capability>>,
    ) -> PyResult<Self> {
        // `_share` / `_capability` are private: `restrict` passes them to build a handle of
        // the caller's (sub)class that shares this space.
        let (share, capability) = (_share, _capability);
        if let Some(parent) = share {
            if clock.is_some() {
                return Err(PyTypeError::new_err(
                    "a derived handle shares its parent's clock",
                ));
            }
            return Ok(TupleSpace {
                shared: parent.get().shared.clone(),
                cap: capability.map(|c| c.get().0.clone()),
            });
        }
        if let Some(c) = &clock {
            if !c.bind(py).is_callable() {
                return Err(PyTypeError::new_err(
                    "clock must be a callable returning seconds",
                ));
            }
        }
        Ok(TupleSpace {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    space: Space::new(),
                    futures: FxHashMap::default(),
                }),
                clock,
                epoch: Instant::now(),
                leased: AtomicBool::new(false),
            }),
            cap: None,
        })
    }

    /// Write `tuple`; with `ttl` (seconds) it expires and is reclaimed after that long.
    #[pyo3(signature = (tuple, *, ttl=None))]
    fn out(&self, py: Python<'_>, tuple: &Bound<'_, PyAny>, ttl: Option<f64>) -> PyResult<()> {
        let fields = tuple_from_py(tuple)?;
        self.check_tuple(Operation::Write, &fields)?;
        let ttl_ns = ttl_to_ns(ttl)?;
        self.shared.out(py, fields, tuple, ttl_ns)
    }

    /// Remove and return the oldest tuple matching `template`, or `None`.
    fn take_nowait<'py>(
        &self,
        py: Python<'py>,
        template: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let tpl = stack_template_from_py(template)?;
        self.check_template(Operation::Take, &tpl)?;
        let now = self.shared.now(py)?;
        let got = self.shared.lock().space.take(&tpl, now).map_pyerr()?;
        got.map(|t| tuple_to_py(py, &t)).transpose()
    }

    /// Return the oldest tuple matching `template` without removing it, or `None`.
    fn read_nowait<'py>(
        &self,
        py: Python<'py>,
        template: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let tpl = stack_template_from_py(template)?;
        self.check_template(Operation::Read, &tpl)?;
        let now = self.shared.now(py)?;
        let got = self.shared.lock().space.read(&tpl, now).map_pyerr()?;
        got.map(|t| tuple_to_py(py, &t)).transpose()
    }

    /// Remove and return up to `limit` matching tuples (all when `None`), oldest first.
    #[pyo3(signature = (template, *, limit=None))]
    fn take_all<'py>(
        &self,
        py: Python<'py>,
        template: &Bound<'py, PyAny>,
        limit: Option<i64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let tpl = stack_template_from_py(template)?;
        self.check_template(Operation::Take, &tpl)?;
        let limit = limit_to_usize(limit)?;
        let now = self.shared.now(py)?;
        let got = self
            .shared
            .lock()
            .space
            .take_all(&tpl, limit, now)
            .map_pyerr()?;
        tuples_to_list(py, &got)
    }

    /// Return up to `limit` matching tuples (all when `None`), oldest first, leaving them stored.
    #[pyo3(signature = (template, *, limit=None))]
    fn read_all<'py>(
        &self,
        py: Python<'py>,
        template: &Bound<'py, PyAny>,
        limit: Option<i64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let tpl = stack_template_from_py(template)?;
        self.check_template(Operation::Read, &tpl)?;
        let limit = limit_to_usize(limit)?;
        let now = self.shared.now(py)?;
        let got = self
            .shared
            .lock()
            .space
            .read_all(&tpl, limit, now)
            .map_pyerr()?;
        tuples_to_list(py, &got)
    }

    /// Number of stored tuples matching `template`.
    fn count(&self, py: Python<'_>, template: &Bound<'_, PyAny>) -> PyResult<usize> {
        let tpl = stack_template_from_py(template)?;
        self.check_template(Operation::Read, &tpl)?;
        let now = self.shared.now(py)?;
        self.shared.lock().space.count(&tpl, now).map_pyerr()
    }

    /// Number of stored (unexpired) tuples.
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        let now = self.shared.now(py)?;
        let mut st = self.shared.lock();
        if now > 0 {
            st.space.reap(now);
        }
        Ok(st.space.len())
    }

    /// Counters and sizes.
    fn stats(&self, py: Python<'_>) -> PyResult<SpaceStats> {
        let now = self.shared.now(py)?;
        let mut st = self.shared.lock();
        if now > 0 {
            st.space.reap(now);
        }
        Ok(st.space.stats().into())
    }

    /// The rights of this handle, or `None` when it is unrestricted.
    #[getter]
    fn capability(&self) -> Option<Capability> {
        self.cap.clone().map(Capability)
    }

    /// A handle on the same space limited to `lanes` (first fields; all when `None`) and the
    /// granted operations. Restricting a restricted handle can only narrow it.
    #[pyo3(signature = (*, lanes=None, read=true, take=true, write=true))]
    fn restrict<'py>(
        slf: &Bound<'py, Self>,
        lanes: Option<&Bound<'py, PyAny>>,
        read: bool,
        take: bool,
        write: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let lanes = match lanes {
            None => None,
            Some(l) => {
                if l.is_instance_of::<PyString>() || l.is_instance_of::<PyBytes>() {
                    return Err::<_, PyErr>(
                        Err::<(), _>(Error::InvalidArgument {
                            detail: "lanes must be a collection of lane values, not a single \
                                     str or bytes (write lanes=[\"jobs\"])"
                                .to_owned(),
                        })
                        .map_pyerr()
                        .unwrap_err(),
                    );
                }
                let mut v = Vec::new();
                for (i, x) in l.try_iter()?.enumerate() {
                    v.push(value_from_py(&x?, i)?);
                }
                Some(v)
            }
        };
        let cap = CoreCapability::new(lanes, read, take, write);
        let cap = match &slf.get().cap {
            Some(parent) => parent.narrow(&cap),
            None => cap,
        };
        let kwargs = PyDict::new(py);
        kwargs.set_item("_share", slf)?;
        kwargs.set_item("_capability", Py::new(py, Capability(cap))?)?;
        slf.get_type().call((), Some(&kwargs))
    }

    /// Register `future` as a waiter for `template`; `out` completes it: a reader's with the
    /// tuple, a taker's with `(tuple, expires)` (the lease's absolute expiry in the clock's
    /// nanoseconds, or `None`), which `_put_back` takes if the taker was cancelled. Internal:
    /// used by the async `take` / `read` after a `*_nowait` call found nothing.
    fn _add_waiter(
        &self,
        template: &Bound<'_, PyAny>,
        take: bool,
        future: Py<PyAny>,
    ) -> PyResult<u64> {
        let tpl = template_from_py(template)?;
        self.check_template(
            if take {
                Operation::Take
            } else {
                Operation::Read
            },
            &tpl,
        )?;
        let mut st = self.shared.lock();
        let id = st.space.add_waiter(tpl, take).map_pyerr()?;
        st.futures.insert(id, future);
        Ok(id)
    }

    /// Withdraw a waiter. Returns `False` when it was already served. Internal.
    fn _remove_waiter(&self, waiter_id: u64) -> bool {
        let (removed, fut) = {
            let mut st = self.shared.lock();
            (
                st.space.remove_waiter(waiter_id),
                st.futures.remove(&waiter_id),
            )
        };
        drop(fut); // outside the lock: dropping may run Python code
        removed
    }

    /// Return a tuple taken by a waiter that was cancelled before it could use it, with the
    /// expiry its taker received alongside it (`None`: no lease), so that its lease runs on.
    /// Bypasses the capability check (the tuple was in the space a moment ago). Internal.
    fn _put_back(
        &self,
        py: Python<'_>,
        tuple: &Bound<'_, PyAny>,
        expires: Option<u64>,
    ) -> PyResult<()> {
        let fields = tuple_from_py(tuple)?;
        self.shared.put_back(py, fields, tuple, expires)
    }

    fn __repr__(&self) -> String {
        let st = self.shared.lock();
        format!(
            "<TupleSpace tuples={} waiters={} restricted={}>",
            st.space.len(),
            st.space.stats().waiters,
            py_bool(self.cap.is_some())
        )
    }
}
