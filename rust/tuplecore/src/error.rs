//! The one error type of the crate.
//!
//! Every fallible operation returns [`Error`]. The Python binding maps each variant to one
//! exception class in a single function (`python::errors::to_pyerr`), so the Rust side never
//! builds Python exceptions itself.

use std::fmt;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the core. Each variant carries enough context for a message
/// a user can act on; none of them leaves a data structure half-modified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A tuple field or template position holds a type the space cannot store or match.
    FieldType { position: usize, detail: String },
    /// A tuple, template or point has the wrong number of fields.
    Arity { detail: String },
    /// A restricted handle attempted an operation its capability does not grant.
    Capability {
        operation: &'static str,
        detail: String,
    },
    /// No agent with this id exists (neither materialized nor inside a batch).
    UnknownAgent { id: u64 },
    /// The agent exists but is in the wrong state for the operation.
    AgentState {
        id: u64,
        state: &'static str,
        operation: &'static str,
    },
    /// Compressed state bytes failed validation (bad header, digest mismatch, truncation).
    CorruptState { id: u64, detail: String },
    /// A Hilbert coordinate, index or parameter is outside the curve's domain.
    Coordinate { detail: String },
    /// An argument is out of its documented range (e.g. `depth == 0`).
    InvalidArgument { detail: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::FieldType { position, detail } => write!(f, "field {position}: {detail}"),
            Error::Arity { detail }
            | Error::Coordinate { detail }
            | Error::InvalidArgument { detail } => f.write_str(detail),
            Error::Capability { operation, detail } => {
                write!(f, "capability does not allow {operation}: {detail}")
            }
            Error::UnknownAgent { id } => write!(f, "unknown agent id {id}"),
            Error::AgentState {
                id,
                state,
                operation,
            } => {
                write!(f, "agent {id} is {state}; cannot {operation}")
            }
            Error::CorruptState { id, detail } => {
                write!(f, "corrupted state for agent {id}: {detail}")
            }
        }
    }
}

impl std::error::Error for Error {}
