//! Binding of the Hilbert mapping: `hilbert_encode`, `hilbert_decode` and their batch forms.
//!
//! Python ints are converted here (refusing `bool`, negative and non-integer values with the
//! position of the offending value); the curve itself is `crate::hilbert`. Batches are first
//! converted to a flat `Vec<u64>`, then encoded or decoded with the GIL released when large.
//!
//! `dims == 1` is the identity curve; unlike the Rust API (whose coordinates are `u64`) the
//! binding accepts it with `bits` up to 128, so the whole domain `dims * bits <= 128` is usable.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyList, PyTuple};

use super::errors::MapPyErr;
use crate::{hilbert, Error};

/// Batches of at least this many points are encoded / decoded with the GIL released.
const DETACH_MIN_POINTS: usize = 4096;

fn coordinate_error(detail: String) -> Error {
    Error::Coordinate { detail }
}

fn arity_error(detail: String) -> Error {
    Error::Arity { detail }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "object".to_owned(), |name| name.to_string())
}

/// `obj` as a `u64` if it is an int (or has `__index__`), not a bool, and in `0..2^64`.
#[inline]
fn as_u64(obj: &Bound<'_, PyAny>) -> Option<u64> {
    if obj.is_exact_instance_of::<PyInt>() {
        return obj.extract().ok();
    }
    if obj.is_instance_of::<PyBool>() {
        return None;
    }
    obj.extract().ok()
}

/// `obj` as a `u128` under the same rules as [`as_u64`].
fn as_u128(obj: &Bound<'_, PyAny>) -> Option<u128> {
    if obj.is_instance_of::<PyBool>() {
        return None;
    }
    as_u64(obj).map(u128::from).or_else(|| obj.extract().ok())
}

/// The error for a value that [`as_u64`] / [`as_u128`] refused. `what` names the value
/// ("coordinate 2", "point 4, coordinate 0", "index 7"); `range` completes
/// "... is out of range" for a non-negative int too large to convert.
fn bad_int(obj: &Bound<'_, PyAny>, what: &str, range: &str) -> Error {
    if obj.is_instance_of::<PyBool>() {
        return coordinate_error(format!("{what} is a bool, not an int"));
    }
    let index = obj
        .py()
        .import("operator")
        .and_then(|m| m.getattr("index")?.call1((obj,)));
    match index {
        Ok(value) if value.lt(0).unwrap_or(false) => {
            coordinate_error(format!("{what} = {value} is negative"))
        }
        Ok(value) => coordinate_error(format!("{what} = {value} is out of range{range}")),
        Err(_) => coordinate_error(format!(
            "{what} must be an int, got {} {}",
            type_name(obj),
            obj.repr()
                .map_or_else(|_| "?".to_owned(), |r| r.to_string())
        )),
    }
}

/// A `bits` or `dims` argument: an int in `0..2^32` (the range itself is checked by the core).
fn small_int_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<u32> {
    as_u64(obj)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            let shown = obj
                .repr()
                .map_or_else(|_| "?".to_owned(), |r| r.to_string());
            coordinate_error(format!(
                "{name} must be an int between 1 and {}, got {shown}",
                max_of(name)
            ))
        })
        .map_pyerr()
}

fn max_of(name: &str) -> &'static str {
    if name == "bits" {
        "64 (128 when dims = 1)"
    } else {
        "128"
    }
}

fn index_to_py(py: Python<'_>, index: u128) -> Bound<'_, PyInt> {
    match u64::try_from(index) {
        Ok(small) => small
            .into_pyobject(py)
            .unwrap_or_else(|never| match never {}),
        Err(_) => index
            .into_pyobject(py)
            .unwrap_or_else(|never| match never {}),
    }
}

fn power_text(bits: u32) -> String {
    format!(": must be < {}", hilbert::limit_text(bits))
}

/// The items of one point: exact tuples and lists are read directly, any other iterable is
/// iterated. A non-iterable point is an `ArityError`.
fn point_items<'py>(point: &Bound<'py, PyAny>, what: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if let Ok(tuple) = point.cast_exact::<PyTuple>() {
        return Ok(tuple.iter().collect());
    }
    if let Ok(list) = point.cast_exact::<PyList>() {
        return Ok(list.iter().collect());
    }
    match point.try_iter() {
        Ok(items) => items.collect(),
        Err(_) => Err(arity_error(format!(
            "{what} must be a sequence of ints, got {}",
            type_name(point)
        )))
        .map_pyerr(),
    }
}

