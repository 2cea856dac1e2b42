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

use std::sync::LazyLock;

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

// ---------------------------------------------------------------------------------------------
// Skilling's algorithm, any dims.

/// Skilling's `AxesToTranspose`, branch-free: `x` holds the point on entry, the transpose on
/// exit. Only bits below `bits` may be set.
#[inline]
fn axes_to_transpose(x: &mut [u64], bits: u32) {
    let n = x.len();
    // Inverse undo excess work.
    for q in (1..bits).rev() {
        let p = (1u64 << q) - 1;
        x[0] ^= p & ((x[0] >> q) & 1).wrapping_neg();
        for i in 1..n {
            undo_step(x, i, q, p);
        }
    }
    // Gray encode.
    for i in 1..n {
        x[i] ^= x[i - 1];
    }
    // Bit k of t is the parity of the bits of x[n-1] above k.
    let mut t = x[n - 1] >> 1;
    for shift in [1, 2, 4, 8, 16, 32] {
        t ^= t >> shift;
    }
    for v in x.iter_mut() {
        *v ^= t;
    }
}

/// Skilling's `TransposeToAxes`, branch-free: `x` holds the transpose on entry, the point on
/// exit.
#[inline]
fn transpose_to_axes(x: &mut [u64], bits: u32) {
    let n = x.len();
    // Gray decode by H ^ (H/2).
    let t = x[n - 1] >> 1;
    for i in (1..n).rev() {
        x[i] ^= x[i - 1];
    }
    x[0] ^= t;
    // Undo excess work.
    for q in 1..bits {
        let p = (1u64 << q) - 1;
        for i in (1..n).rev() {
            undo_step(x, i, q, p);
        }
        x[0] ^= p & ((x[0] >> q) & 1).wrapping_neg();
    }
}

/// One step (`i > 0`) of Skilling's "undo excess work" at bit `q` (`p = 2^q - 1`): if bit `q`
/// of `x[i]` is set, invert the low bits of `x[0]`, else exchange the low bits of `x[0]` and
/// `x[i]`. Branch-free, written so that the chain through `x[0]` is two operations long.
#[inline]
fn undo_step(x: &mut [u64], i: usize, q: u32, p: u64) {
    let (x0, xi) = (x[0], x[i]);
    let set = ((xi >> q) & 1).wrapping_neg();
    let exchange = p & !set;
    x[0] = (x0 & !exchange) ^ ((p & set) | (xi & exchange));
    x[i] = (xi & !exchange) | (x0 & exchange);
}

/// The index: the transpose interleaved, most significant bit first, `x[0]` first.
#[inline]
fn interleave(x: &[u64], bits: u32) -> u128 {
    let n = x.len() as u32;
    let mut h = 0u128;
    if n > 64 {
        // Then bits == 1 (n * bits <= 128): one bit per axis.
        for &v in x {
            h = (h << 1) | u128::from(v & 1);
        }
        return h;
    }
    for k in (0..bits).rev() {
        // The n bits of level k, x[0] first: one digit of the index.
        let digit = x.iter().fold(0u64, |acc, &v| (acc << 1) | ((v >> k) & 1));
        h = (h << n) | u128::from(digit);
    }
    h
}

/// Inverse of [`interleave`].
#[inline]
fn deinterleave(index: u128, bits: u32, x: &mut [u64]) {
    let n = x.len() as u32;
    if n > 64 {
        for (i, v) in x.iter_mut().enumerate() {
            *v = ((index >> (n - 1 - i as u32)) & 1) as u64;
        }
        return;
    }
    x.fill(0);
    let mut rest = index;
    for k in 0..bits {
        let digit = rest as u64;
        rest >>= n;
        for (i, v) in x.iter_mut().enumerate() {
            *v |= ((digit >> (n - 1 - i as u32)) & 1) << k;
        }
    }
}

