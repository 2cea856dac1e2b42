//! Tuple-space operations in pure Rust at 1e3..1e6 resident tuples (no Python overhead).
//!
//! Run: `cargo bench -p tuplecore --bench space`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tuplecore::space::{Field, Space, TypeTag, Value};

fn job(i: i64) -> Box<[Value]> {
    vec![
        Value::Str("jobs".into()),
        Value::Int(i),
        Value::Bytes(b"0123456789abcdef".to_vec().into()),
    ]
    .into()
}

fn filled(n: i64) -> Space {
    let mut s = Space::new();
    for i in 0..n {
        s.out(job(i), None, 0).unwrap();
    }
    s
}

fn bench_space(c: &mut Criterion) {
    let lane: Vec<Field> = vec![
        Field::Actual(Value::Str("jobs".into())),
        Field::Formal(TypeTag::Int),
        Field::Any,
    ];
    for n in [1_000i64, 10_000, 100_000, 1_000_000] {
        let mut g = c.benchmark_group(format!("space/{n}"));
        g.throughput(Throughput::Elements(1));
        // Steady state: take the oldest, write a new one, so residency stays at n.
        let mut s = filled(n);
        let mut next = n;
        g.bench_function("take+out", |b| {
            b.iter(|| {
                let t = s.take(&lane, 0).unwrap().unwrap();
                s.out(job(next), None, 0).unwrap();
                next += 1;
                t
            });
        });
        g.bench_function("read", |b| b.iter(|| s.read(&lane, 0).unwrap().unwrap()));
        // A key in the middle of the lane, through the second field's index.
        g.bench_function("take-key+out", |b| {
            b.iter_batched(
                || next - n / 2,
                |k| {
                    let tpl = [
                        Field::Actual(Value::Str("jobs".into())),
                        Field::Actual(Value::Int(k)),
                        Field::Any,
                    ];
                    if let Some(t) = s.take(&tpl, 0).unwrap() {
                        s.out(t, None, 0).unwrap();
                    }
                },
                BatchSize::SmallInput,
            );
        });
        g.finish();
    }
}

criterion_group!(benches, bench_space);
criterion_main!(benches);
