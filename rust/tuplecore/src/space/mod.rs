//! A Linda tuple space whose index finds the oldest match without scanning the space.
//!
//! # Index
//! Every stored tuple has a sequence number (its age) and a *signature*: its arity and field
//! types. Two kinds of posting lists, each sorted oldest first, point at tuples:
//! * per signature, every tuple with that signature;
//! * per `(signature, position, value)`, every tuple with that value at that position.
//!
//! A template is compatible with a handful of signatures (its actual fields fix their types, its
//! formals fix others). Within each compatible signature the search walks the shortest posting
//! among the template's actual fields, or the signature list when it has none, and stops at the
//! first tuple that matches. Every visited tuple already agrees with the template on its arity,
//! on every field's type and on the chosen actual field, so a template with an actual field never
//! visits tuples of other lanes, arities or types. Results from several signatures are merged by
//! sequence number, which keeps matching FIFO: the oldest matching tuple wins.
//!
//! # Waiters and leases
//! Blocked takers and readers are registered here as waiters; [`Space::out`] hands a new tuple
//! to every matching reader and to the oldest matching taker instead of storing it. Leases are a
//! min-heap of expiry times consulted at the start of every operation, so an expired tuple is
//! reclaimed before any search could return it.
//!
//! Time is an explicit argument (`now`, nanoseconds on any monotonic clock): the core never reads
//! a clock, which keeps it deterministic under test.

mod capability;
mod posting;
mod value;
mod waiters;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

pub use capability::{Capability, Operation};
use posting::Posting;
pub use value::{matches, Bytes, Field, Template, Tuple, TypeTag, Value, MAX_ARITY};
use waiters::Waiters;

use crate::{Error, Result};

/// Hasher for sequence numbers: the low 57 bits are the sequence number itself, so any window
/// of consecutive sequence numbers (the live tuples of a FIFO workload) occupies distinct,
/// adjacent buckets and scans walk memory in order; the top 7 bits (the tag hashbrown filters
/// on) are mixed so tags still discriminate.
#[derive(Default, Clone, Copy)]
struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("SeqHasher only hashes u64 sequence numbers");
    }

    #[inline]
    fn write_u64(&mut self, seq: u64) {
        self.0 = seq ^ (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) & (0x7F << 57));
    }
}

type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

/// A stored tuple.
#[derive(Debug)]
struct Entry {
    fields: Tuple,
    sig: u32,
    /// Expiry time in the caller's clock; `u64::MAX` when the tuple has no lease.
    expires: u64,
}

/// One signature: an arity and the field types, with every live tuple that has it.
#[derive(Debug)]
struct Signature {
    tags: Box<[TypeTag]>,
    all: Option<Posting>,
}

/// What [`Space::out`] did with a tuple.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Waiting readers that matched; each should receive a copy of the tuple.
    pub readers: Vec<u64>,
    /// The oldest waiting taker that matched, with the tuple it now owns. When this is `Some`
    /// the tuple was not stored. If that taker turns out to be gone, pass the tuple back to
    /// [`Space::out`] (or later to [`Space::put_back`]) with the expiry it was written with, so
    /// it reaches the next waiter or the store and keeps its lease.
    pub taker: Option<(u64, Tuple)>,
}

/// Counters and sizes, as returned by [`Space::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Tuples currently stored.
    pub tuples: usize,
    /// Blocked takers and readers.
    pub waiters: usize,
    /// Tuples written (including those handed straight to a waiter).
    pub outs: u64,
    /// Tuples removed by a take (including hand-offs to waiting takers).
    pub takes: u64,
    /// Tuples returned by a read (including copies handed to waiting readers).
    pub reads: u64,
    /// Tuples handed straight to a waiting taker without being stored.
    pub handoffs: u64,
    /// Tuples reclaimed because their lease expired.
    pub expired: u64,
    /// Distinct signatures (arity and field types) seen.
    pub signatures: usize,
    /// Index keys currently held.
    pub postings: usize,
}

/// The tuple space. Not thread-safe by itself; the Python binding wraps it in a mutex.
#[derive(Debug, Default)]
pub struct Space {
    entries: SeqMap<Entry>,
    next_seq: u64,
    sigs: Vec<Signature>,
    sig_by_key: FxHashMap<u128, u32>,
    sigs_by_arity: FxHashMap<usize, Vec<u32>>,
    postings: FxHashMap<u64, Posting>,
    leases: BinaryHeap<Reverse<(u64, u64)>>,
    leased_live: usize,
    waiters: Waiters,
    stats: Stats,
}

