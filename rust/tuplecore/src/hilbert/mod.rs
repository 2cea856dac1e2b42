//! n-dimensional Hilbert curve: J. Skilling, "Programming the Hilbert curve", AIP Conf. Proc.
//! 707 (2004).
//!
//! A point of `dims` coordinates, each `bits` wide, maps to an index of `dims * bits` bits.
//! Skilling's `AxesToTranspose` turns the point into the "transpose" `X[0..dims]`; the index is
//! the transpose interleaved most significant bit first: bit `bits-1` of `X[0]`, of `X[1]`, ...
//! of `X[dims-1]`, then bit `bits-2` of `X[0]`, and so on. `TransposeToAxes` is the inverse.
//! This is the ordering of every faithful implementation of the paper (e.g. the `hilbertcurve`
//! Python package, which the Python tests use as an oracle). In 2-d order 1 the curve visits
//! `(0,0), (0,1), (1,1), (1,0)`; the first step alternates between the last and the first axis
//! with the parity of `bits`, as in the paper.
//!
//! Domain: `1 <= dims`, `1 <= bits <= 64`, `dims * bits <= 128`, every coordinate `< 2^bits`,
//! every index `< 2^(dims*bits)`. With `dims == 1` the curve is the identity.
//!
//! Two implementations compute the same map:
//!
//! * the paper's loops, made branch-free (`axes_to_transpose`, `transpose_to_axes`), for
//!   any `dims`;
//! * for 2-d and 3-d, a table-driven transducer derived from those loops. Skilling's loops
//!   apply, level by level from the top, a signed permutation of the axes to all lower bits, and
//!   the Gray encoding adds one parity bit of carry; so the state after each level is (signed
//!   permutation, parity), 8 states in 2-d and 48 in 3-d. The tables map (state, several levels
//!   of Morton-interleaved point bits) to (index bits, next state), and decoding uses the
//!   inverse tables. Tests check both implementations against each other.

mod skilling;
mod tables;
#[cfg(test)]
mod tests;

use skilling::{skilling_decode, skilling_decode_fixed, skilling_encode, skilling_encode_fixed};
use tables::{
    compact2, compact3, decode2, decode3, encode2, encode3, morton2, morton3, walk_decode,
    walk_encode, TABLES_2D, TABLES_3D,
};

use crate::{Error, Result};

/// Largest `bits` (coordinate width) accepted.
pub const MAX_BITS: u32 = 64;
/// Largest `dims * bits` (index width) accepted.
pub const MAX_INDEX_BITS: u32 = 128;

fn coordinate_error(detail: String) -> Error {
    Error::Coordinate { detail }
}

/// Check `dims` and `bits` against the curve's domain.
pub fn check_params(dims: usize, bits: u32) -> Result<()> {
    if dims == 0 {
        return Err(coordinate_error(
            "dims must be at least 1, got 0".to_owned(),
        ));
    }
    if bits == 0 || bits > MAX_BITS {
        return Err(coordinate_error(format!(
            "bits must be between 1 and {MAX_BITS}, got {bits}"
        )));
    }
    let total = dims as u128 * u128::from(bits);
    if total > u128::from(MAX_INDEX_BITS) {
        return Err(coordinate_error(format!(
            "dims * bits must be at most {MAX_INDEX_BITS}, got {dims} * {bits} = {total}"
        )));
    }
    Ok(())
}

/// `2^bits` as text, with its decimal value when that is short enough to help.
pub(crate) fn limit_text(bits: u32) -> String {
    if bits <= 64 {
        format!("2^{bits} = {}", 1u128 << bits)
    } else {
        format!("2^{bits}")
    }
}

fn check_point(point: &[u64], bits: u32, row: Option<usize>) -> Result<()> {
    if bits >= 64 {
        return Ok(());
    }
    match point.iter().position(|&v| v >> bits != 0) {
        None => Ok(()),
        Some(j) => {
            let prefix = row.map_or(String::new(), |i| format!("point {i}, "));
            Err(coordinate_error(format!(
                "{prefix}coordinate {j} = {} is out of range: must be < {}",
                point[j],
                limit_text(bits)
            )))
        }
    }
}

fn check_index(index: u128, dims: usize, bits: u32, position: Option<usize>) -> Result<()> {
    let total = dims as u32 * bits;
    if total >= 128 || index >> total == 0 {
        return Ok(());
    }
    let prefix = position.map_or("index =".to_owned(), |i| format!("index {i} ="));
    Err(coordinate_error(format!(
        "{prefix} {index} is out of range for dims = {dims}, bits = {bits}: must be < {}",
        limit_text(total)
    )))
}

