//! Hilbert encode / decode throughput: 3-d 21-bit points (the table-driven path, `u64` index)
//! and 8-d 16-bit points (Skilling's loops, 128-bit index), scalar and batch.
//!
//! Run with `cargo bench -p tuplecore --bench hilbert`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tuplecore::hilbert;

const POINTS: usize = 4096;

/// `POINTS * dims` pseudo-random coordinates below `2^bits` (splitmix64, fixed seed).
fn random_flat(dims: usize, bits: u32) -> Vec<u64> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    (0..POINTS * dims)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) >> (64 - bits)
        })
        .collect()
}

fn bench_shape(c: &mut Criterion, dims: usize, bits: u32) {
    let flat = random_flat(dims, bits);
    let mut indices = Vec::new();
    hilbert::encode_batch(&flat, dims, bits, &mut indices).unwrap();

    let mut group = c.benchmark_group(format!("hilbert_{dims}d_{bits}bit"));
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("encode_scalar", |b| {
        b.iter(|| {
            for point in flat.chunks_exact(dims) {
                black_box(hilbert::encode(black_box(point), bits).unwrap());
            }
        });
    });
    group.bench_function("encode_batch", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(POINTS),
            |out| hilbert::encode_batch(black_box(&flat), dims, bits, out).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("decode_scalar", |b| {
        let mut point = vec![0; dims];
        b.iter(|| {
            for &index in &indices {
                hilbert::decode_into(black_box(index), bits, &mut point).unwrap();
                black_box(&point);
            }
        });
    });
    group.bench_function("decode_batch", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(POINTS * dims),
            |out| hilbert::decode_batch(black_box(&indices), dims, bits, out).unwrap(),
            BatchSize::SmallInput,
        );
    });
    if dims as u32 * bits <= 64 {
        let narrow: Vec<u64> = indices.iter().map(|&h| h as u64).collect();
        group.bench_function("encode_batch_u64", |b| {
            b.iter_batched_ref(
                || Vec::with_capacity(POINTS),
                |out| hilbert::encode_batch_u64(black_box(&flat), dims, bits, out).unwrap(),
                BatchSize::SmallInput,
            );
        });
        group.bench_function("decode_batch_u64", |b| {
            b.iter_batched_ref(
                || Vec::with_capacity(POINTS * dims),
                |out| hilbert::decode_batch_u64(black_box(&narrow), dims, bits, out).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn hilbert_benches(c: &mut Criterion) {
    bench_shape(c, 3, 21);
    bench_shape(c, 8, 16);
}

criterion_group!(benches, hilbert_benches);
criterion_main!(benches);
