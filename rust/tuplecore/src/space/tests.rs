//! Unit tests and a differential property test of [`Space`] against a naive model.

use proptest::prelude::*;

use super::*;

fn s(x: &str) -> Value {
    Value::Str(x.into())
}
fn a(v: Value) -> Field {
    Field::Actual(v)
}

#[test]
fn fifo_among_matches_and_type_strictness() {
    let mut sp = Space::new();
    sp.out(vec![s("job"), Value::Int(1)].into(), None, 0)
        .unwrap();
    sp.out(vec![s("job"), Value::Bool(true)].into(), None, 0)
        .unwrap();
    sp.out(vec![s("job"), Value::Float(1.0)].into(), None, 0)
        .unwrap();
    sp.out(vec![s("job"), Value::Int(1)].into(), None, 0)
        .unwrap();
    let t = [a(s("job")), a(Value::Int(1))];
    assert_eq!(sp.count(&t, 0).unwrap(), 2);
    assert_eq!(
        sp.take(&[a(s("job")), Field::Formal(TypeTag::Bool)], 0)
            .unwrap()
            .unwrap()[1],
        Value::Bool(true)
    );
    assert_eq!(
        sp.take(&[a(s("job")), Field::Any], 0).unwrap().unwrap()[1],
        Value::Int(1)
    );
    assert_eq!(
        sp.take(&[a(s("job")), Field::Any], 0).unwrap().unwrap()[1],
        Value::Float(1.0)
    );
    assert_eq!(sp.len(), 1);
    assert!(sp
        .take(&[a(s("job")), a(Value::Float(1.0))], 0)
        .unwrap()
        .is_none());
}

/// Regression: with the old Fx-based keys, `(True, None, None)` had colliding position-0 and
/// position-2 keys, and the tuple was listed (counted, read) twice. Found by Hypothesis.
#[test]
fn a_tuple_is_found_once_whatever_its_fields_hash_to() {
    let mut sp = Space::new();
    let t: Tuple = vec![Value::Bool(true), Value::None, Value::None].into();
    sp.out(t.clone(), None, 0).unwrap();
    for template in [
        vec![a(Value::Bool(true)), Field::Any, Field::Any],
        vec![Field::Any, Field::Any, a(Value::None)],
        vec![a(Value::Bool(true)), Field::Any, a(Value::None)],
    ] {
        assert_eq!(sp.count(&template, 0).unwrap(), 1);
        assert_eq!(sp.read_all(&template, 10, 0).unwrap(), vec![t.clone()]);
    }
    // Distinct keys for every field of that tuple (one posting each, plus the signature's).
    assert_eq!(sp.stats().postings, 4);
    assert_eq!(
        sp.take_all(&[Field::Any, Field::Any, Field::Any], 10, 0)
            .unwrap()
            .len(),
        1
    );
    assert!(sp.is_empty());
    assert_eq!(sp.stats().postings, 0);
}

#[test]
fn arity_errors_leave_space_unchanged() {
    let mut sp = Space::new();
    assert!(matches!(
        sp.out(Vec::new().into(), None, 0),
        Err(Error::Arity { .. })
    ));
    let long: Tuple = vec![Value::None; MAX_ARITY + 1].into();
    assert!(matches!(sp.out(long, None, 0), Err(Error::Arity { .. })));
    assert!(matches!(sp.take(&[], 0), Err(Error::Arity { .. })));
    assert_eq!(sp.stats().outs, 0);
    assert!(sp.is_empty());
}