/// Return the Hilbert index of one point.
///
/// ``point`` is a sequence of ``dims`` non-negative ints, each ``< 2**bits``; ``dims`` is
/// ``len(point)``. The index is an int in ``range(2**(dims * bits))``. Requires
/// ``1 <= bits <= 64`` and ``dims * bits <= 128``; with ``dims == 1`` the curve is the identity
/// and ``bits`` may go up to 128.
///
/// Raises ``CoordinateError`` for a value outside the domain (negative, too large, a bool or
/// not an int, or bad ``bits``) and ``ArityError`` if ``point`` is not a sequence.
#[pyfunction]
pub fn hilbert_encode<'py>(
    py: Python<'py>,
    point: &Bound<'py, PyAny>,
    bits: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyInt>> {
    let bits = small_int_arg(bits, "bits")?;
    let items = point_items(point, "point")?;
    if let [item] = items.as_slice() {
        let value = as_u128(item)
            .ok_or_else(|| bad_int(item, "coordinate 0", &power_text(bits)))
            .map_pyerr()?;
        return Ok(index_to_py(
            py,
            hilbert::encode_1d(value, bits).map_pyerr()?,
        ));
    }
    hilbert::check_params(items.len(), bits).map_pyerr()?;
    let coordinates = items
        .iter()
        .enumerate()
        .map(|(j, item)| {
            as_u64(item)
                .ok_or_else(|| bad_int(item, &format!("coordinate {j}"), &power_text(bits)))
                .map_pyerr()
        })
        .collect::<PyResult<Vec<u64>>>()?;
    Ok(index_to_py(
        py,
        hilbert::encode(&coordinates, bits).map_pyerr()?,
    ))
}

/// Return the point at a Hilbert index, as a tuple of ``dims`` ints.
///
/// ``index`` must be an int in ``range(2**(dims * bits))``. Requires ``dims >= 1``,
/// ``1 <= bits <= 64`` and ``dims * bits <= 128``; with ``dims == 1`` the curve is the identity
/// and ``bits`` may go up to 128. Inverse of ``hilbert_encode``.
///
/// Raises ``CoordinateError`` for an index, ``dims`` or ``bits`` outside the domain.
#[pyfunction]
pub fn hilbert_decode<'py>(
    py: Python<'py>,
    index: &Bound<'py, PyAny>,
    dims: &Bound<'py, PyAny>,
    bits: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyTuple>> {
    let dims = small_int_arg(dims, "dims")? as usize;
    let bits = small_int_arg(bits, "bits")?;
    if dims == 1 {
        let value = as_u128(index)
            .ok_or_else(|| bad_int(index, "index", &power_text(bits)))
            .map_pyerr()?;
        let value = hilbert::decode_1d(value, bits).map_pyerr()?;
        return PyTuple::new(py, [index_to_py(py, value)]);
    }
    hilbert::check_params(dims, bits).map_pyerr()?;
    let range = index_range_text(dims, bits);
    let value = as_u128(index)
        .ok_or_else(|| bad_int(index, "index", &range))
        .map_pyerr()?;
    PyTuple::new(py, hilbert::decode(value, dims, bits).map_pyerr()?)
}

fn index_range_text(dims: usize, bits: u32) -> String {
    let total = dims as u32 * bits;
    format!(
        " for dims = {dims}, bits = {bits}: must be < {}",
        hilbert::limit_text(total)
    )
}

/// The rows of a batch, converted while they are read.
struct Points {
    bits: u32,
    dims: usize,
    /// Number of rows, when the container knows it (used to size `flat` once).
    rows_hint: Option<usize>,
    /// Coordinates of every point, row-major (`dims >= 2`).
    flat: Vec<u64>,
    /// The single coordinate of every point (`dims == 1`, up to 128 bits).
    wide: Vec<u128>,
}

