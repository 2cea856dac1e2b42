//! The life cycle of materialized agents: touch, prune, compress, restore, tokens.

use super::table::{Pos, Touched};
use super::{slots_exhausted, state_error, AgentTree, Status, Token, ROOT};
use crate::{Error, Result};

impl AgentTree {
    /// Record a use of `id` in O(1): a virtual agent is materialized as active, an active one
    /// becomes the most recently used. A compressed agent must be restored first.
    #[inline]
    pub fn touch(&mut self, id: u64) -> Result<()> {
        if let Some(pos) = self.table.find(id) {
            return match self.table.touch(pos) {
                Touched::Active => Ok(()),
                Touched::Compressed => Err(state_error(
                    id,
                    Status::Compressed,
                    "touch it (restore it first)",
                )),
            };
        }
        if id >= self.next_id {
            return Err(Error::UnknownAgent { id });
        }
        // Every id below `next_id` that is not materialized is a virtual batch node, or a
        // forgotten spawned agent (refused).
        self.place(id)?;
        if !self.table.has_room() {
            return Err(slots_exhausted());
        }
        self.table.insert_active(id, true);
        self.active += 1;
        Ok(())
    }

    /// The least recently used active agents beyond `max_active`, oldest first, for the caller
    /// to snapshot and compress; their status is unchanged. The root is always active, counts
    /// towards `max_active` and is never returned, so compressing the result leaves
    /// `max(max_active, 1)` active agents. Costs O(number returned).
    pub fn prune(&self, max_active: u64) -> Vec<u64> {
        let excess = self.active.saturating_sub(max_active.max(1));
        self.table
            .oldest(usize::try_from(excess).unwrap_or(usize::MAX))
    }

    /// Compress the active agent `id`, keeping `state` as a validated token (LZ4 when that
    /// shrinks a state of 128 bytes or more) and removing the agent from the LRU list.
    pub fn compress(&mut self, id: u64, state: &[u8]) -> Result<()> {
        self.check_compressible(id)?;
        let token = Token::encode(state)?;
        self.compress_with(id, token)
    }

    /// [`AgentTree::compress`] with a token already encoded by [`Token::encode`] (so a caller can
    /// encode a large state without holding a lock on the tree).
    pub fn compress_with(&mut self, id: u64, token: Token) -> Result<()> {
        let pos = self.check_compressible(id)?;
        self.table.compress(pos, token);
        self.active -= 1;
        self.compressed += 1;
        Ok(())
    }

    /// The error [`AgentTree::compress`] would return for `id`, if any.
    pub fn check_compress(&self, id: u64) -> Result<()> {
        self.check_compressible(id).map(|_| ())
    }

    pub(super) fn check_compressible(&self, id: u64) -> Result<Pos> {
        match (self.status(id)?, id) {
            (Status::Active, ROOT) => Err(state_error(
                id,
                Status::Active,
                "compress the root (it is always active)",
            )),
            (Status::Active, _) => self.table.find(id).ok_or(Error::UnknownAgent { id }),
            (Status::Virtual, _) => Err(state_error(
                id,
                Status::Virtual,
                "compress it (touch it first)",
            )),
            (Status::Compressed, _) => Err(state_error(
                id,
                Status::Compressed,
                "compress it again (restore it first)",
            )),
        }
    }

    /// The slot and token of the compressed agent `id`, or the error for `operation`.
    pub(super) fn compressed_slot(
        &self,
        id: u64,
        operation: &'static str,
    ) -> Result<(Pos, &Token)> {
        let status = self.status(id)?;
        self.table
            .find(id)
            .and_then(|pos| Some((pos, self.table.token(pos)?)))
            .ok_or_else(|| state_error(id, status, operation))
    }

    /// Restore the compressed agent `id`: decode its state, verify length and digest, and make
    /// it active and most recently used. On [`Error::CorruptState`] it stays compressed.
    pub fn restore(&mut self, id: u64) -> Result<Vec<u8>> {
        let (slot, token) =
            self.compressed_slot(id, "restore it (only a compressed agent can be restored)")?;
        let state = token.decode(id)?;
        self.table.activate(slot);
        self.compressed -= 1;
        self.active += 1;
        Ok(state)
    }

    /// Make `id` active and the most recently used, as an activation needs it, in one call: a
    /// compressed agent is restored and its state returned (as [`AgentTree::restore`]), a
    /// virtual or active one is touched (as [`AgentTree::touch`]) and `None` returned. On
    /// [`Error::CorruptState`] the agent stays compressed.
    pub fn activate(&mut self, id: u64) -> Result<Option<Vec<u8>>> {
        if self.status(id)? == Status::Compressed {
            self.restore(id).map(Some)
        } else {
            self.touch(id).map(|()| None)
        }
    }

    /// The token of the compressed agent `id` (see [`Token`] for its layout).
    pub fn token(&self, id: u64) -> Result<&Token> {
        let (_, token) =
            self.compressed_slot(id, "take its token (only a compressed agent has one)")?;
        Ok(token)
    }

    /// Validate serialized token bytes completely and make `id` compressed with that state.
    /// `id` must be virtual (it is materialized) or compressed (its token is replaced); an
    /// active agent must be compressed first, so a live instance is never silently replaced.
    pub fn load_token(&mut self, id: u64, bytes: &[u8]) -> Result<()> {
        self.check_loadable(id)?;
        let token = Token::parse(id, bytes)?;
        self.load_parsed(id, token)
    }

    /// [`AgentTree::load_token`] with a token already validated by [`Token::parse`].
    pub fn load_parsed(&mut self, id: u64, token: Token) -> Result<()> {
        if self.check_loadable(id)? == Status::Compressed {
            if let Some(pos) = self.table.find(id) {
                self.table.replace_token(pos, token);
            }
            return Ok(());
        }
        if !self.table.has_room() {
            return Err(slots_exhausted());
        }
        self.table.insert_compressed(id, token);
        self.compressed += 1;
        Ok(())
    }

    /// The state error [`AgentTree::load_token`] would return for `id`, if any (the token is
    /// not looked at).
    pub fn check_load_token(&self, id: u64) -> Result<()> {
        self.check_loadable(id).map(|_| ())
    }

    pub(super) fn check_loadable(&self, id: u64) -> Result<Status> {
        match self.status(id)? {
            Status::Active if id == ROOT => Err(state_error(
                id,
                Status::Active,
                "load a token into the root",
            )),
            Status::Active => Err(state_error(
                id,
                Status::Active,
                "load a token into it (compress it first)",
            )),
            other => Ok(other),
        }
    }

    /// Flip a byte of the stored token of `id` (tests of the digest check on restore).
    #[cfg(test)]
    pub(super) fn corrupt_stored_token(&mut self, id: u64, at: usize) {
        let pos = self.table.find(id).expect("materialized");
        self.table.token_mut(pos).expect("compressed").flip_byte(at);
    }
}