#[test]
fn leases_expire_and_are_reclaimed() {
    let mut sp = Space::new();
    sp.out(vec![s("lease"), Value::Int(1)].into(), Some(100), 0)
        .unwrap();
    sp.out(vec![s("lease"), Value::Int(2)].into(), None, 0)
        .unwrap();
    assert!(sp.has_leases());
    let t = [a(s("lease")), Field::Any];
    assert_eq!(sp.count(&t, 99).unwrap(), 2);
    assert_eq!(sp.read(&t, 100).unwrap().unwrap()[1], Value::Int(2));
    assert_eq!(sp.stats().expired, 1);
    assert!(!sp.has_leases());
    assert!(matches!(
        sp.out(vec![s("x")].into(), Some(5), 5),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn lease_heap_stays_proportional() {
    let mut sp = Space::new();
    let t = [a(s("l"))];
    for i in 0..10_000u64 {
        sp.out(vec![s("l")].into(), Some(i + 1_000_000), i).unwrap();
        sp.take(&t, i).unwrap().unwrap();
    }
    assert!(
        sp.leases.len() <= 2048,
        "stale lease entries kept: {}",
        sp.leases.len()
    );
}

#[test]
fn waiters_get_handoff_oldest_taker_first() {
    let mut sp = Space::new();
    let tpl: Template = vec![a(s("q")), Field::Formal(TypeTag::Int)].into();
    let r = sp.add_waiter(tpl.clone(), false).unwrap();
    let t1 = sp.add_waiter(tpl.clone(), true).unwrap();
    let t2 = sp.add_waiter(tpl.clone(), true).unwrap();
    let other = sp
        .add_waiter(vec![a(s("other")), Field::Any].into(), true)
        .unwrap();
    let o = sp.out(vec![s("q"), Value::Int(5)].into(), None, 0).unwrap();
    assert_eq!(o.readers, vec![r]);
    assert_eq!(o.taker.as_ref().unwrap().0, t1);
    assert!(sp.is_empty(), "a handed-off tuple is not stored");
    assert!(!sp.remove_waiter(t1), "a served waiter is gone");
    assert!(sp.remove_waiter(t2));
    let o = sp.out(vec![s("q"), Value::Int(6)].into(), None, 0).unwrap();
    assert!(o.taker.is_none() && o.readers.is_empty());
    assert_eq!(sp.len(), 1);
    assert_eq!(sp.stats().waiters, 1);
    assert!(sp.remove_waiter(other));
}

#[test]
fn a_tuple_put_back_keeps_the_rest_of_its_lease() {
    let mut sp = Space::new();
    let t = [a(s("l")), Field::Any];
    let taker = sp.add_waiter(t.to_vec().into(), true).unwrap();
    let o = sp
        .out(vec![s("l"), Value::Int(1)].into(), Some(100), 10)
        .unwrap();
    let (id, fields) = o.taker.unwrap();
    assert_eq!(id, taker);
    // The taker was cancelled before it resumed: the tuple goes back with its expiry (100).
    assert!(sp.put_back(fields, Some(100), 40).unwrap().is_some());
    assert_eq!(sp.count(&t, 99).unwrap(), 1);
    assert_eq!(
        sp.count(&t, 100).unwrap(),
        0,
        "expires when it was written to"
    );
    assert_eq!(sp.stats().expired, 1);
    assert!(!sp.has_leases());
}

#[test]
fn a_tuple_whose_lease_ran_out_before_it_was_put_back_is_reclaimed() {
    let mut sp = Space::new();
    let t = [a(s("l")), Field::Any];
    let reader = sp.add_waiter(t.to_vec().into(), false).unwrap();
    assert!(sp
        .put_back(vec![s("l"), Value::Int(1)].into(), Some(100), 100)
        .unwrap()
        .is_none());
    assert!(sp.is_empty());
    assert_eq!(sp.stats().expired, 1);
    assert!(
        sp.remove_waiter(reader),
        "no waiter was served an expired tuple"
    );
    // Without a lease (or with one still running) it is written again, waiters first.
    let o = sp
        .put_back(vec![s("l"), Value::Int(2)].into(), None, 500)
        .unwrap();
    assert!(o.unwrap().taker.is_none());
    assert_eq!(sp.count(&t, u64::MAX).unwrap(), 1);
    assert!(matches!(
        sp.put_back(Vec::new().into(), None, 0),
        Err(Error::Arity { .. })
    ));
}

#[test]
fn index_does_not_visit_other_lanes() {
    let mut sp = Space::new();
    for i in 0..100_000 {
        sp.out(vec![s("bulk"), Value::Int(i)].into(), None, 0)
            .unwrap();
    }
    sp.out(vec![s("rare"), Value::Int(7)].into(), None, 0)
        .unwrap();
    // Visits counted through scan_sig's callback: only the one "rare" tuple is a candidate.
    let tpl = [a(s("rare")), Field::Any];
    let mut visited = 0;
    for sig in sp.compatible_sigs(&tpl).collect::<Vec<_>>() {
        sp.scan_sig(sig, &tpl, |_| {
            visited += 1;
            true
        });
    }
    assert_eq!(visited, 1);
    // And an actual in the second field picks the short posting over the long lane posting.
    let tpl = [a(s("bulk")), a(Value::Int(99_999))];
    let mut visited = 0;
    for sig in sp.compatible_sigs(&tpl).collect::<Vec<_>>() {
        sp.scan_sig(sig, &tpl, |_| {
            visited += 1;
            true
        });
    }
    assert_eq!(visited, 1);
}

#[test]
fn draining_keeps_index_small() {
    let mut sp = Space::new();
    for i in 0..50_000 {
        sp.out(
            vec![s("d"), Value::Int(i), Value::Int(i % 7)].into(),
            None,
            0,
        )
        .unwrap();
    }
    // Take from the middle by the second field, then drain the rest by lane.
    for i in (0..50_000).step_by(3) {
        assert!(sp
            .take(&[a(s("d")), a(Value::Int(i)), Field::Any], 0)
            .unwrap()
            .is_some());
    }
    while sp
        .take(&[a(s("d")), Field::Any, Field::Any], 0)
        .unwrap()
        .is_some()
    {}
    assert!(sp.is_empty());
    assert_eq!(
        sp.stats().postings,
        0,
        "postings must be dropped once empty"
    );
}

// --- differential property test -----------------------------------------------------------

fn value_strategy() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        (0i64..3).prop_map(Value::Int),
        Just(Value::BigInt("123456789012345678901234567890".into())),
        prop_oneof![Just(0.0), Just(-0.0), Just(1.0), Just(f64::NAN)].prop_map(Value::Float),
        prop_oneof![Just("a"), Just("b")].prop_map(|x| Value::Str(x.into())),
        Just(Value::Bytes(b"x".to_vec().into())),
        Just(Value::Bytes(vec![9u8; 40].into())),
    ]
}

fn tag_strategy() -> impl Strategy<Value = TypeTag> + Clone {
    prop_oneof![
        Just(TypeTag::None),
        Just(TypeTag::Bool),
        Just(TypeTag::Int),
        Just(TypeTag::Float),
        Just(TypeTag::Str),
        Just(TypeTag::Bytes),
    ]
}

fn field_strategy() -> impl Strategy<Value = Field> + Clone {
    prop_oneof![
        3 => value_strategy().prop_map(Field::Actual),
        1 => tag_strategy().prop_map(Field::Formal),
        2 => Just(Field::Any),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Out(Vec<Value>, Option<u64>),
    Take(Vec<Field>),
    Read(Vec<Field>),
    TakeAll(Vec<Field>, usize),
    ReadAll(Vec<Field>, usize),
    Count(Vec<Field>),
    Wait(Vec<Field>, bool),
    Cancel(usize),
    Tick(u64),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let tuple = prop::collection::vec(value_strategy(), 1..=3);
    let tpl = prop::collection::vec(field_strategy(), 1..=3);
    prop_oneof![
        5 => (tuple, prop::option::of(1u64..20)).prop_map(|(t, l)| Op::Out(t, l)),
        3 => tpl.clone().prop_map(Op::Take),
        2 => tpl.clone().prop_map(Op::Read),
        1 => (tpl.clone(), 0usize..4).prop_map(|(t, n)| Op::TakeAll(t, n)),
        1 => (tpl.clone(), 0usize..4).prop_map(|(t, n)| Op::ReadAll(t, n)),
        1 => tpl.clone().prop_map(Op::Count),
        1 => (tpl, any::<bool>()).prop_map(|(t, k)| Op::Wait(t, k)),
        1 => (0usize..8).prop_map(Op::Cancel),
        1 => (0u64..10).prop_map(Op::Tick),
    ]
}

/// The obviously correct model: a list in insertion order, scanned every time.
#[derive(Default)]
struct Model {
    tuples: Vec<(Vec<Value>, u64)>,
    waiters: Vec<(u64, Vec<Field>, bool)>,
}

impl Model {
    fn expire(&mut self, now: u64) {
        self.tuples.retain(|(_, exp)| *exp > now);
    }
    fn find(&self, t: &[Field]) -> Vec<usize> {
        (0..self.tuples.len())
            .filter(|&i| matches(t, &self.tuples[i].0))
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn space_matches_naive_model(ops in prop::collection::vec(op_strategy(), 1..80)) {
        let mut sp = Space::new();
        let mut m = Model::default();
        let mut now = 0u64;
        for op in ops {
            m.expire(now);
            match op {
                Op::Out(t, lease) => {
                    let exp = lease.map(|l| now + l);
                    let o = sp.out(t.clone().into(), exp, now).unwrap();
                    let readers: Vec<u64> = m.waiters.iter()
                        .filter(|(_, tp, take)| !take && matches(tp, &t)).map(|w| w.0).collect();
                    let taker = m.waiters.iter()
                        .find(|(_, tp, take)| *take && matches(tp, &t)).map(|w| w.0);
                    m.waiters.retain(|w| !readers.contains(&w.0) && Some(w.0) != taker);
                    prop_assert_eq!(&o.readers, &readers);
                    prop_assert_eq!(o.taker.as_ref().map(|x| x.0), taker);
                    if let Some((_, got)) = &o.taker {
                        prop_assert_eq!(&got[..], &t[..]);
                    } else {
                        m.tuples.push((t, exp.unwrap_or(u64::MAX)));
                    }
                }
                Op::Take(tp) => {
                    let got = sp.take(&tp, now).unwrap();
                    let want = m.find(&tp).first().map(|&i| m.tuples.remove(i).0);
                    prop_assert_eq!(got.map(|b| b.to_vec()), want);
                }
                Op::Read(tp) => {
                    let got = sp.read(&tp, now).unwrap();
                    let want = m.find(&tp).first().map(|&i| m.tuples[i].0.clone());
                    prop_assert_eq!(got.map(|b| b.to_vec()), want);
                }
                Op::TakeAll(tp, n) => {
                    let got: Vec<Vec<Value>> = sp.take_all(&tp, n, now).unwrap().into_iter().map(|b| b.to_vec()).collect();
                    let idx: Vec<usize> = m.find(&tp).into_iter().take(n).collect();
                    let want: Vec<Vec<Value>> = idx.iter().map(|&i| m.tuples[i].0.clone()).collect();
                    for &i in idx.iter().rev() { m.tuples.remove(i); }
                    prop_assert_eq!(got, want);
                }
                Op::ReadAll(tp, n) => {
                    let got: Vec<Vec<Value>> = sp.read_all(&tp, n, now).unwrap().into_iter().map(|b| b.to_vec()).collect();
                    let want: Vec<Vec<Value>> = m.find(&tp).into_iter().take(n).map(|i| m.tuples[i].0.clone()).collect();
                    prop_assert_eq!(got, want);
                }
                Op::Count(tp) => {
                    prop_assert_eq!(sp.count(&tp, now).unwrap(), m.find(&tp).len());
                }
                Op::Wait(tp, take) => {
                    // Only register when nothing matches, as the binding does.
                    if m.find(&tp).is_empty() {
                        let id = sp.add_waiter(tp.clone().into(), take).unwrap();
                        m.waiters.push((id, tp, take));
                    }
                }
                Op::Cancel(i) => {
                    if !m.waiters.is_empty() {
                        let (id, _, _) = m.waiters.remove(i % m.waiters.len());
                        prop_assert!(sp.remove_waiter(id));
                    }
                }
                Op::Tick(dt) => now += dt,
            }
            m.expire(now);
            sp.reap(now);
            prop_assert_eq!(sp.len(), m.tuples.len());
            prop_assert_eq!(sp.stats().waiters, m.waiters.len());
        }
    }
}
