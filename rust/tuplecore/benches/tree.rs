//! Agent tree benchmarks: `cargo bench -p tuplecore --bench tree`.
//!
//! touch on 1e6 active agents (sequential ids, and ids drawn at random with replacement),
//! prune of 100,000 out of 1e6, compress + restore of a 64-byte state, `batch_spawn` (a million
//! and a billion leaves) and resolution of a virtual id.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tuplecore::tree::{AgentTree, ROOT};

const ACTIVE: u64 = 1_000_000;

/// A tree with one batch of `ACTIVE` leaves (depth 2, branching 1000), every leaf touched once.
/// Returns the tree and the leaf ids.
fn million_active() -> (AgentTree, Vec<u64>) {
    let mut tree = AgentTree::default();
    let info = tree.batch_spawn(ROOT, "leaf", 2, 1000).expect("batch");
    let leaves: Vec<u64> = (info.leaf_first_id..info.leaf_first_id + info.leaves).collect();
    for &id in &leaves {
        tree.touch(id).expect("touch");
    }
    (tree, leaves)
}

/// `n` ids drawn uniformly, with replacement, from `ids` (xorshift64*, deterministic): the LRU
/// order then never matches the touch order.
fn random_draws(ids: &[u64], n: usize) -> Vec<u64> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            ids[(state.wrapping_mul(0x2545_f491_4f6c_dd1d) % ids.len() as u64) as usize]
        })
        .collect()
}

fn touch(c: &mut Criterion) {
    let (mut tree, leaves) = million_active();
    let random = random_draws(&leaves, leaves.len());
    let mut group = c.benchmark_group("touch_1e6_active");
    group.throughput(Throughput::Elements(leaves.len() as u64));
    group.sample_size(10);
    group.bench_function("sequential", |b| {
        b.iter(|| {
            for &id in &leaves {
                tree.touch(black_box(id)).expect("touch");
            }
        });
    });
    group.bench_function("random", |b| {
        b.iter(|| {
            for &id in &random {
                tree.touch(black_box(id)).expect("touch");
            }
        });
    });
    group.finish();
}

fn prune(c: &mut Criterion) {
    let (tree, _) = million_active();
    let mut group = c.benchmark_group("prune");
    group.sample_size(20);
    // prune does not change the tree, so every iteration returns the same 100,000 ids.
    group.bench_function("100k_of_1e6", |b| {
        b.iter(|| black_box(tree.prune(black_box(ACTIVE - 100_000))));
    });
    group.finish();
}

fn compress_restore(c: &mut Criterion) {
    let mut tree = AgentTree::default();
    let id = tree.spawn(ROOT, "worker").expect("spawn");
    let random: Vec<u8> = (0..64u64)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 57) as u8 ^ (i as u8).rotate_left(3))
        .collect();
    // 64 bytes of JSON-like text: LZ4 shrinks it.
    let text = br#"{"n": 123, "name": "counter", "tags": ["a", "a", "a", "a", "a"]}"#;
    assert_eq!(text.len(), 64);
    let mut group = c.benchmark_group("compress_restore_64B");
    for (name, state) in [("random", &random[..]), ("text", &text[..])] {
        group.bench_function(name, |b| {
            b.iter(|| {
                tree.compress(id, black_box(state)).expect("compress");
                black_box(tree.restore(id).expect("restore"));
            });
        });
    }
    group.finish();
}

fn batch_spawn(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_spawn");
    for (name, depth, branching) in [("1M_leaves", 4, 32), ("1G_leaves", 6, 32)] {
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                AgentTree::default,
                |tree| {
                    black_box(
                        tree.batch_spawn(ROOT, "leaf", depth, branching)
                            .expect("batch"),
                    )
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn resolve(c: &mut Criterion) {
    let mut tree = AgentTree::default();
    for _ in 0..100 {
        tree.spawn(ROOT, "worker").expect("spawn");
    }
    let info = tree.batch_spawn(ROOT, "leaf", 6, 32).expect("batch");
    let leaf = info.leaf_first_id + 987_654_321;
    let mut group = c.benchmark_group("resolve_virtual");
    group.bench_function("info_depth6", |b| {
        b.iter(|| black_box(tree.info(black_box(leaf)).expect("info")));
    });
    group.bench_function("parent_depth6", |b| {
        b.iter(|| black_box(tree.parent(black_box(leaf)).expect("parent")));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = touch, prune, compress_restore, batch_spawn, resolve
}
criterion_main!(benches);