/// Hilbert index of `point` (`dims = point.len()`, each coordinate `bits` wide).
pub fn encode(point: &[u64], bits: u32) -> Result<u128> {
    check_params(point.len(), bits)?;
    check_point(point, bits, None)?;
    Ok(encode_unchecked(point, bits))
}

/// The point of `dims` coordinates at Hilbert `index`.
pub fn decode(index: u128, dims: usize, bits: u32) -> Result<Vec<u64>> {
    check_params(dims, bits)?;
    let mut out = vec![0; dims];
    decode_into(index, bits, &mut out)?;
    Ok(out)
}

/// Like [`decode`], writing the `out.len()` coordinates into `out`.
pub fn decode_into(index: u128, bits: u32, out: &mut [u64]) -> Result<()> {
    check_params(out.len(), bits)?;
    check_index(index, out.len(), bits, None)?;
    decode_unchecked(index, bits, out);
    Ok(())
}

/// The 1-d curve (the identity) on coordinates of up to 128 bits: returns `coordinate` after
/// checking `1 <= bits <= 128` and `coordinate < 2^bits`. [`encode`] takes `u64` coordinates,
/// so it stops at 64 bits; this is the wider form for callers whose integers are wider.
pub fn encode_1d(coordinate: u128, bits: u32) -> Result<u128> {
    check_1d(coordinate, bits, "coordinate 0 =")
}

/// Inverse of [`encode_1d`] (also the identity), with the same checks on `index`.
pub fn decode_1d(index: u128, bits: u32) -> Result<u128> {
    check_1d(index, bits, "index =")
}

fn check_1d(value: u128, bits: u32, what: &str) -> Result<u128> {
    if bits == 0 || bits > MAX_INDEX_BITS {
        return Err(coordinate_error(format!(
            "bits must be between 1 and {MAX_INDEX_BITS} for dims = 1, got {bits}"
        )));
    }
    if bits < 128 && value >> bits != 0 {
        return Err(coordinate_error(format!(
            "{what} {value} is out of range: must be < {}",
            limit_text(bits)
        )));
    }
    Ok(value)
}

fn check_batch_shape(len: usize, dims: usize, bits: u32) -> Result<()> {
    check_params(dims, bits)?;
    if len % dims != 0 {
        return Err(Error::Arity {
            detail: format!(
                "a flat batch of {dims}-d points must have a multiple of {dims} values, got {len}"
            ),
        });
    }
    Ok(())
}

fn check_batch_points(points_flat: &[u64], dims: usize, bits: u32) -> Result<()> {
    check_batch_shape(points_flat.len(), dims, bits)?;
    if bits < 64 && points_flat.iter().fold(0, |acc, &v| acc | v) >> bits != 0 {
        for (i, point) in points_flat.chunks_exact(dims).enumerate() {
            check_point(point, bits, Some(i))?;
        }
    }
    Ok(())
}

fn require_u64_index(dims: usize, bits: u32) -> Result<()> {
    if dims as u32 * bits > 64 {
        return Err(Error::InvalidArgument {
            detail: format!(
                "a u64 index needs dims * bits <= 64, got {dims} * {bits} = {}",
                dims as u32 * bits
            ),
        });
    }
    Ok(())
}

/// Encode a flat batch (`points_flat.len() / dims` points of `dims` coordinates, row-major),
/// appending one index per point to `out`. On error `out` is unchanged.
pub fn encode_batch(
    points_flat: &[u64],
    dims: usize,
    bits: u32,
    out: &mut Vec<u128>,
) -> Result<()> {
    check_batch_points(points_flat, dims, bits)?;
    out.reserve(points_flat.len() / dims);
    match dims {
        1 => out.extend(points_flat.iter().map(|&v| u128::from(v))),
        2 => out.extend(
            points_flat
                .chunks_exact(2)
                .map(|p| encode2(p[0], p[1], bits)),
        ),
        3 => out.extend(
            points_flat
                .chunks_exact(3)
                .map(|p| encode3(p[0], p[1], p[2], bits)),
        ),
        _ => out.extend(
            points_flat
                .chunks_exact(dims)
                .map(|p| encode_unchecked(p, bits)),
        ),
    }
    Ok(())
}