impl Points {
    fn push_row(&mut self, i: usize, row: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(tuple) = row.cast_exact::<PyTuple>() {
            self.start_row(i, tuple.len())?;
            for (j, item) in tuple.iter_borrowed().enumerate() {
                self.push(i, j, &item)?;
            }
        } else if let Ok(list) = row.cast_exact::<PyList>() {
            self.start_row(i, list.len())?;
            for (j, item) in list.iter().enumerate() {
                self.push(i, j, &item)?;
            }
        } else {
            let items = point_items(row, &format!("point {i}"))?;
            self.start_row(i, items.len())?;
            for (j, item) in items.iter().enumerate() {
                self.push(i, j, item)?;
            }
        }
        // A list mutated while being read (through `__index__`) could change length.
        if self.flat.len() + self.wide.len() != (i + 1) * self.dims {
            return Err(arity_error(format!(
                "point {i} changed length while being read"
            )))
            .map_pyerr();
        }
        Ok(())
    }

    fn start_row(&mut self, i: usize, len: usize) -> PyResult<()> {
        if i == 0 {
            self.dims = len;
            if len == 1 {
                hilbert::encode_1d(0, self.bits).map_pyerr()?;
            } else {
                hilbert::check_params(len, self.bits).map_pyerr()?;
                self.flat
                    .reserve(self.rows_hint.unwrap_or(0).saturating_mul(len));
            }
        } else if len != self.dims {
            return Err(arity_error(format!(
                "point {i} has {len} coordinates, but point 0 has {}; all points of a batch \
                 must have the same dims",
                self.dims
            )))
            .map_pyerr();
        }
        Ok(())
    }

    #[inline]
    fn push(&mut self, i: usize, j: usize, item: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.dims == 1 {
            let value = as_u128(item).and_then(|v| hilbert::encode_1d(v, self.bits).ok());
            match value {
                Some(value) => self.wide.push(value),
                None => return Err(self.bad(i, j, item)).map_pyerr(),
            }
        } else {
            match as_u64(item) {
                Some(value) => self.flat.push(value),
                None => return Err(self.bad(i, j, item)).map_pyerr(),
            }
        }
        Ok(())
    }

    #[cold]
    fn bad(&self, i: usize, j: usize, item: &Bound<'_, PyAny>) -> Error {
        bad_int(
            item,
            &format!("point {i}, coordinate {j}"),
            &power_text(self.bits),
        )
    }
}

/// Call `f(position, item)` for every item of `items`: exact lists and tuples are read
/// directly, anything else is iterated.
fn for_each_item<'py>(
    items: &Bound<'py, PyAny>,
    what: &str,
    mut f: impl FnMut(usize, &Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    if let Ok(list) = items.cast_exact::<PyList>() {
        for (i, item) in list.iter().enumerate() {
            f(i, &item)?;
        }
    } else if let Ok(tuple) = items.cast_exact::<PyTuple>() {
        for (i, item) in tuple.iter_borrowed().enumerate() {
            f(i, &item)?;
        }
    } else {
        let iter = items
            .try_iter()
            .map_err(|_| {
                arity_error(format!(
                    "{what} must be an iterable, got {}",
                    type_name(items)
                ))
            })
            .map_pyerr()?;
        for (i, item) in iter.enumerate() {
            f(i, &item?)?;
        }
    }
    Ok(())
}

/// Run `f` with the GIL released when the batch is large enough to be worth it.
fn maybe_detach<T: Send>(py: Python<'_>, points: usize, f: impl FnOnce() -> T + Send) -> T {
    if points >= DETACH_MIN_POINTS {
        py.detach(f)
    } else {
        f()
    }
}

/// Bits check for an empty batch, whose dims is unknown: accept anything some dims allows.
fn check_bits_alone(bits: u32) -> PyResult<()> {
    if bits == 0 || bits > hilbert::MAX_INDEX_BITS {
        return Err(coordinate_error(format!(
            "bits must be between 1 and 64 (128 when dims = 1), got {bits}"
        )))
        .map_pyerr();
    }
    Ok(())
}