fn skilling_encode(point: &[u64], bits: u32) -> u128 {
    let mut x = point.to_vec();
    axes_to_transpose(&mut x, bits);
    interleave(&x, bits)
}

fn skilling_decode(index: u128, bits: u32, out: &mut [u64]) {
    deinterleave(index, bits, out);
    transpose_to_axes(out, bits);
}

/// [`skilling_encode`] with the dimension known at compile time (loops unrolled, no heap).
fn skilling_encode_fixed<const N: usize>(point: &[u64], bits: u32) -> u128 {
    let mut x = [0u64; N];
    x.copy_from_slice(point);
    axes_to_transpose(&mut x, bits);
    interleave(&x, bits)
}

fn skilling_decode_fixed<const N: usize>(index: u128, bits: u32, out: &mut [u64]) {
    let mut x = [0u64; N];
    deinterleave(index, bits, &mut x);
    transpose_to_axes(&mut x, bits);
    out.copy_from_slice(&x);
}

// ---------------------------------------------------------------------------------------------
// Table-driven transducer for 2-d and 3-d.

/// Transition tables for one dimension count. An entry is `digit | next_state << 8`; the row of
/// a state starts at `state << digit_bits`.
struct Tables {
    /// Morton digit of one level -> index digit.
    encode_one: Box<[u16]>,
    /// Morton digits of `levels_per_step(N)` levels -> index digits.
    encode_many: Box<[u16]>,
    /// Index digit of one level -> Morton digit.
    decode_one: Box<[u16]>,
    /// Index digits of `levels_per_step(N)` levels -> Morton digits.
    decode_many: Box<[u16]>,
}

static TABLES_2D: LazyLock<Tables> = LazyLock::new(|| Tables::build(2));
static TABLES_3D: LazyLock<Tables> = LazyLock::new(|| Tables::build(3));

/// Levels consumed per lookup: as many as fit in an 8-bit digit.
const fn levels_per_step(dims: u32) -> u32 {
    8 / dims
}

/// A state of Skilling's loops between two levels: the lower bits of working axis `j` are the
/// lower bits of input axis `perm[j]`, inverted when bit `j` of `flip` is set; `parity` is the
/// Gray-code carry (bit `k` of Skilling's `t`). Used for `n <= 3` axes only.
#[derive(Clone, Copy, PartialEq, Eq)]
struct State {
    perm: [u8; 3],
    flip: u8,
    parity: u8,
}

impl State {
    const START: State = State {
        perm: [0, 1, 2],
        flip: 0,
        parity: 0,
    };

    /// One level of `AxesToTranspose` plus Gray encoding. `morton` has bit `n-1-c` set when bit
    /// of this level of input axis `c` is set; the result has bit `n-1-j` set when the bit of
    /// this level of transpose word `j` is set.
    fn step(self, n: usize, morton: u8) -> (u8, State) {
        let mut next = self;
        let mut prefix = 0;
        let mut digit = 0;
        for j in 0..n {
            let d = ((morton >> (n - 1 - usize::from(self.perm[j]))) & 1) ^ ((self.flip >> j) & 1);
            prefix ^= d;
            digit |= (prefix ^ self.parity) << (n - 1 - j);
            if d == 1 {
                next.flip ^= 1;
            } else {
                next.perm.swap(0, j);
                let (a, b) = ((next.flip >> j) & 1, next.flip & 1);
                next.flip = (next.flip & !(1 << j) & !1) | (a | (b << j));
            }
        }
        next.parity ^= prefix;
        (digit, next)
    }
}

