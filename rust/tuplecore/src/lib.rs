//! `tuplecore`: the Rust core of swarm-actors.
//!
//! * [`space`]: a Linda tuple space with a FIFO-exact index, leases and waiter hand-off.
//! * [`hilbert`]: n-dimensional Hilbert encode/decode (Skilling's transpose algorithm).
//! * [`tree`]: a lazily described agent hierarchy with LRU pruning and compress tokens.
//! * [`canonical`]: the canonical bytes of a state change, which its hash is taken over.
//!
//! The crate is plain Rust; the `PyO3` binding lives in `python` behind the `python` feature so
//! `cargo test` and `cargo bench` need no interpreter.

pub mod canonical;
pub mod error;
pub mod hilbert;
pub mod space;
pub mod tree;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