fn check_arity(n: usize, what: &str) -> Result<()> {
    if n == 0 {
        return Err(Error::Arity {
            detail: format!("a {what} needs at least one field"),
        });
    }
    if n > MAX_ARITY {
        return Err(Error::Arity {
            detail: format!("a {what} has at most {MAX_ARITY} fields, got {n}"),
        });
    }
    Ok(())
}

/// Signature key: arity in the top byte, then 3 bits per field type.
fn sig_key(tags: impl Iterator<Item = TypeTag>) -> u128 {
    let mut key: u128 = 0;
    let mut n: u128 = 0;
    for t in tags {
        key = (key << 3) | u128::from(t as u8);
        n += 1;
    }
    key | (n << 120)
}

/// The hasher of index keys. Each word written goes through a folded multiply (the 128-bit
/// product's halves xor-ed, as foldhash and aHash do), which is non-linear: a purely
/// multiplicative hash such as Fx keeps its state linear in the small integers written
/// (signature, position, type tag, bool), and `(True, None, None)` had its position-0 and
/// position-2 keys collide. Keys are still 64-bit hashes, so postings are not exact; the index
/// stays correct under a collision (candidates are matched in full, and a tuple is never
/// listed twice in one posting, see `insert` / `remove_entry`).
struct KeyHasher(u64);

const KEY_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = fold_mul(self.0 ^ word, KEY_MUL);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        // The length goes in too, so trailing zero bytes still change the key.
        self.add(u64::from_le_bytes(last) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        fold_mul(self.0, 0xA076_1D64_78BD_642F)
    }
}

#[inline]
fn field_key(sig: u32, pos: usize, value: &Value) -> u64 {
    let mut h = KeyHasher(0x243F_6A88_85A3_08D3);
    h.write_u32(sig);
    h.write_u8(pos as u8);
    value.hash_into(&mut h);
    h.finish()
}

impl Space {
    /// An empty space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored tuples (expired ones are reclaimed by the next operation that takes a
    /// `now`; call [`Space::reap`] first for an exact figure).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Is the space empty?
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Does any stored tuple have a lease? (If not, callers need not read a clock.)
    pub fn has_leases(&self) -> bool {
        self.leased_live > 0
    }

    /// Write a tuple. `expires_at` is the absolute expiry time of its lease, if any.
    ///
    /// Matching waiters are served first: every matching reader, and the oldest matching taker,
    /// which receives the tuple instead of the store.
    pub fn out(&mut self, fields: Tuple, expires_at: Option<u64>, now: u64) -> Result<Outcome> {
        check_arity(fields.len(), "tuple")?;
        if let Some(at) = expires_at {
            if at <= now {
                return Err(Error::InvalidArgument {
                    detail: "a lease must expire after the current time".to_owned(),
                });
            }
        }
        self.reap(now);
        self.stats.outs += 1;
        let mut outcome = Outcome::default();
        if !self.waiters.is_empty() {
            let (readers, taker) = self.waiters.claim(&fields);
            self.stats.reads += readers.len() as u64;
            outcome.readers = readers;
            if let Some(id) = taker {
                self.stats.takes += 1;
                self.stats.handoffs += 1;
                outcome.taker = Some((id, fields));
                return Ok(outcome);
            }
        }
        self.insert(fields, expires_at);
        Ok(outcome)
    }

    /// Return a tuple that was handed to a taker which could not use it (cancelled before it
    /// resumed), with the absolute expiry `expires_at` it was written with: the lease runs on,
    /// it does not restart and is not lost. Returns `None` when the lease ran out meanwhile:
    /// the tuple is then reclaimed at once (counted as expired) instead of being stored.
    pub fn put_back(
        &mut self,
        fields: Tuple,
        expires_at: Option<u64>,
        now: u64,
    ) -> Result<Option<Outcome>> {
        check_arity(fields.len(), "tuple")?;
        if expires_at.is_some_and(|at| at <= now) {
            self.reap(now);
            self.stats.expired += 1;
            return Ok(None);
        }
        self.out(fields, expires_at, now).map(Some)
    }

    /// Remove and return the oldest tuple matching `template`, if any.
    pub fn take(&mut self, template: &[Field], now: u64) -> Result<Option<Tuple>> {
        check_arity(template.len(), "template")?;
        self.reap(now);
        let Some(seq) = self.find_first(template) else {
            return Ok(None);
        };
        self.stats.takes += 1;
        Ok(self.remove_entry(seq).map(|e| e.fields))
    }