/// Like [`encode_batch`] for `dims * bits <= 64`, with `u64` indices (an
/// [`Error::InvalidArgument`] otherwise).
pub fn encode_batch_u64(
    points_flat: &[u64],
    dims: usize,
    bits: u32,
    out: &mut Vec<u64>,
) -> Result<()> {
    check_batch_points(points_flat, dims, bits)?;
    require_u64_index(dims, bits)?;
    out.reserve(points_flat.len() / dims);
    match dims {
        1 => out.extend_from_slice(points_flat),
        2 => out.extend(
            points_flat
                .chunks_exact(2)
                .map(|p| walk_encode::<2>(&TABLES_2D, morton2(p[0], p[1]), bits)),
        ),
        3 => out.extend(
            points_flat
                .chunks_exact(3)
                .map(|p| walk_encode::<3>(&TABLES_3D, morton3(p[0], p[1], p[2]), bits)),
        ),
        _ => out.extend(
            points_flat
                .chunks_exact(dims)
                .map(|p| encode_unchecked(p, bits) as u64),
        ),
    }
    Ok(())
}

/// Decode a batch of indices, appending `dims` coordinates per index to `out` (row-major).
/// On error `out` is unchanged.
pub fn decode_batch(indices: &[u128], dims: usize, bits: u32, out: &mut Vec<u64>) -> Result<()> {
    check_params(dims, bits)?;
    for (i, &index) in indices.iter().enumerate() {
        check_index(index, dims, bits, Some(i))?;
    }
    let start = out.len();
    out.resize(start + indices.len() * dims, 0);
    for (&index, point) in indices.iter().zip(out[start..].chunks_exact_mut(dims)) {
        decode_unchecked(index, bits, point);
    }
    Ok(())
}

/// Like [`decode_batch`] for `dims * bits <= 64`, with `u64` indices (an
/// [`Error::InvalidArgument`] otherwise).
pub fn decode_batch_u64(indices: &[u64], dims: usize, bits: u32, out: &mut Vec<u64>) -> Result<()> {
    check_params(dims, bits)?;
    require_u64_index(dims, bits)?;
    let total = dims as u32 * bits;
    if total < 64 && indices.iter().fold(0, |acc, &v| acc | v) >> total != 0 {
        for (i, &index) in indices.iter().enumerate() {
            check_index(u128::from(index), dims, bits, Some(i))?;
        }
    }
    let start = out.len();
    out.resize(start + indices.len() * dims, 0);
    let points = out[start..].chunks_exact_mut(dims);
    match dims {
        2 => {
            for (&index, p) in indices.iter().zip(points) {
                let m = walk_decode::<2>(&TABLES_2D, index, bits);
                p[0] = compact2(m >> 1);
                p[1] = compact2(m);
            }
        }
        3 => {
            for (&index, p) in indices.iter().zip(points) {
                let m = walk_decode::<3>(&TABLES_3D, index, bits);
                p[0] = compact3(m >> 2);
                p[1] = compact3(m >> 1);
                p[2] = compact3(m);
            }
        }
        _ => {
            for (&index, p) in indices.iter().zip(points) {
                decode_unchecked(u128::from(index), bits, p);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Dispatch (the domain has been checked).

fn encode_unchecked(point: &[u64], bits: u32) -> u128 {
    match *point {
        [x] => u128::from(x),
        [x, y] => encode2(x, y, bits),
        [x, y, z] => encode3(x, y, z, bits),
        _ => match point.len() {
            4 => skilling_encode_fixed::<4>(point, bits),
            5 => skilling_encode_fixed::<5>(point, bits),
            6 => skilling_encode_fixed::<6>(point, bits),
            7 => skilling_encode_fixed::<7>(point, bits),
            8 => skilling_encode_fixed::<8>(point, bits),
            _ => skilling_encode(point, bits),
        },
    }
}

fn decode_unchecked(index: u128, bits: u32, out: &mut [u64]) {
    match out {
        [x] => *x = index as u64,
        [x, y] => (*x, *y) = decode2(index, bits),
        [x, y, z] => (*x, *y, *z) = decode3(index, bits),
        _ => match out.len() {
            4 => skilling_decode_fixed::<4>(index, bits, out),
            5 => skilling_decode_fixed::<5>(index, bits, out),
            6 => skilling_decode_fixed::<6>(index, bits, out),
            7 => skilling_decode_fixed::<7>(index, bits, out),
            8 => skilling_decode_fixed::<8>(index, bits, out),
            _ => skilling_decode(index, bits, out),
        },
    }
}