impl Tables {
    fn build(n: usize) -> Tables {
        let digits = 1usize << n;
        let mut states = vec![State::START];
        let mut one: Vec<(u8, usize)> = Vec::new();
        let mut s = 0;
        while s < states.len() {
            for m in 0..digits {
                let (digit, next) = states[s].step(n, m as u8);
                let id = states.iter().position(|&x| x == next).unwrap_or_else(|| {
                    states.push(next);
                    states.len() - 1
                });
                one.push((digit, id));
            }
            s += 1;
        }
        assert!(states.len() <= 256, "state ids must fit in 8 bits");
        let levels = levels_per_step(n as u32) as usize;
        let many_digits = 1usize << (n * levels);
        let mut encode_many = vec![0u16; states.len() * many_digits];
        for s in 0..states.len() {
            for m in 0..many_digits {
                let (mut state, mut out) = (s, 0usize);
                for l in (0..levels).rev() {
                    let (digit, next) = one[(state << n) | ((m >> (l * n)) & (digits - 1))];
                    out |= usize::from(digit) << (l * n);
                    state = next;
                }
                encode_many[(s * many_digits) | m] = (out | (state << 8)) as u16;
            }
        }
        let encode_one: Vec<u16> = one
            .iter()
            .map(|&(digit, next)| u16::from(digit) | (next << 8) as u16)
            .collect();
        Tables {
            decode_one: invert(&encode_one, digits),
            decode_many: invert(&encode_many, many_digits),
            encode_one: encode_one.into(),
            encode_many: encode_many.into(),
        }
    }
}

/// The decode table of an encode table: within each state's row, digit -> (digit, next) is a
/// bijection; swap the two digits.
fn invert(table: &[u16], width: usize) -> Box<[u16]> {
    let mut out = vec![u16::MAX; table.len()];
    for (row_in, row_out) in table.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        for (m, &entry) in row_in.iter().enumerate() {
            let slot = &mut row_out[usize::from(entry & 0xFF)];
            assert_eq!(*slot, u16::MAX, "a state's digit map must be a bijection");
            *slot = (entry & 0xFF00) | m as u16;
        }
    }
    out.into()
}

/// Run the transducer over the `levels` lowest levels of `word` (top level first), starting in
/// `state`; returns the output word and the final state.
#[inline]
fn walk<const N: u32>(
    one: &[u16],
    many: &[u16],
    word: u64,
    levels: u32,
    state: usize,
) -> (u64, usize) {
    let per_step = levels_per_step(N);
    let mut state = state;
    let mut out = 0u64;
    let mut level = levels;
    for _ in 0..levels % per_step {
        level -= 1;
        let shift = level * N;
        let entry = one[(state << N) | ((word >> shift) & ((1 << N) - 1)) as usize];
        out |= u64::from(entry & 0xFF) << shift;
        state = usize::from(entry >> 8);
    }
    while level > 0 {
        level -= per_step;
        let shift = level * N;
        let entry = many
            [(state << (N * per_step)) | ((word >> shift) & ((1 << (N * per_step)) - 1)) as usize];
        out |= u64::from(entry & 0xFF) << shift;
        state = usize::from(entry >> 8);
    }
    (out, state)
}

#[inline]
fn walk_encode<const N: u32>(tables: &Tables, morton: u64, bits: u32) -> u64 {
    walk::<N>(&tables.encode_one, &tables.encode_many, morton, bits, 0).0
}

#[inline]
fn walk_decode<const N: u32>(tables: &Tables, index: u64, bits: u32) -> u64 {
    walk::<N>(&tables.decode_one, &tables.decode_many, index, bits, 0).0
}

/// Run the transducer over a 128-bit word whose low `low_levels` levels sit in the low word.
#[inline]
fn walk_wide<const N: u32>(
    one: &[u16],
    many: &[u16],
    high: u64,
    low: u64,
    bits: u32,
    low_levels: u32,
) -> u128 {
    let (out_high, state) = walk::<N>(one, many, high, bits - low_levels, 0);
    let (out_low, _) = walk::<N>(one, many, low, low_levels, state);
    (u128::from(out_high) << (N * low_levels)) | u128::from(out_low)
}

