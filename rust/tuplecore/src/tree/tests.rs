//! Unit tests and a model-based property test of the agent tree.

use std::collections::HashMap;

use proptest::prelude::*;

use super::token::HEADER_LEN;
use super::*;

fn tree() -> AgentTree {
    AgentTree::default()
}

fn is_unknown(r: &Result<impl std::fmt::Debug>, want: u64) -> bool {
    matches!(r, Err(Error::UnknownAgent { id }) if *id == want)
}

fn state_of(r: &Result<impl std::fmt::Debug>) -> Option<&'static str> {
    match r {
        Err(Error::AgentState { state, .. }) => Some(state),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Construction and the root

#[test]
fn new_tree_holds_only_the_root() {
    let t = tree();
    let info = t.info(ROOT).unwrap();
    assert_eq!(info.parent, None);
    assert_eq!(info.kind, "root");
    assert_eq!(info.depth, 0);
    assert!(info.path.is_empty());
    assert_eq!(info.hilbert, 0);
    assert_eq!(info.status, Status::Active);
    let stats = t.stats();
    assert_eq!(
        stats,
        TreeStats {
            virtual_agents: 0,
            active: 1,
            compressed: 0,
            total: 1,
            materialized: 1,
            batches: 0
        }
    );
    assert!(t.contains(0) && !t.contains(1));
    assert!(is_unknown(&t.info(1), 1));
    assert!(t.prune(0).is_empty());
}

#[test]
fn curve_parameters_are_validated() {
    for (dims, bits) in [(0, 32), (4, 0), (1, 65), (5, 32), (129, 1)] {
        assert!(matches!(
            AgentTree::new(dims, bits),
            Err(Error::InvalidArgument { .. })
        ));
    }
    for (dims, bits) in [(1, 64), (2, 64), (128, 1), (4, 32)] {
        let t = AgentTree::new(dims, bits).unwrap();
        assert_eq!((t.dims(), t.bits()), (dims, bits));
    }
}

#[test]
fn root_cannot_be_compressed_or_loaded_and_touch_is_a_no_op() {
    let mut t = tree();
    t.touch(ROOT).unwrap();
    assert_eq!(state_of(&t.compress(ROOT, b"x")), Some("active"));
    let token = Token::encode(b"x").unwrap();
    assert_eq!(
        state_of(&t.load_token(ROOT, token.as_bytes())),
        Some("active")
    );
    assert_eq!(t.status(ROOT).unwrap(), Status::Active);
    assert_eq!(t.stats().active, 1);
}

// ---------------------------------------------------------------------------------------------
// Spawn, touch, prune, compress, restore

#[test]
fn lifecycle_of_a_spawned_agent() {
    let mut t = tree();
    let a = t.spawn(ROOT, "worker").unwrap();
    assert_eq!(a, 1);
    assert_eq!(t.status(a).unwrap(), Status::Active);
    let state: Vec<u8> = (0..64u8).collect();
    t.compress(a, &state).unwrap();
    assert_eq!(t.status(a).unwrap(), Status::Compressed);
    assert_eq!(state_of(&t.touch(a)), Some("compressed"));
    assert_eq!(state_of(&t.compress(a, &state)), Some("compressed"));
    assert_eq!(t.token(a).unwrap().state_len(), 64);
    assert_eq!(t.restore(a).unwrap(), state);
    assert_eq!(t.status(a).unwrap(), Status::Active);
    assert_eq!(state_of(&t.restore(a)), Some("active"));
    assert_eq!(state_of(&t.token(a)), Some("active"));
    assert!(is_unknown(&t.touch(99), 99));
    assert!(is_unknown(&t.spawn(99, "x"), 99));
    assert!(matches!(
        t.spawn(ROOT, ""),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(t.stats().total, 2);
}

#[test]
fn prune_returns_least_recently_used_first_without_changing_status() {
    let mut t = tree();
    let ids: Vec<u64> = (0..6).map(|_| t.spawn(ROOT, "w").unwrap()).collect();
    t.touch(ids[0]).unwrap();
    t.touch(ids[2]).unwrap();
    // LRU order now: 2(ids[1]), ids[3], ids[4], ids[5], ids[0], ids[2]; root counts but is
    // never returned.
    assert_eq!(t.prune(7), Vec::<u64>::new());
    assert_eq!(t.prune(5), vec![ids[1], ids[3]]);
    assert_eq!(
        t.prune(0),
        vec![ids[1], ids[3], ids[4], ids[5], ids[0], ids[2]]
    );
    assert_eq!(t.prune(1), t.prune(0));
    assert_eq!(t.stats().active, 7);
    for id in t.prune(3) {
        t.compress(id, b"s").unwrap();
    }
    assert_eq!(t.stats().active, 3);
    assert_eq!(t.prune(0), vec![ids[0], ids[2]]);
    // A restored agent is the most recently used.
    t.restore(ids[1]).unwrap();
    assert_eq!(t.prune(0), vec![ids[0], ids[2], ids[1]]);
}

#[test]
fn lru_order_and_tokens_survive_table_growth() {
    let mut t = tree();
    let info = t.batch_spawn(ROOT, "leaf", 1, 20_000).unwrap();
    let mut order = Vec::new(); // the model LRU, oldest first
    let mut compressed = HashMap::new();
    let mut x = 12_345u64;
    for step in 0..30_000u64 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let id = info.first_id + (x >> 33) % info.count;
        if compressed.contains_key(&id) {
            assert_eq!(t.restore(id).unwrap(), compressed.remove(&id).unwrap());
        } else {
            t.touch(id).unwrap();
            order.retain(|&o| o != id);
        }
        order.push(id);
        if step % 7 == 0 {
            let state = id.to_le_bytes().repeat(3);
            t.compress(id, &state).unwrap();
            order.pop();
            compressed.insert(id, state);
        }
    }
    assert_eq!(t.prune(0), order);
    assert_eq!(t.stats().compressed, compressed.len() as u64);
    assert_eq!(
        t.stats().materialized,
        1 + (order.len() + compressed.len()) as u64
    );
    for (id, state) in compressed {
        assert_eq!(t.restore(id).unwrap(), state);
    }
}

#[test]
fn compress_chooses_lz4_only_when_it_shrinks() {
    let mut t = tree();
    let a = t.spawn(ROOT, "w").unwrap();
    let b = t.spawn(ROOT, "w").unwrap();
    let random: Vec<u8> = (0..64u64)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 ^ (i as u8))
        .collect();
    let repetitive = vec![7u8; 4096];
    t.compress(a, &random).unwrap();
    t.compress(b, &repetitive).unwrap();
    assert!(!t.token(a).unwrap().is_compressed());
    assert_eq!(t.token(a).unwrap().as_bytes().len(), HEADER_LEN + 64);
    assert!(t.token(b).unwrap().is_compressed());
    assert!(t.token(b).unwrap().as_bytes().len() < 200);
    assert_eq!(t.restore(a).unwrap(), random);
    assert_eq!(t.restore(b).unwrap(), repetitive);
    t.compress(a, b"").unwrap();
    assert_eq!(t.restore(a).unwrap(), b"");
    // Below 128 bytes LZ4 is not tried, however repetitive the state.
    for (len, lz4) in [(127, false), (128, true)] {
        let state = vec![0u8; len];
        t.compress(b, &state).unwrap();
        assert_eq!(t.token(b).unwrap().is_compressed(), lz4, "{len} bytes");
        assert_eq!(t.restore(b).unwrap(), state);
    }
}

#[test]
fn activate_restores_a_compressed_agent_and_touches_the_others() {
    let mut t = tree();
    t.batch_spawn(ROOT, "leaf", 1, 3).unwrap(); // ids 1, 2, 3, virtual
    let a = t.spawn(ROOT, "w").unwrap();
    // Virtual: materialized, active, most recently used; no state.
    assert_eq!(t.activate(2).unwrap(), None);
    assert_eq!(t.status(2).unwrap(), Status::Active);
    assert_eq!(t.prune(0), vec![a, 2]);
    // Active: the most recently used; no state.
    assert_eq!(t.activate(a).unwrap(), None);
    assert_eq!(t.prune(0), vec![2, a]);
    // Compressed: restored, byte-identical, most recently used.
    let state: Vec<u8> = (0..100u8).collect();
    t.compress(a, &state).unwrap();
    assert_eq!(t.activate(a).unwrap(), Some(state));
    assert_eq!(t.status(a).unwrap(), Status::Active);
    assert_eq!(t.prune(0), vec![2, a]);
    t.compress(a, b"").unwrap();
    assert_eq!(t.activate(a).unwrap(), Some(Vec::new()));
    assert!(is_unknown(&t.activate(99), 99));
    // A corrupt token: an error, and the agent stays compressed.
    t.compress(a, &[1u8; 300]).unwrap();
    let len = t.token(a).unwrap().as_bytes().len();
    t.corrupt_stored_token(a, len - 1);
    let before = t.stats();
    assert!(matches!(t.activate(a), Err(Error::CorruptState { id, .. }) if id == a));
    assert_eq!(t.status(a).unwrap(), Status::Compressed);
    assert_eq!(t.stats(), before);
}

#[test]
fn restore_of_a_corrupted_stored_token_fails_and_keeps_the_agent_compressed() {
    let mut t = tree();
    let a = t.spawn(ROOT, "w").unwrap();
    t.compress(a, &[1u8; 300]).unwrap();
    let len = t.token(a).unwrap().as_bytes().len();
    t.corrupt_stored_token(a, len - 1);
    let before = t.stats();
    assert!(matches!(t.restore(a), Err(Error::CorruptState { id, .. }) if id == a));
    assert_eq!(t.status(a).unwrap(), Status::Compressed);
    assert_eq!(t.stats(), before);
}

#[test]
fn tokens_move_agents_between_trees() {
    let mut src = tree();
    let mut dst = tree();
    for t in [&mut src, &mut dst] {
        t.batch_spawn(ROOT, "leaf", 2, 3).unwrap();
    }
    src.touch(5).unwrap();
    src.compress(5, b"hello state").unwrap();
    let bytes = src.token(5).unwrap().as_bytes().to_vec();
    // Virtual on the destination: materialized as compressed.
    dst.load_token(5, &bytes).unwrap();
    assert_eq!(dst.status(5).unwrap(), Status::Compressed);
    assert_eq!(dst.stats().compressed, 1);
    // Compressed: its token is replaced.
    src.touch(6).unwrap();
    src.compress(6, b"other").unwrap();
    dst.load_token(5, src.token(6).unwrap().as_bytes()).unwrap();
    assert_eq!(dst.stats().compressed, 1);
    assert_eq!(dst.restore(5).unwrap(), b"other");
    // Active: refused.
    assert_eq!(state_of(&dst.load_token(5, &bytes)), Some("active"));
    assert!(is_unknown(&dst.load_token(1000, &bytes), 1000));
}

#[test]
fn corrupted_tokens_are_rejected_and_change_nothing() {
    let mut t = tree();
    t.batch_spawn(ROOT, "leaf", 1, 4).unwrap();
    t.touch(2).unwrap();
    t.compress(2, b"original").unwrap();
    let mut variants: Vec<Vec<u8>> = Vec::new();
    for state in [
        &b"0123456789abcdef0123456789abcdef"[..],
        &[9u8; 500][..],
        &b"short"[..],
    ] {
        let good = Token::encode(state).unwrap().as_bytes().to_vec();
        for cut in 0..good.len() {
            variants.push(good[..cut].to_vec());
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 1 << (at % 8);
            variants.push(bad);
        }
    }
    let mut forged = Token::encode(&[3u8; 1000]).unwrap().as_bytes().to_vec();
    forged[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    variants.push(forged);
    variants.push(Vec::new());
    let before = t.stats();
    for bad in &variants {
        for id in [1, 2] {
            assert!(
                matches!(t.load_token(id, bad), Err(Error::CorruptState { id: e, .. }) if e == id),
                "accepted {bad:?}"
            );
        }
    }
    assert_eq!(t.stats(), before);
    assert_eq!(t.status(1).unwrap(), Status::Virtual);
    assert_eq!(t.restore(2).unwrap(), b"original");
}

// ---------------------------------------------------------------------------------------------
// Batches

#[test]
fn million_leaf_batch_resolves_by_arithmetic() {
    let mut t = tree();
    let info = t.batch_spawn(ROOT, "leaf", 4, 32).unwrap();
    assert_eq!(info.count, 1_082_400);
    assert_eq!(info.leaves, 1_048_576);
    assert_eq!(info.first_id, 1);
    assert_eq!(info.leaf_first_id, 1 + 32 + 1024 + 32_768);
    assert_eq!(info.level_range(1).unwrap(), 1..33);
    assert_eq!(
        info.level_range(4).unwrap(),
        info.leaf_first_id..info.leaf_first_id + (1 << 20)
    );
    assert!(info.level_range(0).is_err() && info.level_range(5).is_err());
    let stats = t.stats();
    assert_eq!(
        (stats.total, stats.virtual_agents, stats.batches),
        (1_082_401, 1_082_400, 1)
    );

    let first = t.info(1).unwrap();
    assert_eq!(
        (first.parent, first.depth, first.path.clone()),
        (Some(0), 1, vec![0])
    );
    assert_eq!(first.status, Status::Virtual);
    let last = t.info(1_082_400).unwrap();
    assert_eq!(last.path, vec![31, 31, 31, 31]);
    assert_eq!(last.depth, 4);
    assert_eq!(last.kind, "leaf");
    // Leaf with index i: path is i's base-32 digits.
    let i = 0b10110_00011_11111_00100u64;
    let leaf = t.info(info.leaf_first_id + i).unwrap();
    assert_eq!(leaf.path, vec![0b10110, 0b00011, 0b11111, 0b00100]);
    let parent = leaf.parent.unwrap();
    assert_eq!(t.path(parent).unwrap(), vec![0b10110, 0b00011, 0b11111]);
    assert!(t.children(parent).unwrap().any(|c| c == leaf.id));
    assert_eq!(t.child_count(parent).unwrap(), 32);
    assert_eq!(t.child_count(leaf.id).unwrap(), 0);
    assert_eq!(t.child_count(ROOT).unwrap(), 32);
    assert!(is_unknown(&t.info(1_082_401), 1_082_401));
    assert_eq!(t.stats().materialized, 1);
}

#[test]
fn billion_leaf_batch_is_one_record() {
    let mut t = tree();
    let info = t.batch_spawn(ROOT, "leaf", 6, 32).unwrap();
    assert_eq!(info.leaves, 1 << 30);
    assert_eq!(info.count, 1_108_378_656);
    assert!(std::mem::size_of::<Batch>() <= 64);
    let id = info.leaf_first_id + 123_456_789;
    t.touch(id).unwrap();
    assert_eq!(t.status(id).unwrap(), Status::Active);
    assert_eq!(t.info(id).unwrap().depth, 6);
    assert_eq!(t.stats().virtual_agents, info.count - 1);
}

#[test]
fn batch_arguments_and_overflow_are_rejected_without_change() {
    let mut t = tree();
    let bad = [(0, 4), (3, 0), (65, 1), (3, 1 << 32), (64, 2)];
    for (depth, branching) in bad {
        let r = t.batch_spawn(ROOT, "x", depth, branching);
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. })),
            "{depth} {branching}"
        );
    }
    assert!(is_unknown(&t.batch_spawn(7, "x", 1, 1), 7));
    assert_eq!(t.stats().total, 1);
    assert_eq!(t.child_count(ROOT).unwrap(), 0);
    // A chain of the maximal depth is fine.
    let chain = t.batch_spawn(ROOT, "chain", MAX_BATCH_DEPTH, 1).unwrap();
    assert_eq!(t.info(chain.leaf_first_id).unwrap().path, vec![0; 64]);
    // Fill the id space exactly, then every allocation fails.
    let rest = u64::MAX - t.total();
    let full = t.batch_spawn(ROOT, "big", 1, rest).unwrap();
    assert_eq!(t.total(), u64::MAX);
    assert_eq!(t.info(u64::MAX - 1).unwrap().path, vec![1 + rest - 1]);
    let before = t.stats();
    assert!(matches!(
        t.spawn(ROOT, "x"),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        t.batch_spawn(ROOT, "x", 1, 1),
        Err(Error::InvalidArgument { .. })
    ));
    assert_eq!(t.stats(), before);
    assert_eq!(t.child_count(ROOT).unwrap(), 1 + full.branching);
    // u64::MAX is never an agent, even with the id space full.
    assert!(is_unknown(&t.touch(u64::MAX), u64::MAX));
    assert!(is_unknown(&t.status(u64::MAX), u64::MAX));
    assert!(is_unknown(&t.load_token(u64::MAX, &[]), u64::MAX));
    assert!(!t.contains(u64::MAX));
    t.touch(u64::MAX - 1).unwrap();
    assert_eq!(t.status(u64::MAX - 1).unwrap(), Status::Active);
}

