//! Binding of the canonical bytes of a state change (`crate::canonical`).
//!
//! Reads the fields of a `SwarmEvent` (a `msgspec.Struct`) and of its `StateChange` by name,
//! borrowing their strings and bytes: nothing is copied but into the result.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::canonical::StateChangeEvent;

/// The canonical protobuf bytes of `event` (a `SwarmEvent` whose payload is a `StateChange`),
/// with the change's `hash` left out: what `state_hash` hashes after `prev_hash`.
#[pyfunction]
pub fn state_change_bytes<'py>(event: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let py = event.py();
    let change = event.getattr(intern!(py, "payload"))?;
    let get = |obj: &Bound<'py, PyAny>, name: &Bound<'py, PyString>| obj.getattr(name);
    let event_id = get(event, intern!(py, "event_id"))?;
    let trace_id = get(event, intern!(py, "trace_id"))?;
    let span_id = get(event, intern!(py, "span_id"))?;
    let agent_role = get(event, intern!(py, "agent_role"))?;
    let agent_id = get(event, intern!(py, "agent_id"))?;
    let causation_id = get(event, intern!(py, "causation_id"))?;
    let run_id = get(event, intern!(py, "run_id"))?;
    let target_type = get(&change, intern!(py, "target_type"))?;
    let target_resource = get(&change, intern!(py, "target_resource"))?;
    let content_type = get(&change, intern!(py, "content_type"))?;
    let prev_hash = get(&change, intern!(py, "prev_hash"))?;
    let data = get(&change, intern!(py, "data"))?;
    let fields = StateChangeEvent {
        event_id: text(&event_id)?,
        timestamp_ns: event.getattr(intern!(py, "timestamp_ns"))?.extract()?,
        trace_id: text(&trace_id)?,
        span_id: text(&span_id)?,
        agent_role: text(&agent_role)?,
        agent_id: text(&agent_id)?,
        schema_version: varint_value(&event.getattr(intern!(py, "schema_version"))?)?,
        sequence: varint_value(&event.getattr(intern!(py, "sequence"))?)?,
        causation_id: text(&causation_id)?,
        run_id: text(&run_id)?,
        target_type: text(&target_type)?,
        target_resource: text(&target_resource)?,
        prev_hash: raw(&prev_hash)?,
        data: raw(&data)?,
        is_reversible: change.getattr(intern!(py, "is_reversible"))?.is_truthy()?,
        form: varint_value(&change.getattr(intern!(py, "form"))?)?,
        content_type: text(&content_type)?,
    };
    Ok(PyBytes::new(py, &fields.encode()))
}

/// An int field's varint value: ``0..2**64`` as it is (a ``uint64``), a negative one as its
/// 64-bit two's complement (an ``int64``), what the generic encoder writes for either.
fn varint_value(obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    match obj.extract::<u64>() {
        Ok(value) => Ok(value),
        #[allow(clippy::cast_sign_loss)]
        Err(_) => Ok(obj.extract::<i64>()? as u64),
    }
}

fn text<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<&'a str> {
    obj.cast::<PyString>()?.to_str()
}

fn raw<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    Ok(obj.cast::<PyBytes>()?.as_bytes())
}
