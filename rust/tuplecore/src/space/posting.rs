//! Posting lists: the tuple sequence numbers that share one index key, oldest first.
//!
//! Sequence numbers are pushed in increasing order, so a posting is always sorted and its
//! front is its oldest tuple. Removing the front is O(1). Removing from the middle only counts
//! the entry as stale; stale entries are skipped by readers, dropped when they reach the front,
//! and swept out when they outnumber live ones, so every removal is amortised O(1) and a posting
//! never holds more than about twice its live entries.

use std::collections::VecDeque;

/// One posting list. Most keys (a unique id, a rare value) hold a single tuple, so that case
/// is stored inline without a heap allocation, and the rarer list is boxed: a posting is 16
/// bytes, which keeps the index map (a million keys at 1e6 resident tuples) cache-friendly.
#[derive(Debug)]
pub enum Posting {
    One(u64),
    Many(Box<Many>),
}

/// The list form of a posting.
#[derive(Debug)]
pub struct Many {
    seqs: VecDeque<u64>,
    stale: usize,
}

impl Posting {
    pub fn new(seq: u64) -> Self {
        Posting::One(seq)
    }

    /// The newest sequence number (live or stale).
    pub fn last(&self) -> u64 {
        match self {
            Posting::One(s) => *s,
            Posting::Many(m) => m.seqs.back().copied().unwrap_or(0),
        }
    }

    /// Append a sequence number newer than every one already present.
    pub fn push(&mut self, seq: u64) {
        match self {
            Posting::One(first) => {
                let mut seqs = VecDeque::with_capacity(4);
                seqs.push_back(*first);
                seqs.push_back(seq);
                *self = Posting::Many(Box::new(Many { seqs, stale: 0 }));
            }
            Posting::Many(m) => m.seqs.push_back(seq),
        }
    }

    /// Live entries (an estimate only if a hash collision put one tuple here twice).
    pub fn live(&self) -> usize {
        match self {
            Posting::One(_) => 1,
            Posting::Many(m) => m.seqs.len().saturating_sub(m.stale),
        }
    }

    /// Iterate entries oldest first, stale ones included (callers check liveness).
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let (one, many) = match self {
            Posting::One(s) => (Some(*s), None),
            Posting::Many(m) => (None, Some(m.seqs.iter().copied())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Record that `seq` (already removed from the store) left this posting. `is_live` tells
    /// whether another sequence number is still stored. Returns `true` when the posting has no
    /// live entries left and should be dropped.
    pub fn remove(&mut self, seq: u64, is_live: impl Fn(u64) -> bool) -> bool {
        match self {
            Posting::One(s) => *s == seq || !is_live(*s),
            Posting::Many(m) => {
                let Many { seqs, stale } = &mut **m;
                if seqs.front() == Some(&seq) {
                    seqs.pop_front();
                } else {
                    *stale += 1;
                }
                // Drop stale entries that have reached the front. With no stale entries the
                // front is live: skip the lookup (it is a cache miss at 1e6 tuples).
                while *stale > 0 {
                    match seqs.front() {
                        Some(&front) if !is_live(front) => {
                            seqs.pop_front();
                            *stale -= 1;
                        }
                        _ => break,
                    }
                }
                if seqs.is_empty() {
                    return true;
                }
                if *stale > 8 && *stale * 2 > seqs.len() {
                    seqs.retain(|&s| is_live(s));
                    *stale = 0;
                    if seqs.is_empty() {
                        return true;
                    }
                }
                if seqs.len() <= *stale {
                    // The count says nothing live is left; confirm before dropping the key so a
                    // miscount can never unindex a live tuple.
                    seqs.retain(|&s| is_live(s));
                    *stale = 0;
                    return seqs.is_empty();
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn front_removal_and_stale_sweep() {
        let mut p = Posting::new(1);
        for s in 2..=100 {
            p.push(s);
        }
        let mut live: HashSet<u64> = (1..=100).collect();
        // Remove every odd number from the middle outwards: counts stale, then sweeps.
        for s in (1..=99).rev().step_by(2) {
            live.remove(&s);
            let empty = p.remove(s, |x| live.contains(&x));
            assert!(!empty);
        }
        assert_eq!(p.live(), 50);
        let got: Vec<u64> = p.iter().filter(|s| live.contains(s)).collect();
        assert_eq!(got, (2..=100).step_by(2).collect::<Vec<_>>());
        if let Posting::Many(m) = &p {
            let seqs = &m.seqs;
            assert!(
                seqs.len() <= 2 * 50 + 9,
                "stale entries were not swept: {}",
                seqs.len()
            );
        }
        for s in (2..=100).step_by(2) {
            live.remove(&s);
            let empty = p.remove(s, |x| live.contains(&x));
            assert_eq!(empty, s == 100);
        }
    }

    #[test]
    fn single_entry_is_inline() {
        let mut p = Posting::new(7);
        assert!(matches!(p, Posting::One(7)));
        assert!(p.remove(7, |_| false));
    }
}
