//! Materialized agents: one open-addressing hash table whose entries are also the nodes of the
//! intrusive LRU list.
//!
//! An entry is 16 bytes: the agent id and two `u32` links. Active agents other than the root are
//! linked, by table position, from least (`head`) to most (`tail`) recently used, so `touch` costs
//! one probe plus the relinking: no second index, no separate node array. Compressed agents and
//! the root are detached (`prev == DETACHED`); a compressed entry keeps in `next` the index of its
//! token in a slab. A forgotten agent's entry is removed by backward-shift deletion (the
//! entries after it that may move closer to home do, their links translated), so linear probing
//! needs no tombstones. Growing rehashes every entry and translates the links.
//!
//! Positions are valid until the next insertion (which may grow the table).

use super::token::Token;

/// Position of an entry in the table.
pub(super) type Pos = u32;

/// End of the LRU list.
const NIL: u32 = u32::MAX;
/// `prev` of an entry that is not in the list (the root, or a compressed agent).
const DETACHED: u32 = u32::MAX - 1;
/// `next` of a detached entry without a token (the root).
const NO_TOKEN: u32 = u32::MAX;
/// Id of a vacant entry (never an agent id: ids are below `next_id <= u64::MAX`).
const VACANT_ID: u64 = u64::MAX;
const MIN_CAPACITY: usize = 16;
/// Positions must stay below the link markers.
const MAX_CAPACITY: usize = 1 << 31;
/// Most agents a table holds: 3/4 of the largest capacity.
pub(super) const MAX_MATERIALIZED: usize = MAX_CAPACITY / 4 * 3;
/// Fibonacci hashing multiplier (2^64 / golden ratio): spreads consecutive ids evenly.
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Clone, Copy)]
struct Entry {
    id: u64,
    prev: u32,
    next: u32,
}

const VACANT: Entry = Entry {
    id: VACANT_ID,
    prev: NIL,
    next: NIL,
};

/// What `touch` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Touched {
    /// The agent is active and now most recently used (or is the root).
    Active,
    /// The agent is compressed; nothing changed.
    Compressed,
}

/// The table of materialized agents with its LRU list and token slab.
pub(super) struct Table {
    entries: Vec<Entry>,
    /// `64 - log2(capacity)`: the home position of `id` is the top bits of `id * FIBONACCI`.
    shift: u32,
    len: usize,
    head: Pos,
    tail: Pos,
    tokens: Vec<Option<Token>>,
    free_tokens: Vec<u32>,
}

impl Table {
    pub(super) fn new() -> Self {
        Table {
            entries: vec![VACANT; MIN_CAPACITY],
            shift: 64 - MIN_CAPACITY.trailing_zeros(),
            len: 0,
            head: NIL,
            tail: NIL,
            tokens: Vec::new(),
            free_tokens: Vec::new(),
        }
    }

    /// Number of materialized agents.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether one more agent can be materialized (the table is capped at 2^31 entries, loaded
    /// to at most 3/4).
    pub(super) fn has_room(&self) -> bool {
        self.len < MAX_MATERIALIZED
    }

    #[inline]
    fn home(&self, id: u64) -> usize {
        (id.wrapping_mul(FIBONACCI) >> self.shift) as usize
    }