#[test]
fn spawns_under_virtual_nodes_follow_the_batch_children() {
    let mut t = tree();
    let b = t.batch_spawn(ROOT, "mid", 2, 3).unwrap(); // ids 1..=12
    let node = 2; // level 1, index 1; children 7, 8, 9
    let s = t.spawn(node, "extra").unwrap();
    assert_eq!(t.status(node).unwrap(), Status::Virtual);
    let inner = t.batch_spawn(node, "sub", 1, 2).unwrap();
    assert_eq!(
        t.children(node).unwrap().collect::<Vec<_>>(),
        vec![7, 8, 9, s, 14, 15]
    );
    assert_eq!(t.child_count(node).unwrap(), 6);
    assert_eq!(t.path(s).unwrap(), vec![1, 3]);
    assert_eq!(t.path(inner.first_id + 1).unwrap(), vec![1, 5]);
    assert_eq!(t.parent(inner.first_id + 1).unwrap(), Some(node));
    assert_eq!(t.depth(inner.first_id).unwrap(), 2);
    // Root: the batch block, then nothing else.
    assert_eq!(t.children(ROOT).unwrap().collect::<Vec<_>>(), vec![1, 2, 3]);
    let s2 = t.spawn(ROOT, "late").unwrap();
    assert_eq!(t.path(s2).unwrap(), vec![3]);
    assert_eq!(
        t.children(ROOT).unwrap().collect::<Vec<_>>(),
        vec![1, 2, 3, s2]
    );
    // A cursor covers the children that existed when it was made.
    let mut cursor = t.child_cursor(ROOT).unwrap();
    t.spawn(ROOT, "later").unwrap();
    let mut seen = Vec::new();
    while let Some(c) = cursor.next(&t) {
        seen.push(c);
    }
    assert_eq!(seen, vec![1, 2, 3, s2]);
    assert_eq!(b.leaf_first_id, 4);
    let mut out = Vec::new();
    let mut cursor = t.child_cursor(node).unwrap();
    assert_eq!(cursor.fill(&t, &mut out, 4), 4);
    assert_eq!(cursor.fill(&t, &mut out, 4), 2);
    assert_eq!(cursor.fill(&t, &mut out, 4), 0);
    assert_eq!(out, vec![7, 8, 9, s, 14, 15]);
}

