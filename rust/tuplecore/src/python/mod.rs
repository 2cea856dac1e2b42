//! `PyO3` binding: the `swarm_actors._tuplecore` extension module.
//!
//! Primitives cross the boundary; defaults, async adaptation and logging live in Python.

mod canonical;
mod convert;
mod errors;
mod hilbert;
mod space;
mod tree;

/// Rust core of swarm-actors: tuple space, Hilbert mapping and agent hierarchy.
#[pyo3::pymodule]
mod _tuplecore {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::space::{AnyType, Capability, SpaceStats, TupleSpace};

    #[pymodule_export]
    use super::hilbert::{
        hilbert_decode, hilbert_decode_batch, hilbert_encode, hilbert_encode_batch,
    };

    #[pymodule_export]
    use super::tree::{AgentInfo, AgentTree, BatchInfo, TreeStats};

    #[pymodule_export]
    use super::canonical::state_change_bytes;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        super::space::init_module(m)
    }
}