/// Spread the low 32 bits of `x` to the even bit positions.
#[inline]
fn spread2(x: u64) -> u64 {
    let mut x = x & 0xFFFF_FFFF;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// Inverse of [`spread2`]: gather the even bit positions.
#[inline]
fn compact2(x: u64) -> u64 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    (x | (x >> 16)) & 0xFFFF_FFFF
}

/// Spread the low 21 bits of `x` to every third bit position.
#[inline]
fn spread3(x: u64) -> u64 {
    let mut x = x & 0x1F_FFFF;
    x = (x | (x << 32)) & 0x001F_0000_0000_FFFF;
    x = (x | (x << 16)) & 0x001F_0000_FF00_00FF;
    x = (x | (x << 8)) & 0x100F_00F0_0F00_F00F;
    x = (x | (x << 4)) & 0x10C3_0C30_C30C_30C3;
    (x | (x << 2)) & 0x1249_2492_4924_9249
}

/// Inverse of [`spread3`].
#[inline]
fn compact3(x: u64) -> u64 {
    let mut x = x & 0x1249_2492_4924_9249;
    x = (x | (x >> 2)) & 0x10C3_0C30_C30C_30C3;
    x = (x | (x >> 4)) & 0x100F_00F0_0F00_F00F;
    x = (x | (x >> 8)) & 0x001F_0000_FF00_00FF;
    x = (x | (x >> 16)) & 0x001F_0000_0000_FFFF;
    (x | (x >> 32)) & 0x1F_FFFF
}

#[inline]
fn morton2(x: u64, y: u64) -> u64 {
    (spread2(x) << 1) | spread2(y)
}

#[inline]
fn morton3(x: u64, y: u64, z: u64) -> u64 {
    (spread3(x) << 2) | (spread3(y) << 1) | spread3(z)
}

/// Levels of a 2-d / 3-d point that fit in one `u64` Morton word.
const LOW_LEVELS_2D: u32 = 32;
const LOW_LEVELS_3D: u32 = 21;

#[inline]
fn encode2(x: u64, y: u64, bits: u32) -> u128 {
    let t = &*TABLES_2D;
    if bits <= LOW_LEVELS_2D {
        return u128::from(walk_encode::<2>(t, morton2(x, y), bits));
    }
    let (high, low) = (morton2(x >> 32, y >> 32), morton2(x, y));
    walk_wide::<2>(
        &t.encode_one,
        &t.encode_many,
        high,
        low,
        bits,
        LOW_LEVELS_2D,
    )
}

#[inline]
fn decode2(index: u128, bits: u32) -> (u64, u64) {
    let t = &*TABLES_2D;
    if bits <= LOW_LEVELS_2D {
        let m = walk_decode::<2>(t, index as u64, bits);
        return (compact2(m >> 1), compact2(m));
    }
    let m = walk_wide::<2>(
        &t.decode_one,
        &t.decode_many,
        (index >> 64) as u64,
        index as u64,
        bits,
        LOW_LEVELS_2D,
    );
    let (high, low) = ((m >> 64) as u64, m as u64);
    (
        (compact2(high >> 1) << 32) | compact2(low >> 1),
        (compact2(high) << 32) | compact2(low),
    )
}

#[inline]
fn encode3(x: u64, y: u64, z: u64, bits: u32) -> u128 {
    let t = &*TABLES_3D;
    if bits <= LOW_LEVELS_3D {
        return u128::from(walk_encode::<3>(t, morton3(x, y, z), bits));
    }
    let high = morton3(x >> LOW_LEVELS_3D, y >> LOW_LEVELS_3D, z >> LOW_LEVELS_3D);
    let low = morton3(x, y, z);
    walk_wide::<3>(
        &t.encode_one,
        &t.encode_many,
        high,
        low,
        bits,
        LOW_LEVELS_3D,
    )
}

