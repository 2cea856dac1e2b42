//! PyO3 binding: the `swarm_actors._tuplecore` extension module.
//!
//! Primitives cross the boundary; defaults, async adaptation and logging live in Python.

mod convert;
mod errors;
mod space;

/// Rust core of swarm-actors: tuple space, Hilbert mapping and agent hierarchy.
#[pyo3::pymodule]
mod _tuplecore {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::space::{AnyType, Capability, SpaceStats, TupleSpace};

    // MERGE: hilbert exports
    // MERGE: tree exports

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        super::space::init_module(m)
    }
}
