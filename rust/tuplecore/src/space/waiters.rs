//! Blocked takers and readers, grouped by arity and served oldest first.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use super::value::{matches, Template, Value};

#[derive(Debug)]
struct Waiter {
    template: Template,
    take: bool,
}

/// Waiters keyed by id; ids grow with registration time, so id order is age order.
#[derive(Debug, Default)]
pub struct Waiters {
    by_arity: FxHashMap<usize, BTreeMap<u64, Waiter>>,
    arity_of: FxHashMap<u64, usize>,
    next_id: u64,
}

impl Waiters {
    pub fn is_empty(&self) -> bool {
        self.arity_of.is_empty()
    }

    pub fn len(&self) -> usize {
        self.arity_of.len()
    }

    pub fn add(&mut self, template: Template, take: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.arity_of.insert(id, template.len());
        self.by_arity
            .entry(template.len())
            .or_default()
            .insert(id, Waiter { template, take });
        id
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let Some(arity) = self.arity_of.remove(&id) else {
            return false;
        };
        if let Some(group) = self.by_arity.get_mut(&arity) {
            group.remove(&id);
        }
        true
    }

    /// Remove and return every waiting reader that matches `fields` and the oldest matching
    /// taker. Readers are served whatever their age relative to the taker: all of them were
    /// blocked on a tuple that, for an instant, was in the space.
    pub fn claim(&mut self, fields: &[Value]) -> (Vec<u64>, Option<u64>) {
        let mut readers = Vec::new();
        let mut taker = None;
        let Some(group) = self.by_arity.get_mut(&fields.len()) else {
            return (readers, taker);
        };
        for (&id, w) in group.iter() {
            if matches(&w.template, fields) {
                if !w.take {
                    readers.push(id);
                } else if taker.is_none() {
                    taker = Some(id);
                }
            }
        }
        for id in readers.iter().chain(taker.iter()) {
            group.remove(id);
            self.arity_of.remove(id);
        }
        (readers, taker)
    }
}