    /// Return a copy of the oldest tuple matching `template`, if any.
    pub fn read(&mut self, template: &[Field], now: u64) -> Result<Option<Tuple>> {
        check_arity(template.len(), "template")?;
        self.reap(now);
        let Some(seq) = self.find_first(template) else {
            return Ok(None);
        };
        self.stats.reads += 1;
        Ok(self.entries.get(&seq).map(|e| e.fields.clone()))
    }

    /// Remove and return up to `limit` matching tuples, oldest first.
    pub fn take_all(&mut self, template: &[Field], limit: usize, now: u64) -> Result<Vec<Tuple>> {
        check_arity(template.len(), "template")?;
        self.reap(now);
        let seqs = self.find_many(template, limit);
        self.stats.takes += seqs.len() as u64;
        Ok(seqs
            .into_iter()
            .filter_map(|s| self.remove_entry(s))
            .map(|e| e.fields)
            .collect())
    }

    /// Return copies of up to `limit` matching tuples, oldest first.
    pub fn read_all(&mut self, template: &[Field], limit: usize, now: u64) -> Result<Vec<Tuple>> {
        check_arity(template.len(), "template")?;
        self.reap(now);
        let seqs = self.find_many(template, limit);
        self.stats.reads += seqs.len() as u64;
        Ok(seqs
            .iter()
            .filter_map(|s| self.entries.get(s))
            .map(|e| e.fields.clone())
            .collect())
    }

    /// Number of stored tuples matching `template`.
    pub fn count(&mut self, template: &[Field], now: u64) -> Result<usize> {
        check_arity(template.len(), "template")?;
        self.reap(now);
        let has_actual = template.iter().any(|f| matches!(f, Field::Actual(_)));
        let mut total = 0;
        for sig in self.compatible_sigs(template) {
            if has_actual {
                self.scan_sig(sig, template, |_| {
                    total += 1;
                    true
                });
            } else {
                total += self.sigs[sig as usize]
                    .all
                    .as_ref()
                    .map_or(0, Posting::live);
            }
        }
        Ok(total)
    }

    /// Register a blocked taker (`take = true`) or reader. Returns its id. The caller must have
    /// checked that nothing matches right now (otherwise the waiter could wait for a tuple that
    /// is already there).
    pub fn add_waiter(&mut self, template: Template, take: bool) -> Result<u64> {
        check_arity(template.len(), "template")?;
        Ok(self.waiters.add(template, take))
    }

    /// Withdraw a waiter (timed out or cancelled). Returns `false` if it was already served.
    pub fn remove_waiter(&mut self, id: u64) -> bool {
        self.waiters.remove(id)
    }

    /// Reclaim every tuple whose lease expired at or before `now`. Returns how many.
    pub fn reap(&mut self, now: u64) -> usize {
        let mut reclaimed = 0;
        while let Some(&Reverse((at, seq))) = self.leases.peek() {
            if at > now {
                break;
            }
            self.leases.pop();
            if self.entries.get(&seq).is_some_and(|e| e.expires == at) {
                self.remove_entry(seq);
                reclaimed += 1;
            }
        }
        self.stats.expired += reclaimed as u64;
        reclaimed
    }

    /// Counters and sizes.
    pub fn stats(&self) -> Stats {
        Stats {
            tuples: self.entries.len(),
            waiters: self.waiters.len(),
            signatures: self.sigs.len(),
            postings: self.postings.len() + self.sigs.iter().filter(|s| s.all.is_some()).count(),
            ..self.stats
        }
    }

    // --- internals -------------------------------------------------------------------------

    fn sig_for(&mut self, fields: &[Value]) -> u32 {
        let key = sig_key(fields.iter().map(Value::tag));
        if let Some(&id) = self.sig_by_key.get(&key) {
            return id;
        }
        let id = self.sigs.len() as u32;
        self.sigs.push(Signature {
            tags: fields.iter().map(Value::tag).collect(),
            all: None,
        });
        self.sig_by_key.insert(key, id);
        self.sigs_by_arity.entry(fields.len()).or_default().push(id);
        id
    }

