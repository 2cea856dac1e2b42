//! Skilling's algorithm for any number of dimensions, made branch-free.

/// Skilling's `AxesToTranspose`, branch-free: `x` holds the point on entry, the transpose on
/// exit. Only bits below `bits` may be set.
#[inline]
pub(super) fn axes_to_transpose(x: &mut [u64], bits: u32) {
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
pub(super) fn transpose_to_axes(x: &mut [u64], bits: u32) {
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
pub(super) fn undo_step(x: &mut [u64], i: usize, q: u32, p: u64) {
    let (x0, xi) = (x[0], x[i]);
    let set = ((xi >> q) & 1).wrapping_neg();
    let exchange = p & !set;
    x[0] = (x0 & !exchange) ^ ((p & set) | (xi & exchange));
    x[i] = (xi & !exchange) | (x0 & exchange);
}

/// The index: the transpose interleaved, most significant bit first, `x[0]` first.
#[inline]
pub(super) fn interleave(x: &[u64], bits: u32) -> u128 {
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
pub(super) fn deinterleave(index: u128, bits: u32, x: &mut [u64]) {
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

pub(super) fn skilling_encode(point: &[u64], bits: u32) -> u128 {
    let mut x = point.to_vec();
    axes_to_transpose(&mut x, bits);
    interleave(&x, bits)
}

pub(super) fn skilling_decode(index: u128, bits: u32, out: &mut [u64]) {
    deinterleave(index, bits, out);
    transpose_to_axes(out, bits);
}

/// [`skilling_encode`] with the dimension known at compile time (loops unrolled, no heap).
pub(super) fn skilling_encode_fixed<const N: usize>(point: &[u64], bits: u32) -> u128 {
    let mut x = [0u64; N];
    x.copy_from_slice(point);
    axes_to_transpose(&mut x, bits);
    interleave(&x, bits)
}

pub(super) fn skilling_decode_fixed<const N: usize>(index: u128, bits: u32, out: &mut [u64]) {
    let mut x = [0u64; N];
    deinterleave(index, bits, &mut x);
    transpose_to_axes(&mut x, bits);
    out.copy_from_slice(&x);
}
