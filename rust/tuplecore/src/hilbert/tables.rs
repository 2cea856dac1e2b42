//! Table-driven transducer for 2-d and 3-d, derived from Skilling's loops (see the parent
//! module's documentation).

use std::sync::LazyLock;

/// Transition tables for one dimension count. An entry is `digit | next_state << 8`; the row of
/// a state starts at `state << digit_bits`.
pub(super) struct Tables {
    /// Morton digit of one level -> index digit.
    pub(super) encode_one: Box<[u16]>,
    /// Morton digits of `levels_per_step(N)` levels -> index digits.
    encode_many: Box<[u16]>,
    /// Index digit of one level -> Morton digit.
    decode_one: Box<[u16]>,
    /// Index digits of `levels_per_step(N)` levels -> Morton digits.
    decode_many: Box<[u16]>,
}

pub(super) static TABLES_2D: LazyLock<Tables> = LazyLock::new(|| Tables::build(2));
pub(super) static TABLES_3D: LazyLock<Tables> = LazyLock::new(|| Tables::build(3));

/// Levels consumed per lookup: as many as fit in an 8-bit digit.
pub(super) const fn levels_per_step(dims: u32) -> u32 {
    8 / dims
}

/// A state of Skilling's loops between two levels: the lower bits of working axis `j` are the
/// lower bits of input axis `perm[j]`, inverted when bit `j` of `flip` is set; `parity` is the
/// Gray-code carry (bit `k` of Skilling's `t`). Used for `n <= 3` axes only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct State {
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
pub(super) fn invert(table: &[u16], width: usize) -> Box<[u16]> {
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
pub(super) fn walk<const N: u32>(
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
pub(super) fn walk_encode<const N: u32>(tables: &Tables, morton: u64, bits: u32) -> u64 {
    walk::<N>(&tables.encode_one, &tables.encode_many, morton, bits, 0).0
}

#[inline]
pub(super) fn walk_decode<const N: u32>(tables: &Tables, index: u64, bits: u32) -> u64 {
    walk::<N>(&tables.decode_one, &tables.decode_many, index, bits, 0).0
}

/// Run the transducer over a 128-bit word whose low `low_levels` levels sit in the low word.
#[inline]
pub(super) fn walk_wide<const N: u32>(
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
pub(super) fn spread2(x: u64) -> u64 {
    let mut x = x & 0xFFFF_FFFF;
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// Inverse of [`spread2`]: gather the even bit positions.
#[inline]
pub(super) fn compact2(x: u64) -> u64 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    (x | (x >> 16)) & 0xFFFF_FFFF
}

/// Spread the low 21 bits of `x` to every third bit position.
#[inline]
pub(super) fn spread3(x: u64) -> u64 {
    let mut x = x & 0x1F_FFFF;
    x = (x | (x << 32)) & 0x001F_0000_0000_FFFF;
    x = (x | (x << 16)) & 0x001F_0000_FF00_00FF;
    x = (x | (x << 8)) & 0x100F_00F0_0F00_F00F;
    x = (x | (x << 4)) & 0x10C3_0C30_C30C_30C3;
    (x | (x << 2)) & 0x1249_2492_4924_9249
}

/// Inverse of [`spread3`].
#[inline]
pub(super) fn compact3(x: u64) -> u64 {
    let mut x = x & 0x1249_2492_4924_9249;
    x = (x | (x >> 2)) & 0x10C3_0C30_C30C_30C3;
    x = (x | (x >> 4)) & 0x100F_00F0_0F00_F00F;
    x = (x | (x >> 8)) & 0x001F_0000_FF00_00FF;
    x = (x | (x >> 16)) & 0x001F_0000_0000_FFFF;
    (x | (x >> 32)) & 0x1F_FFFF
}

#[inline]
pub(super) fn morton2(x: u64, y: u64) -> u64 {
    (spread2(x) << 1) | spread2(y)
}

#[inline]
pub(super) fn morton3(x: u64, y: u64, z: u64) -> u64 {
    (spread3(x) << 2) | (spread3(y) << 1) | spread3(z)
}

/// Levels of a 2-d / 3-d point that fit in one `u64` Morton word.
pub(super) const LOW_LEVELS_2D: u32 = 32;
pub(super) const LOW_LEVELS_3D: u32 = 21;

#[inline]
pub(super) fn encode2(x: u64, y: u64, bits: u32) -> u128 {
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
pub(super) fn decode2(index: u128, bits: u32) -> (u64, u64) {
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
pub(super) fn encode3(x: u64, y: u64, z: u64, bits: u32) -> u128 {
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
pub(super) fn decode3(index: u128, bits: u32) -> (u64, u64, u64) {
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