#[test]
fn hilbert_coordinate_truncates_pads_and_clamps_the_path() {
    let mut t = AgentTree::new(2, 2).unwrap();
    let b = t.batch_spawn(ROOT, "w", 3, 6).unwrap();
    let leaf = b.leaf_first_id + 6 * 6 * 6 - 1; // path [5, 5, 5]
    assert_eq!(t.path(leaf).unwrap(), vec![5, 5, 5]);
    let expect = crate::hilbert::encode(&[3, 3], 2).unwrap();
    assert_eq!(t.hilbert(leaf).unwrap(), expect);
    assert_eq!(
        t.hilbert(2).unwrap(),
        crate::hilbert::encode(&[1, 0], 2).unwrap()
    );
    // Distinct paths within the clamp give distinct coordinates.
    let h: std::collections::HashSet<u128> = (b.first_id..b.first_id + 6 + 36)
        .map(|id| t.hilbert(id).unwrap())
        .collect();
    assert_eq!(h.len(), 16);
}

// ---------------------------------------------------------------------------------------------
// Model-based property test

/// A plain model: every node enumerated, statuses in a map, the LRU as a vector.
#[derive(Debug)]
struct Model {
    parent: Vec<Option<u64>>,
    kind: Vec<String>,
    children: Vec<Vec<u64>>,
    status: Vec<Status>,
    /// Active agents but the root, oldest first.
    lru: Vec<u64>,
    states: HashMap<u64, Vec<u8>>,
    batches: u64,
}

