//! The one place where core errors become Python exceptions.
//!
//! The exception classes are declared in Python (`swarm_actors/_exceptions.py`) so they can be
//! documented, subclassed and pickled like any Python class; this module imports them lazily.

use pyo3::prelude::*;

use crate::Error;

pyo3::import_exception!(swarm_actors._exceptions, FieldTypeError);
pyo3::import_exception!(swarm_actors._exceptions, ArityError);
pyo3::import_exception!(swarm_actors._exceptions, CapabilityError);
pyo3::import_exception!(swarm_actors._exceptions, UnknownAgentError);
pyo3::import_exception!(swarm_actors._exceptions, AgentStateError);
pyo3::import_exception!(swarm_actors._exceptions, CorruptStateError);
pyo3::import_exception!(swarm_actors._exceptions, CoordinateError);
pyo3::import_exception!(swarm_actors._exceptions, InvalidArgumentError);

/// Convert a core [`Error`] into the matching Python exception, attaching the structured
/// attributes documented in `_exceptions.py` (for example `agent_id` on agent errors).
pub fn to_pyerr(err: &Error) -> PyErr {
    let message = err.to_string();
    Python::attach(|py| {
        let (pyerr, attrs): (PyErr, Vec<(&str, Py<PyAny>)>) = match *err {
            Error::FieldType { position, .. } => (
                FieldTypeError::new_err(message),
                vec![(
                    "position",
                    position.into_pyobject(py).unwrap().into_any().unbind(),
                )],
            ),
            Error::Arity { .. } => (ArityError::new_err(message), vec![]),
            Error::Capability { operation, .. } => (
                CapabilityError::new_err(message),
                vec![(
                    "operation",
                    operation.into_pyobject(py).unwrap().into_any().unbind(),
                )],
            ),
            Error::UnknownAgent { id } => (
                UnknownAgentError::new_err(message),
                vec![(
                    "agent_id",
                    id.into_pyobject(py).unwrap().into_any().unbind(),
                )],
            ),
            Error::AgentState { id, state, .. } => (
                AgentStateError::new_err(message),
                vec![
                    (
                        "agent_id",
                        id.into_pyobject(py).unwrap().into_any().unbind(),
                    ),
                    (
                        "state",
                        state.into_pyobject(py).unwrap().into_any().unbind(),
                    ),
                ],
            ),
            Error::CorruptState { id, .. } => (
                CorruptStateError::new_err(message),
                vec![(
                    "agent_id",
                    id.into_pyobject(py).unwrap().into_any().unbind(),
                )],
            ),
            Error::Coordinate { .. } => (CoordinateError::new_err(message), vec![]),
            Error::InvalidArgument { .. } => (InvalidArgumentError::new_err(message), vec![]),
        };
        if !attrs.is_empty() {
            let value = pyerr.value(py);
            for (name, attr) in attrs {
                // Setting an attribute on a fresh exception instance cannot fail in practice;
                // if it somehow does, the exception is still raised with its message.
                let _ = value.setattr(name, attr);
            }
        }
        pyerr
    })
}

/// Extension trait so binding code can write `core_call().map_pyerr()?`.
pub trait MapPyErr<T> {
    fn map_pyerr(self) -> PyResult<T>;
}

impl<T> MapPyErr<T> for crate::Result<T> {
    fn map_pyerr(self) -> PyResult<T> {
        self.map_err(|e| to_pyerr(&e))
    }
}