#[inline]
fn decode3(index: u128, bits: u32) -> (u64, u64, u64) {
    let t = &*TABLES_3D;
    if bits <= LOW_LEVELS_3D {
        let m = walk_decode::<3>(t, index as u64, bits);
        return (compact3(m >> 2), compact3(m >> 1), compact3(m));
    }
    let low_bits = 3 * LOW_LEVELS_3D;
    let high_word = (index >> low_bits) as u64;
    let low_word = (index as u64) & ((1 << low_bits) - 1);
    let m = walk_wide::<3>(
        &t.decode_one,
        &t.decode_many,
        high_word,
        low_word,
        bits,
        LOW_LEVELS_3D,
    );
    let (high, low) = ((m >> low_bits) as u64, (m as u64) & ((1 << low_bits) - 1));
    let axis = |shift: u32| (compact3(high >> shift) << LOW_LEVELS_3D) | compact3(low >> shift);
    (axis(2), axis(1), axis(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn max_coordinate(bits: u32) -> u64 {
        u64::MAX >> (64 - bits)
    }

    /// Every grid with `dims * bits <= 15` (up to 32,768 cells), dims 1..=5.
    fn small_grids() -> Vec<(usize, u32)> {
        let mut grids = Vec::new();
        for dims in 1..=5usize {
            for bits in 1..=6u32 {
                if dims as u32 * bits <= 15 {
                    grids.push((dims, bits));
                }
            }
        }
        grids
    }

    #[test]
    fn order_one_2d_visits_up_first() {
        let expected = [([0, 0], 0), ([0, 1], 1), ([1, 1], 2), ([1, 0], 3)];
        for (point, index) in expected {
            assert_eq!(encode(&point, 1).unwrap(), index);
            assert_eq!(decode(index, 2, 1).unwrap(), point);
        }
    }

    #[test]
    fn order_two_2d_matches_the_paper_orientation() {
        // Skilling's curve flips its first step with the parity of `bits`: order 2 starts along
        // axis 0 and ends at (3, 0). Same sequence as the `hilbertcurve` package.
        #[rustfmt::skip]
        let expected: [[u64; 2]; 16] = [
            [0, 0], [1, 0], [1, 1], [0, 1], [0, 2], [0, 3], [1, 3], [1, 2],
            [2, 2], [2, 3], [3, 3], [3, 2], [3, 1], [2, 1], [2, 0], [3, 0],
        ];
        for (index, point) in expected.iter().enumerate() {
            assert_eq!(decode(index as u128, 2, 2).unwrap(), point);
            assert_eq!(encode(point, 2).unwrap(), index as u128);
        }
    }

    #[test]
    fn order_one_3d_is_the_gray_code() {
        #[rustfmt::skip]
        let expected: [[u64; 3]; 8] = [
            [0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0],
            [1, 1, 0], [1, 1, 1], [1, 0, 1], [1, 0, 0],
        ];
        for (index, point) in expected.iter().enumerate() {
            assert_eq!(decode(index as u128, 3, 1).unwrap(), point);
            assert_eq!(encode(point, 1).unwrap(), index as u128);
        }
    }

    #[test]
    fn values_computed_by_the_hilbertcurve_package() {
        // `HilbertCurve(p=bits, n=dims).distance_from_point(point)` from `hilbertcurve` 2.0.5.
        let cases: [(&[u64], u32, u128); 10] = [
            (&[2, 7, 1, 3], 3, 1909),
            (&[5, 0, 0, 6], 3, 3731),
            (&[8, 1, 5, 9, 0], 4, 933_141),
            (&[14, 8, 3, 0, 1], 4, 532_290),
            (
                &[28419, 27405, 4578, 15772, 5944, 36113, 27821, 3873],
                16,
                10_289_713_186_374_531_162_542_432_684_781_687_823,
            ),
            (
                &[54188, 37057, 8113, 62092, 14630, 41328, 41119, 38207],
                16,
                205_783_266_677_220_349_863_887_390_846_191_750_598,
            ),
            (
                &[1_141_153_371_300_629_929, 10_801_332_806_156_616_911],
                64,
                87_417_655_061_022_658_744_670_099_908_906_950_204,
            ),
            (
                &[914_761_360_679_426_580, 4_078_239_883_182_463_692],
                64,
                7_612_645_892_521_846_998_192_319_403_391_081_312,
            ),
            (
                &[2_448_331_429_808, 587_802_646_219, 1_843_784_832_406],
                42,
                78_857_335_256_242_543_848_514_228_487_847_798_773,
            ),
            (
                &[2_375_736_485_540, 2_508_766_814_656, 2_462_341_179_960],
                42,
                53_321_387_983_529_176_843_186_481_625_516_227_574,
            ),
        ];
        for (point, bits, index) in cases {
            assert_eq!(encode(point, bits).unwrap(), index, "{point:?}");
            assert_eq!(decode(index, point.len(), bits).unwrap(), point);
            assert_eq!(skilling_encode(point, bits), index, "{point:?}");
        }
    }

    #[test]
    fn one_dimension_is_the_identity() {
        for bits in [1, 7, 63, 64] {
            for v in [0, 1, max_coordinate(bits) / 2, max_coordinate(bits)] {
                assert_eq!(encode(&[v], bits).unwrap(), u128::from(v));
                assert_eq!(decode(u128::from(v), 1, bits).unwrap(), [v]);
            }
        }
        assert_eq!(encode_1d(u128::MAX, 128).unwrap(), u128::MAX);
        assert_eq!(decode_1d(u128::MAX, 128).unwrap(), u128::MAX);
        assert_eq!(encode_1d(5, 3).unwrap(), 5);
    }

    #[test]
    fn small_grids_are_bijections() {
        for (dims, bits) in small_grids() {
            let cells = 1u128 << (dims as u32 * bits);
            let mut seen = HashSet::new();
            for index in 0..cells {
                let point = decode(index, dims, bits).unwrap();
                assert!(
                    point.iter().all(|&v| v <= max_coordinate(bits)),
                    "{point:?}"
                );
                assert!(
                    seen.insert(point.clone()),
                    "{dims}-d {bits} bits: {point:?} twice"
                );
                assert_eq!(encode(&point, bits).unwrap(), index, "{dims}-d {bits} bits");
            }
            assert_eq!(seen.len() as u128, cells);
        }
    }

    #[test]
    fn consecutive_indices_are_grid_neighbours() {
        for (dims, bits) in small_grids() {
            let cells = 1u128 << (dims as u32 * bits);
            let mut previous = decode(0, dims, bits).unwrap();
            assert!(
                previous.iter().all(|&v| v == 0),
                "the curve starts at the origin"
            );
            for index in 1..cells {
                let point = decode(index, dims, bits).unwrap();
                let distance: u64 = point
                    .iter()
                    .zip(&previous)
                    .map(|(a, b)| a.abs_diff(*b))
                    .sum();
                assert_eq!(
                    distance, 1,
                    "{dims}-d {bits} bits: {previous:?} -> {point:?}"
                );
                previous = point;
            }
        }
    }

    #[test]
    fn tables_match_skilling_on_small_grids() {
        for (dims, bits) in [
            (2usize, 1u32),
            (2, 2),
            (2, 3),
            (2, 7),
            (3, 1),
            (3, 2),
            (3, 3),
            (3, 5),
        ] {
            for index in 0..1u128 << (dims as u32 * bits) {
                let mut expected = vec![0; dims];
                skilling_decode(index, bits, &mut expected);
                let mut got = vec![0; dims];
                decode_unchecked(index, bits, &mut got);
                assert_eq!(got, expected, "{dims}-d {bits} bits, index {index}");
                assert_eq!(skilling_encode(&got, bits), index);
            }
        }
    }

    #[test]
    fn state_counts_are_as_derived() {
        // (signed permutation, parity) reachable from the start: 4 * 2 in 2-d, 24 * 2 in 3-d.
        assert_eq!(TABLES_2D.encode_one.len(), 8 << 2);
        assert_eq!(TABLES_3D.encode_one.len(), 48 << 3);
    }

    #[test]
    fn full_width_corners_round_trip() {
        let max = u64::MAX;
        for point in [[0, 0], [max, 0], [0, max], [max, max], [max, 1]] {
            let index = encode(&point, 64).unwrap();
            assert_eq!(decode(index, 2, 64).unwrap(), point);
        }
        assert_eq!(
            encode(&decode(u128::MAX, 2, 64).unwrap(), 64).unwrap(),
            u128::MAX
        );
        let corner = [u64::from(u16::MAX); 8];
        assert_eq!(decode(encode(&corner, 16).unwrap(), 8, 16).unwrap(), corner);
        assert_eq!(
            encode(&decode(u128::MAX, 8, 16).unwrap(), 16).unwrap(),
            u128::MAX
        );
        let ones = vec![1; 128];
        assert_eq!(decode(encode(&ones, 1).unwrap(), 128, 1).unwrap(), ones);
        let top = (1u128 << 126) - 1;
        assert_eq!(encode(&decode(top, 3, 42).unwrap(), 42).unwrap(), top);
    }

    #[test]
    fn parameter_errors_name_the_value_and_the_limit() {
        let message = |r: Result<u128>| match r.unwrap_err() {
            Error::Coordinate { detail } => detail,
            other => panic!("expected a coordinate error, got {other:?}"),
        };
        assert_eq!(message(encode(&[], 3)), "dims must be at least 1, got 0");
        assert_eq!(
            message(encode(&[1, 2], 0)),
            "bits must be between 1 and 64, got 0"
        );
        assert_eq!(
            message(encode(&[1, 2], 65)),
            "bits must be between 1 and 64, got 65"
        );
        assert_eq!(
            message(encode(&[0; 3], 43)),
            "dims * bits must be at most 128, got 3 * 43 = 129"
        );
        assert_eq!(
            message(encode(&[1, 8, 3], 3)),
            "coordinate 1 = 8 is out of range: must be < 2^3 = 8"
        );
        assert_eq!(
            message(decode(64, 3, 2).map(|_| 0)),
            "index = 64 is out of range for dims = 3, bits = 2: must be < 2^6 = 64"
        );
        assert!(matches!(decode(0, 0, 4), Err(Error::Coordinate { .. })));
        assert!(matches!(decode(0, 129, 1), Err(Error::Coordinate { .. })));
        assert!(matches!(
            decode_into(0, 4, &mut []),
            Err(Error::Coordinate { .. })
        ));
        assert!(matches!(encode_1d(8, 3), Err(Error::Coordinate { .. })));
        assert!(matches!(encode_1d(0, 129), Err(Error::Coordinate { .. })));
        assert!(matches!(decode_1d(0, 0), Err(Error::Coordinate { .. })));
        // The largest values in range are accepted.
        assert!(encode(&[7, 7, 7], 3).is_ok());
        assert!(decode(63, 3, 2).is_ok());
    }

    #[test]
    fn batch_errors_name_the_point_and_leave_out_unchanged() {
        let mut out = vec![42u128];
        let err = encode_batch(&[1, 2, 3, 4, 5], 2, 8, &mut out).unwrap_err();
        assert!(matches!(err, Error::Arity { .. }), "{err:?}");
        let err = encode_batch(&[1, 2, 3, 400], 2, 8, &mut out).unwrap_err();
        assert_eq!(
            err,
            Error::Coordinate {
                detail: "point 1, coordinate 1 = 400 is out of range: must be < 2^8 = 256".into()
            }
        );
        assert_eq!(out, [42]);
        let mut out64 = vec![7u64];
        let err = encode_batch_u64(&[1, 2], 2, 33, &mut out64).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
        let err = decode_batch_u64(&[1, 2, 1 << 16], 2, 8, &mut out64).unwrap_err();
        assert_eq!(
            err,
            Error::Coordinate {
                detail:
                    "index 2 = 65536 is out of range for dims = 2, bits = 8: must be < 2^16 = 65536"
                        .into()
            }
        );
        assert!(decode_batch(&[1 << 16], 2, 8, &mut out64).is_err());
        assert_eq!(out64, [7]);
    }

    fn point_and_bits(max_dims: usize) -> impl Strategy<Value = (Vec<u64>, u32)> {
        (1..=max_dims).prop_flat_map(|dims| {
            let max_bits = (128 / dims as u32).min(64);
            (1..=max_bits).prop_flat_map(move |bits| {
                (
                    proptest::collection::vec(0..=max_coordinate(bits), dims),
                    Just(bits),
                )
            })
        })
    }

    proptest! {
        #[test]
        fn decode_inverts_encode((point, bits) in point_and_bits(8)) {
            let index = encode(&point, bits).unwrap();
            prop_assert!(point.len() as u32 * bits == 128 || index >> (point.len() as u32 * bits) == 0);
            prop_assert_eq!(decode(index, point.len(), bits).unwrap(), point);
        }

        #[test]
        fn wide_points_round_trip((point, bits) in point_and_bits(128)) {
            let index = encode(&point, bits).unwrap();
            prop_assert_eq!(decode(index, point.len(), bits).unwrap(), point);
        }

        #[test]
        fn encode_inverts_decode(index in any::<u128>(), dims in 1usize..=8) {
            let bits = (128 / dims as u32).min(64);
            let total = dims as u32 * bits;
            let index = if total == 128 { index } else { index & ((1 << total) - 1) };
            let point = decode(index, dims, bits).unwrap();
            prop_assert_eq!(encode(&point, bits).unwrap(), index);
        }

        #[test]
        fn tables_match_skilling((point, bits) in (2usize..=3).prop_flat_map(|dims| {
            let max_bits = (128 / dims as u32).min(64);
            (1..=max_bits).prop_flat_map(move |bits| {
                (proptest::collection::vec(0..=max_coordinate(bits), dims), Just(bits))
            })
        })) {
            let index = skilling_encode(&point, bits);
            prop_assert_eq!(encode_unchecked(&point, bits), index);
            let mut got = vec![0; point.len()];
            decode_unchecked(index, bits, &mut got);
            prop_assert_eq!(got, point);
        }

        #[test]
        fn batches_equal_scalar_calls(
            (flat, dims, bits) in (1usize..=6).prop_flat_map(|dims| {
                let max_bits = (128 / dims as u32).min(64);
                (1..=max_bits).prop_flat_map(move |bits| (
                    proptest::collection::vec(0..=max_coordinate(bits), 0..=8 * dims)
                        .prop_map(move |mut v| { v.truncate(v.len() / dims * dims); v }),
                    Just(dims),
                    Just(bits),
                ))
            })
        ) {
            let mut indices = Vec::new();
            encode_batch(&flat, dims, bits, &mut indices).unwrap();
            let scalar: Vec<u128> =
                flat.chunks_exact(dims).map(|p| encode(p, bits).unwrap()).collect();
            prop_assert_eq!(&indices, &scalar);
            let mut points = Vec::new();
            decode_batch(&indices, dims, bits, &mut points).unwrap();
            prop_assert_eq!(&points, &flat);
            if dims as u32 * bits <= 64 {
                let mut narrow = Vec::new();
                encode_batch_u64(&flat, dims, bits, &mut narrow).unwrap();
                prop_assert!(narrow.iter().map(|&h| u128::from(h)).eq(indices.iter().copied()));
                let mut points = Vec::new();
                decode_batch_u64(&narrow, dims, bits, &mut points).unwrap();
                prop_assert_eq!(&points, &flat);
            }
        }
    }
}