impl Model {
    fn new() -> Self {
        Model {
            parent: vec![None],
            kind: vec!["root".into()],
            children: vec![Vec::new()],
            status: vec![Status::Active],
            lru: Vec::new(),
            states: HashMap::new(),
            batches: 0,
        }
    }

    fn total(&self) -> u64 {
        self.parent.len() as u64
    }

    fn add(&mut self, parent: u64, kind: &str, status: Status) -> u64 {
        let id = self.total();
        self.parent.push(Some(parent));
        self.kind.push(kind.into());
        self.children.push(Vec::new());
        self.status.push(status);
        self.children[parent as usize].push(id);
        id
    }

    fn path(&self, mut id: u64) -> Vec<u64> {
        let mut path = Vec::new();
        while let Some(p) = self.parent[id as usize] {
            path.push(
                self.children[p as usize]
                    .iter()
                    .position(|&c| c == id)
                    .unwrap() as u64,
            );
            id = p;
        }
        path.reverse();
        path
    }

    fn count(&self, s: Status) -> u64 {
        self.status.iter().filter(|&&x| x == s).count() as u64
    }
}

#[derive(Debug, Clone)]
enum Op {
    Spawn(u16),
    Batch(u16, u32, u64),
    Touch(u16),
    Prune(u8),
    Compress(u16, Vec<u8>),
    Restore(u16),
    MoveToken(u16, u16),
    LoadCorrupt(u16, u16, u16),
}