/// Return the Hilbert indices of many points, as a list of ints (one per point, in order).
///
/// ``points`` is an iterable of sequences of non-negative ints; all must have the same length
/// ``dims``. Same domain as ``hilbert_encode``. Lists of tuples (or lists) are read fastest;
/// the curve is computed with the GIL released for large batches.
///
/// Raises ``ArityError`` naming the first point whose length differs from the first point's
/// (or that is not a sequence), and ``CoordinateError`` naming the point and coordinate of the
/// first value outside the domain.
#[pyfunction]
pub fn hilbert_encode_batch<'py>(
    py: Python<'py>,
    points: &Bound<'py, PyAny>,
    bits: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let bits = small_int_arg(bits, "bits")?;
    let mut rows = Points {
        bits,
        dims: 0,
        rows_hint: points.len().ok(),
        flat: Vec::new(),
        wide: Vec::new(),
    };
    for_each_item(points, "points", |i, row| rows.push_row(i, row))?;
    let Points {
        dims, flat, wide, ..
    } = rows;
    if dims == 0 {
        check_bits_alone(bits)?;
        return Ok(PyList::empty(py));
    }
    if dims == 1 {
        return PyList::new(py, wide.into_iter().map(|v| index_to_py(py, v)));
    }
    let count = flat.len() / dims;
    if dims as u32 * bits <= 64 {
        let mut out = Vec::new();
        maybe_detach(py, count, || {
            hilbert::encode_batch_u64(&flat, dims, bits, &mut out)
        })
        .map_pyerr()?;
        PyList::new(py, out)
    } else {
        let mut out = Vec::new();
        maybe_detach(py, count, || {
            hilbert::encode_batch(&flat, dims, bits, &mut out)
        })
        .map_pyerr()?;
        PyList::new(py, out.into_iter().map(|v| index_to_py(py, v)))
    }
}

/// Return the points at many Hilbert indices, as a list of tuples of ``dims`` ints.
///
/// ``indices`` is an iterable of ints, each in ``range(2**(dims * bits))``. Same domain as
/// ``hilbert_decode``, of which this is the batch form; the curve is computed with the GIL
/// released for large batches.
///
/// Raises ``CoordinateError`` naming the position of the first index outside the domain, or
/// for bad ``dims`` / ``bits``.
#[pyfunction]
pub fn hilbert_decode_batch<'py>(
    py: Python<'py>,
    indices: &Bound<'py, PyAny>,
    dims: &Bound<'py, PyAny>,
    bits: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let dims = small_int_arg(dims, "dims")? as usize;
    let bits = small_int_arg(bits, "bits")?;
    if dims == 1 {
        hilbert::decode_1d(0, bits).map_pyerr()?;
        let mut tuples = Vec::new();
        for_each_item(indices, "indices", |i, item| {
            let value = as_u128(item)
                .and_then(|v| hilbert::decode_1d(v, bits).ok())
                .ok_or_else(|| bad_int(item, &format!("index {i}"), &power_text(bits)))
                .map_pyerr()?;
            tuples.push(PyTuple::new(py, [index_to_py(py, value)])?);
            Ok(())
        })?;
        return PyList::new(py, tuples);
    }
    hilbert::check_params(dims, bits).map_pyerr()?;
    let range = index_range_text(dims, bits);
    let mut flat = Vec::new();
    if dims as u32 * bits <= 64 {
        let mut values = Vec::new();
        if let Ok(len) = indices.len() {
            values.reserve(len);
        }
        for_each_item(indices, "indices", |i, item| {
            let value = as_u64(item)
                .ok_or_else(|| bad_int(item, &format!("index {i}"), &range))
                .map_pyerr()?;
            values.push(value);
            Ok(())
        })?;
        maybe_detach(py, values.len(), || {
            hilbert::decode_batch_u64(&values, dims, bits, &mut flat)
        })
        .map_pyerr()?;
    } else {
        let mut values = Vec::new();
        for_each_item(indices, "indices", |i, item| {
            let value = as_u128(item)
                .ok_or_else(|| bad_int(item, &format!("index {i}"), &range))
                .map_pyerr()?;
            values.push(value);
            Ok(())
        })?;
        maybe_detach(py, values.len(), || {
            hilbert::decode_batch(&values, dims, bits, &mut flat)
        })
        .map_pyerr()?;
    }
    let tuples = flat
        .chunks_exact(dims)
        .map(|point| PyTuple::new(py, point))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, tuples)
}