    fn insert(&mut self, fields: Tuple, expires_at: Option<u64>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let sig = self.sig_for(&fields);
        for (pos, v) in fields.iter().enumerate() {
            self.postings
                .entry(field_key(sig, pos, v))
                // Two fields of this tuple whose keys collide share a posting: list it once.
                .and_modify(|p| {
                    if p.last() != seq {
                        p.push(seq);
                    }
                })
                .or_insert_with(|| Posting::new(seq));
        }
        match &mut self.sigs[sig as usize].all {
            Some(p) => p.push(seq),
            slot @ None => *slot = Some(Posting::new(seq)),
        }
        let expires = match expires_at {
            Some(at) => {
                self.leases.push(Reverse((at, seq)));
                self.leased_live += 1;
                at
            }
            None => u64::MAX,
        };
        self.entries.insert(
            seq,
            Entry {
                fields,
                sig,
                expires,
            },
        );
        self.maybe_rebuild_leases();
    }

    fn remove_entry(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.entries.remove(&seq)?;
        let entries = &self.entries;
        let is_live = |s: u64| entries.contains_key(&s);
        let mut done: SmallVec<[u64; 8]> = SmallVec::new();
        for (pos, v) in entry.fields.iter().enumerate() {
            let key = field_key(entry.sig, pos, v);
            if done.contains(&key) {
                continue; // a colliding key of this same tuple: listed (and removed) once
            }
            done.push(key);
            if let Some(p) = self.postings.get_mut(&key) {
                if p.remove(seq, is_live) {
                    self.postings.remove(&key);
                }
            }
        }
        let slot = &mut self.sigs[entry.sig as usize].all;
        if slot.as_mut().is_some_and(|p| p.remove(seq, is_live)) {
            *slot = None;
        }
        if entry.expires != u64::MAX {
            self.leased_live -= 1;
        }
        Some(entry)
    }

    /// Taken leased tuples leave their heap entries behind; rebuild when those dominate so the
    /// heap stays proportional to the live leases.
    fn maybe_rebuild_leases(&mut self) {
        if self.leases.len() > 1024 && self.leases.len() > 2 * self.leased_live {
            let entries = &self.entries;
            self.leases
                .retain(|Reverse((at, seq))| entries.get(seq).is_some_and(|e| e.expires == *at));
        }
    }

    /// Signatures with live tuples that a template can match, in creation order.
    fn compatible_sigs<'a>(&'a self, template: &'a [Field]) -> impl Iterator<Item = u32> + 'a {
        self.sigs_by_arity
            .get(&template.len())
            .into_iter()
            .flatten()
            .copied()
            .filter(move |&id| {
                let sig = &self.sigs[id as usize];
                sig.all.is_some()
                    && template
                        .iter()
                        .zip(sig.tags.iter())
                        .all(|(f, &t)| f.admits_tag(t))
            })
    }

    /// Visit, oldest first, every stored tuple of signature `sig` matching `template`, until
    /// `visit` returns `false`. Walks the shortest posting among the template's actual fields.
    fn scan_sig(&self, sig: u32, template: &[Field], mut visit: impl FnMut(u64) -> bool) {
        let mut best: Option<&Posting> = None;
        for (pos, f) in template.iter().enumerate() {
            if let Field::Actual(v) = f {
                match self.postings.get(&field_key(sig, pos, v)) {
                    // No tuple of this signature has this value here: nothing can match.
                    None => return,
                    Some(p) => {
                        if best.is_none_or(|b| p.live() < b.live()) {
                            best = Some(p);
                        }
                    }
                }
            }
        }
        let posting = match best {
            Some(p) => p,
            None => match &self.sigs[sig as usize].all {
                Some(p) => p,
                None => return,
            },
        };
        for seq in posting.iter() {
            if let Some(e) = self.entries.get(&seq) {
                if matches(template, &e.fields) && !visit(seq) {
                    return;
                }
            }
        }
    }

    fn find_first(&self, template: &[Field]) -> Option<u64> {
        let mut best: Option<u64> = None;
        for sig in self.compatible_sigs(template) {
            self.scan_sig(sig, template, |seq| {
                if best.is_none_or(|b| seq < b) {
                    best = Some(seq);
                }
                false
            });
        }
        best
    }

    fn find_many(&self, template: &[Field], limit: usize) -> Vec<u64> {
        let mut found = Vec::new();
        if limit == 0 {
            return found;
        }
        let mut nsigs = 0;
        for sig in self.compatible_sigs(template) {
            nsigs += 1;
            let mut n = 0;
            self.scan_sig(sig, template, |seq| {
                found.push(seq);
                n += 1;
                n < limit
            });
        }
        if nsigs > 1 {
            found.sort_unstable();
            found.truncate(limit);
        }
        found
    }
}