fn state_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        (any::<u8>(), 0..300usize).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<u16>().prop_map(Op::Spawn),
        1 => (any::<u16>(), 1..=3u32, 1..=3u64).prop_map(|(p, d, b)| Op::Batch(p, d, b)),
        5 => any::<u16>().prop_map(Op::Touch),
        2 => (0..12u8).prop_map(Op::Prune),
        3 => (any::<u16>(), state_strategy()).prop_map(|(i, s)| Op::Compress(i, s)),
        2 => any::<u16>().prop_map(Op::Restore),
        1 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Op::MoveToken(a, b)),
        1 => (any::<u16>(), any::<u16>(), any::<u16>()).prop_map(|(a, b, c)| Op::LoadCorrupt(a, b, c)),
    ]
}

/// Model outcome of an operation: `Ok`, or the status name of an `AgentState` error, or
/// "unknown".
fn outcome<T>(r: &Result<T>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(Error::UnknownAgent { .. }) => "unknown",
        Err(Error::AgentState { state, .. }) => state,
        Err(Error::CorruptState { .. }) => "corrupt",
        Err(_) => "other",
    }
}

#[allow(clippy::too_many_lines, clippy::many_single_char_names)]
fn apply(t: &mut AgentTree, m: &mut Model, op: &Op) {
    let total = m.total();
    let pick = |x: u16| u64::from(x) % (total + 2);
    match op {
        Op::Spawn(p) => {
            let p = pick(*p);
            let r = t.spawn(p, "s");
            if p < m.total() {
                let id = m.add(p, "s", Status::Active);
                m.lru.push(id);
                assert_eq!(r.unwrap(), id);
            } else {
                assert!(is_unknown(&r, p));
            }
        }
        Op::Batch(p, depth, b) => {
            let p = pick(*p);
            let r = t.batch_spawn(p, "b", *depth, *b);
            if p >= m.total() {
                assert!(is_unknown(&r, p));
                return;
            }
            let info = r.unwrap();
            assert_eq!(info.first_id, m.total());
            let mut level = vec![p];
            for l in 1..=*depth {
                let mut next = Vec::new();
                for &parent in &level {
                    for _ in 0..*b {
                        next.push(m.add(parent, "b", Status::Virtual));
                    }
                }
                assert_eq!(
                    info.level_range(l).unwrap(),
                    next[0]..next[next.len() - 1] + 1
                );
                level = next;
            }
            assert_eq!(info.leaf_first_id, level[0]);
            assert_eq!(info.first_id + info.count, m.total());
            m.batches += 1;
        }
        Op::Touch(i) => {
            let id = pick(*i);
            let r = t.touch(id);
            let want = match m.status.get(id as usize) {
                None => "unknown",
                Some(Status::Compressed) => "compressed",
                Some(Status::Virtual) => {
                    m.status[id as usize] = Status::Active;
                    m.lru.push(id);
                    "ok"
                }
                Some(Status::Active) => {
                    if id != ROOT {
                        m.lru.retain(|&x| x != id);
                        m.lru.push(id);
                    }
                    "ok"
                }
            };
            assert_eq!(outcome(&r), want);
        }
        Op::Prune(max) => {
            let active = m.count(Status::Active);
            let excess = active.saturating_sub(u64::from(*max).max(1)) as usize;
            assert_eq!(
                t.prune(u64::from(*max)),
                m.lru[..excess.min(m.lru.len())].to_vec()
            );
        }
        Op::Compress(i, state) => {
            let id = pick(*i);
            let r = t.compress(id, state);
            let want = match m.status.get(id as usize) {
                None => "unknown",
                Some(Status::Active) if id == ROOT => "active",
                Some(Status::Active) => {
                    m.status[id as usize] = Status::Compressed;
                    m.lru.retain(|&x| x != id);
                    m.states.insert(id, state.clone());
                    "ok"
                }
                Some(s) => s.as_str(),
            };
            assert_eq!(outcome(&r), want);
        }
        Op::Restore(i) => {
            let id = pick(*i);
            let r = t.restore(id);
            match m.status.get(id as usize) {
                None => assert!(is_unknown(&r, id)),
                Some(Status::Compressed) => {
                    assert_eq!(r.unwrap(), m.states.remove(&id).unwrap());
                    m.status[id as usize] = Status::Active;
                    m.lru.push(id);
                }
                Some(s) => assert_eq!(outcome(&r), s.as_str()),
            }
        }
        Op::MoveToken(from, to) => {
            let (from, to) = (pick(*from), pick(*to));
            let bytes = match t.token(from) {
                Ok(token) => token.as_bytes().to_vec(),
                Err(e) => {
                    let want = match m.status.get(from as usize) {
                        None => "unknown",
                        Some(s) => s.as_str(),
                    };
                    assert_eq!(outcome::<()>(&Err(e)), want);
                    return;
                }
            };
            assert_eq!(m.status[from as usize], Status::Compressed);
            let r = t.load_token(to, &bytes);
            let want = match m.status.get(to as usize) {
                None => "unknown",
                Some(Status::Active) => "active",
                Some(_) => {
                    m.status[to as usize] = Status::Compressed;
                    let state = m.states[&from].clone();
                    m.states.insert(to, state);
                    "ok"
                }
            };
            assert_eq!(outcome(&r), want);
        }
        Op::LoadCorrupt(to, how, at) => {
            let to = pick(*to);
            let mut bytes = Token::encode(&vec![*how as u8; usize::from(*how % 100)])
                .unwrap()
                .as_bytes()
                .to_vec();
            let at = usize::from(*at) % bytes.len();
            match how % 3 {
                0 => bytes.truncate(at),
                1 => bytes[at] ^= 0x80,
                _ => bytes[0] = b'X',
            }
            let r = t.load_token(to, &bytes);
            let want = match m.status.get(to as usize) {
                None => "unknown",
                Some(Status::Active) => "active",
                Some(_) => "corrupt",
            };
            assert_eq!(outcome(&r), want);
        }
    }
}

