//! Conversions between Python objects and tuple-space values.
//!
//! Exact builtin types are checked first (pointer comparisons), subclasses after, so the common
//! case costs a few comparisons per field.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};

use smallvec::SmallVec;

use super::errors::MapPyErr;
use super::space::AnyType;
use crate::space::{Bytes, Field, Template, Tuple, TypeTag, Value, MAX_ARITY};
use crate::Error;

const SUPPORTED: &str = "supported field types are int, float, str, bytes, bool and None";

fn field_error(position: usize, detail: String) -> PyErr {
    Err::<(), _>(Error::FieldType { position, detail })
        .map_pyerr()
        .unwrap_err()
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// Convert one field value. `position` is only used for error messages.
pub fn value_from_py(obj: &Bound<'_, PyAny>, position: usize) -> PyResult<Value> {
    if obj.is_exact_instance_of::<PyString>() {
        return Ok(Value::Str(obj.cast::<PyString>()?.to_str()?.into()));
    }
    if obj.is_exact_instance_of::<PyBool>() {
        return Ok(Value::Bool(obj.cast::<PyBool>()?.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Int(i));
        }
        // Outside i64: keep the canonical decimal text of the plain int value (an IntEnum's
        // str() would be its name, so go through int() first).
        let plain = obj.py().get_type::<PyInt>().call1((obj,))?;
        return Ok(Value::BigInt(plain.str()?.to_str()?.into()));
    }
    if obj.is_none() {
        return Ok(Value::None);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Bytes(Bytes::from(b.as_bytes())));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::Str(s.to_str()?.into()));
    }
    if obj.is_exact_instance_of::<AnyType>() {
        return Err(field_error(
            position,
            "ANY is only allowed in templates".to_owned(),
        ));
    }
    if obj.is_instance_of::<PyType>() {
        return Err(field_error(
            position,
            format!(
                "a type ({}) is only allowed in templates, as a formal",
                obj_repr(obj)
            ),
        ));
    }
    Err(field_error(
        position,
        format!("unsupported field type '{}'; {SUPPORTED}", type_name(obj)),
    ))
}

fn obj_repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr()
        .map_or_else(|_| "?".to_owned(), |r| r.to_string())
}

fn formal_tag(obj: &Bound<'_, PyAny>) -> Option<TypeTag> {
    let py = obj.py();
    if obj.is(py.get_type::<PyString>()) {
        Some(TypeTag::Str)
    } else if obj.is(py.get_type::<PyInt>()) {
        Some(TypeTag::Int)
    } else if obj.is(py.get_type::<PyFloat>()) {
        Some(TypeTag::Float)
    } else if obj.is(py.get_type::<PyBytes>()) {
        Some(TypeTag::Bytes)
    } else if obj.is(py.get_type::<PyBool>()) {
        Some(TypeTag::Bool)
    } else if obj.is(py.None().bind(py).get_type()) {
        Some(TypeTag::None)
    } else {
        None
    }
}

/// Convert one template position: `ANY`, a type formal, or an actual value.
pub fn field_from_py(obj: &Bound<'_, PyAny>, position: usize) -> PyResult<Field> {
    if obj.is_exact_instance_of::<AnyType>() {
        return Ok(Field::Any);
    }
    if obj.is_instance_of::<PyType>() {
        return formal_tag(obj).map(Field::Formal).ok_or_else(|| {
            field_error(
                position,
                format!(
                    "unsupported formal {}; formals are int, float, str, bytes, bool and NoneType",
                    obj_repr(obj)
                ),
            )
        });
    }
    value_from_py(obj, position).map(Field::Actual)
}

fn check_len(n: usize, what: &str) -> PyResult<()> {
    if n == 0 {
        return Err::<(), _>(Error::Arity {
            detail: format!("a {what} needs at least one field"),
        })
        .map_pyerr();
    }
    if n > MAX_ARITY {
        return Err::<(), _>(Error::Arity {
            detail: format!("a {what} has at most {MAX_ARITY} fields, got {n}"),
        })
        .map_pyerr();
    }
    Ok(())
}

fn convert_seq<T, C: FromIterator<T>>(
    obj: &Bound<'_, PyAny>,
    what: &str,
    f: impl Fn(&Bound<'_, PyAny>, usize) -> PyResult<T>,
) -> PyResult<C> {
    if let Ok(t) = obj.cast::<PyTuple>() {
        check_len(t.len(), what)?;
        return t.iter().enumerate().map(|(i, x)| f(&x, i)).collect();
    }
    if let Ok(l) = obj.cast::<PyList>() {
        check_len(l.len(), what)?;
        return l.iter().enumerate().map(|(i, x)| f(&x, i)).collect();
    }
    Err(PyTypeError::new_err(format!(
        "a {what} must be a tuple or list, not '{}'",
        type_name(obj)
    )))
}

/// Convert a tuple (or list) of field values.
pub fn tuple_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Tuple> {
    convert_seq(obj, "tuple", value_from_py)
}

/// Convert a template (tuple or list of actual values, formals and `ANY`).
pub fn template_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Template> {
    convert_seq(obj, "template", field_from_py)
}

/// A template for a single operation: up to four fields live on the stack.
pub type StackTemplate = SmallVec<[Field; 4]>;

/// Convert a template for one `take` / `read` / `count` without a heap allocation.
pub fn stack_template_from_py(obj: &Bound<'_, PyAny>) -> PyResult<StackTemplate> {
    convert_seq(obj, "template", field_from_py)
}

/// Convert a value back to a Python object of its builtin type.
pub fn value_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::None => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::BigInt(s) => py.get_type::<PyInt>().call1((&**s,))?,
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::Str(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b.as_slice()).into_any(),
    })
}

/// Convert a stored tuple back to a Python tuple.
pub fn tuple_to_py<'py>(py: Python<'py>, t: &[Value]) -> PyResult<Bound<'py, PyTuple>> {
    let items = t
        .iter()
        .map(|v| value_to_py(py, v))
        .collect::<PyResult<Vec<_>>>()?;
    PyTuple::new(py, items)
}