    /// Position of `id`, if materialized.
    #[inline]
    pub(super) fn find(&self, id: u64) -> Option<Pos> {
        if id == VACANT_ID {
            return None; // never an agent; it would match the first vacant entry
        }
        let mask = self.entries.len() - 1;
        let mut i = self.home(id);
        loop {
            let entry_id = self.entries[i].id;
            if entry_id == id {
                return Some(i as Pos);
            }
            if entry_id == VACANT_ID {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The token of a compressed agent, `None` when it is active.
    pub(super) fn token(&self, pos: Pos) -> Option<&Token> {
        let entry = self.entries[pos as usize];
        if entry.prev == DETACHED && entry.next != NO_TOKEN {
            self.tokens[entry.next as usize].as_ref()
        } else {
            None
        }
    }

    /// Whether the agent at `pos` is compressed.
    pub(super) fn is_compressed(&self, pos: Pos) -> bool {
        let entry = self.entries[pos as usize];
        entry.prev == DETACHED && entry.next != NO_TOKEN
    }

    /// Materialize `id` (absent; the caller checked [`Table::has_room`]) as an active agent:
    /// detached if `linked` is false (the root), else the most recently used.
    pub(super) fn insert_active(&mut self, id: u64, linked: bool) {
        let pos = self.insert(Entry {
            id,
            prev: DETACHED,
            next: NO_TOKEN,
        });
        if linked {
            self.link_tail(pos);
        }
    }

    /// Materialize `id` (absent; the caller checked [`Table::has_room`]) as compressed.
    pub(super) fn insert_compressed(&mut self, id: u64, token: Token) {
        let slot = self.store_token(token);
        self.insert(Entry {
            id,
            prev: DETACHED,
            next: slot,
        });
    }

    /// Mark the agent at `pos` most recently used if it is active.
    #[inline]
    pub(super) fn touch(&mut self, pos: Pos) -> Touched {
        let entry = self.entries[pos as usize];
        if entry.prev == DETACHED {
            // The root (always active) or a compressed agent.
            return if entry.next == NO_TOKEN {
                Touched::Active
            } else {
                Touched::Compressed
            };
        }
        if entry.next == NIL {
            return Touched::Active; // already the most recently used
        }
        self.unlink(entry);
        self.link_tail(pos);
        Touched::Active
    }

    /// Compress the active, linked agent at `pos`: detach it and store its token.
    pub(super) fn compress(&mut self, pos: Pos, token: Token) {
        let entry = self.entries[pos as usize];
        debug_assert!(entry.prev != DETACHED, "compress of a detached entry");
        self.unlink(entry);
        let slot = self.store_token(token);
        self.entries[pos as usize].prev = DETACHED;
        self.entries[pos as usize].next = slot;
    }

    /// Replace the token of the compressed agent at `pos`.
    pub(super) fn replace_token(&mut self, pos: Pos, token: Token) {
        debug_assert!(self.is_compressed(pos), "replace_token of an active entry");
        let slot = self.entries[pos as usize].next;
        self.tokens[slot as usize] = Some(token);
    }

    /// Make the compressed agent at `pos` active and most recently used, dropping its token.
    pub(super) fn activate(&mut self, pos: Pos) {
        debug_assert!(self.is_compressed(pos), "activate of an active entry");
        let slot = self.entries[pos as usize].next;
        self.tokens[slot as usize] = None;
        self.free_tokens.push(slot);
        self.link_tail(pos);
    }

    /// Remove the compressed agent at `pos`, dropping its token. Entries of its probe run move
    /// back (backward-shift deletion): positions of other entries may change.
    pub(super) fn remove(&mut self, pos: Pos) {
        debug_assert!(self.is_compressed(pos), "remove of an active entry");
        let slot = self.entries[pos as usize].next;
        self.tokens[slot as usize] = None;
        self.free_tokens.push(slot);
        let mask = self.entries.len() - 1;
        let mut hole = pos as usize;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let entry = self.entries[j];
            if entry.id == VACANT_ID {
                break;
            }
            // The entry at `j` may fill the hole unless its home lies cyclically in (hole, j].
            let displaced = j.wrapping_sub(self.home(entry.id)) & mask;
            let behind_hole = j.wrapping_sub(hole) & mask;
            if displaced >= behind_hole {
                self.entries[hole] = entry;
                if entry.prev != DETACHED {
                    self.relink(entry, hole as Pos);
                }
                hole = j;
            }
        }
        self.entries[hole] = VACANT;
        self.len -= 1;
    }

    /// Point the list neighbours of the linked `entry` at its new position `pos`.
    fn relink(&mut self, entry: Entry, pos: Pos) {
        if entry.prev == NIL {
            self.head = pos;
        } else {
            self.entries[entry.prev as usize].next = pos;
        }
        if entry.next == NIL {
            self.tail = pos;
        } else {
            self.entries[entry.next as usize].prev = pos;
        }
    }

    /// Ids of the `count` least recently used linked agents, oldest first (fewer if the list is
    /// shorter). Costs O(`count`).
    pub(super) fn oldest(&self, count: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(count.min(self.len));
        let mut cur = self.head;
        while out.len() < count && cur != NIL {
            let entry = self.entries[cur as usize];
            out.push(entry.id);
            cur = entry.next;
        }
        out
    }

    fn store_token(&mut self, token: Token) -> u32 {
        if let Some(slot) = self.free_tokens.pop() {
            self.tokens[slot as usize] = Some(token);
            slot
        } else {
            // At most `len < 2^31` tokens: the index stays below the markers.
            self.tokens.push(Some(token));
            (self.tokens.len() - 1) as u32
        }
    }

    /// Place a new entry, growing first if that would load the table beyond 3/4.
    fn insert(&mut self, entry: Entry) -> Pos {
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        self.len += 1;
        self.place(entry)
    }

    fn place(&mut self, entry: Entry) -> Pos {
        let mask = self.entries.len() - 1;
        let mut i = self.home(entry.id);
        while self.entries[i].id != VACANT_ID {
            i = (i + 1) & mask;
        }
        self.entries[i] = entry;
        i as Pos
    }

    /// Double the capacity: rehash every entry, then translate the list links.
    fn grow(&mut self) {
        let capacity = self.entries.len() * 2;
        let old = std::mem::replace(&mut self.entries, vec![VACANT; capacity]);
        self.shift -= 1;
        let mut moved = vec![NIL; old.len()];
        for (i, entry) in old.iter().enumerate() {
            if entry.id != VACANT_ID {
                moved[i] = self.place(*entry);
            }
        }
        let translate = |link: u32| {
            if link == NIL {
                NIL
            } else {
                moved[link as usize]
            }
        };
        for &pos in &moved {
            if pos == NIL {
                continue;
            }
            let entry = &mut self.entries[pos as usize];
            if entry.prev != DETACHED {
                entry.prev = translate(entry.prev);
                entry.next = translate(entry.next);
            }
        }
        self.head = translate(self.head);
        self.tail = translate(self.tail);
    }

    #[inline]
    fn unlink(&mut self, entry: Entry) {
        if entry.prev == NIL {
            self.head = entry.next;
        } else {
            self.entries[entry.prev as usize].next = entry.next;
        }
        if entry.next == NIL {
            self.tail = entry.prev;
        } else {
            self.entries[entry.next as usize].prev = entry.prev;
        }
    }

    #[inline]
    fn link_tail(&mut self, pos: Pos) {
        let tail = self.tail;
        let entry = &mut self.entries[pos as usize];
        entry.prev = tail;
        entry.next = NIL;
        if tail == NIL {
            self.head = pos;
        } else {
            self.entries[tail as usize].next = pos;
        }
        self.tail = pos;
    }

    /// The stored token of `pos`, mutable (tests of the digest check on restore).
    #[cfg(test)]
    pub(super) fn token_mut(&mut self, pos: Pos) -> Option<&mut Token> {
        let entry = self.entries[pos as usize];
        if entry.prev == DETACHED && entry.next != NO_TOKEN {
            self.tokens[entry.next as usize].as_mut()
        } else {
            None
        }
    }
}