fn check_counts_and_statuses(t: &AgentTree, m: &Model) {
    let stats = t.stats();
    assert_eq!(stats.total, m.total());
    assert_eq!(stats.active, m.count(Status::Active));
    assert_eq!(stats.compressed, m.count(Status::Compressed));
    assert_eq!(stats.virtual_agents, m.count(Status::Virtual));
    assert_eq!(stats.materialized, stats.active + stats.compressed);
    assert_eq!(stats.batches, m.batches);
    for id in 0..m.total() + 2 {
        match m.status.get(id as usize) {
            Some(&s) => assert_eq!(t.status(id).unwrap(), s, "status of {id}"),
            None => assert!(is_unknown(&t.status(id), id)),
        }
    }
}

fn check_structure(t: &AgentTree, m: &Model) {
    for id in 0..m.total() {
        let info = t.info(id).unwrap();
        let path = m.path(id);
        assert_eq!(info.parent, m.parent[id as usize], "parent of {id}");
        assert_eq!(info.kind, m.kind[id as usize]);
        assert_eq!(info.depth as usize, path.len(), "depth of {id}");
        assert_eq!(info.hilbert, t.hilbert_of_path(&path).unwrap());
        assert_eq!(info.path, path, "path of {id}");
        let children: Vec<u64> = t.children(id).unwrap().collect();
        assert_eq!(children, m.children[id as usize], "children of {id}");
        assert_eq!(t.child_count(id).unwrap(), children.len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn tree_matches_model(
        curve in prop_oneof![Just((4u32, 32u32)), Just((2, 2)), Just((3, 1))],
        ops in prop::collection::vec(op_strategy(), 1..40),
    ) {
        let mut t = AgentTree::new(curve.0, curve.1).unwrap();
        let mut m = Model::new();
        for op in &ops {
            apply(&mut t, &mut m, op);
            check_counts_and_statuses(&t, &m);
        }
        check_structure(&t, &m);
    }
}

// ---------------------------------------------------------------------------------------------
// Forgetting

#[test]
fn forget_drops_a_compressed_spawned_agent_for_good() {
    let mut t = tree();
    let keep = t.spawn(ROOT, "k").unwrap();
    let gone = t.spawn(ROOT, "k").unwrap();
    let after = t.spawn(ROOT, "k").unwrap();
    // Only a compressed agent can be forgotten; nothing changes on refusal.
    assert_eq!(state_of(&t.forget(gone)), Some("active"));
    assert_eq!(state_of(&t.forget(ROOT)), Some("active"));
    t.compress(gone, b"state").unwrap();
    let before = t.stats();
    t.forget(gone).unwrap();
    assert!(is_unknown(&t.status(gone), gone));
    assert!(is_unknown(&t.touch(gone), gone));
    assert!(is_unknown(&t.restore(gone), gone));
    assert!(is_unknown(&t.load_token(gone, b""), gone));
    assert!(is_unknown(&t.forget(gone), gone));
    assert!(!t.contains(gone));
    let s = t.stats();
    assert_eq!(s.compressed, before.compressed - 1);
    assert_eq!(s.materialized, before.materialized - 1);
    assert_eq!(s.total, before.total - 1);
    assert_eq!(s.virtual_agents, before.virtual_agents);
    assert_eq!(
        t.children(ROOT).unwrap().collect::<Vec<_>>(),
        vec![keep, after]
    );
    assert_eq!(t.child_count(ROOT).unwrap(), 2);
    // The others keep their place; a new agent gets a new id.
    assert_eq!(t.path(after).unwrap(), vec![2]);
    assert!(t.spawn(ROOT, "k").unwrap() > after);
}

#[test]
fn forget_refuses_batch_nodes_and_parents() {
    let mut t = tree();
    let info = t.batch_spawn(ROOT, "b", 1, 2).unwrap();
    t.touch(info.first_id).unwrap();
    t.compress(info.first_id, b"").unwrap();
    assert!(matches!(
        t.forget(info.first_id),
        Err(Error::InvalidArgument { .. })
    ));
    let parent = t.spawn(ROOT, "p").unwrap();
    let child = t.spawn(parent, "c").unwrap();
    t.compress(parent, b"").unwrap();
    assert!(matches!(
        t.forget(parent),
        Err(Error::InvalidArgument { .. })
    ));
    t.compress(child, b"").unwrap();
    t.forget(child).unwrap();
    t.forget(parent).unwrap();
    assert!(is_unknown(&t.info(parent), parent));
}

#[test]
fn a_cursor_survives_forgetting_the_children_it_did_not_reach() {
    let mut t = tree();
    let ids: Vec<u64> = (0..6).map(|_| t.spawn(ROOT, "k").unwrap()).collect();
    let mut cursor = t.child_cursor(ROOT).unwrap();
    assert_eq!(cursor.next(&t), Some(ids[0]));
    assert_eq!(cursor.next(&t), Some(ids[1]));
    for &id in &[ids[0], ids[3]] {
        t.compress(id, b"").unwrap();
        t.forget(id).unwrap();
    }
    let rest: Vec<u64> = std::iter::from_fn(|| cursor.next(&t)).collect();
    assert_eq!(rest, vec![ids[2], ids[4], ids[5]]);
}

proptest! {
    /// Forgetting many agents (the table's backward shifts, the records' compaction) keeps
    /// every other agent's status, LRU order and state.
    #[test]
    fn forgetting_keeps_the_others_intact(ops in proptest::collection::vec(0u8..4, 1..400)) {
        let mut t = tree();
        let mut model: HashMap<u64, Option<Vec<u8>>> = HashMap::new(); // None: active
        let mut order: Vec<u64> = Vec::new(); // active, least recently used first
        for (n, op) in ops.into_iter().enumerate() {
            let pick = |m: &HashMap<u64, Option<Vec<u8>>>, want: bool| {
                let mut ids: Vec<u64> = m
                    .iter()
                    .filter(|(_, s)| s.is_some() == want)
                    .map(|(&id, _)| id)
                    .collect();
                ids.sort_unstable();
                ids.get(n % ids.len().max(1)).copied()
            };
            match op {
                0 => {
                    let id = t.spawn(ROOT, "k").unwrap();
                    model.insert(id, None);
                    order.push(id);
                }
                1 => if let Some(id) = pick(&model, false) {
                    let state = n.to_le_bytes().to_vec();
                    t.compress(id, &state).unwrap();
                    model.insert(id, Some(state));
                    order.retain(|&a| a != id);
                },
                2 => if let Some(id) = pick(&model, true) {
                    t.forget(id).unwrap();
                    model.remove(&id);
                },
                _ => if let Some(id) = pick(&model, false) {
                    t.touch(id).unwrap();
                    order.retain(|&a| a != id);
                    order.push(id);
                },
            }
        }
        prop_assert_eq!(t.prune(1), order.clone());
        prop_assert_eq!(t.stats().materialized, model.len() as u64 + 1);
        for (&id, state) in &model {
            if let Some(state) = state {
                prop_assert_eq!(&t.token(id).unwrap().decode(id).unwrap(), state);
            } else {
                prop_assert_eq!(t.status(id).unwrap(), Status::Active);
            }
        }
    }
}
