//! Compress tokens: the self-validating, serialized form of a passivated agent's state.
//!
//! A token is one contiguous byte string, kept as a single boxed allocation while the agent is
//! compressed and handed out unchanged by `AgentTree::token` to move an agent between nodes.
//!
//! ```text
//! offset  size  field
//!      0     2  magic b"AT"
//!      2     1  format version (1)
//!      3     1  payload encoding: 0 = raw bytes, 1 = LZ4 block
//!      4     4  length of the original state, u32 little-endian
//!      8    16  xxh3-128 digest of the original state, little-endian
//!     24     *  payload
//! ```
//!
//! A raw payload is the state itself, so the digest covers every byte of the token after the
//! header. An LZ4 payload is an xxh3-64 checksum (u64 little-endian) of the LZ4 block followed
//! by the block: LZ4 decoding ignores some bits (the last sequence's match-length nibble, which
//! of several equal earlier bytes a match copies), and the checksum makes those altered bytes
//! fail validation too instead of decoding to the same state.
//!
//! A state is LZ4-compressed only when that makes the token strictly shorter, so a raw payload
//! is always exactly `length` bytes and an LZ4 payload always shorter: decoding checks both.

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::{Error, Result};

/// First two bytes of every token.
pub const MAGIC: [u8; 2] = *b"AT";
/// Token format version written by this build (and the only one it reads).
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 24;

const ENCODING_RAW: u8 = 0;
const ENCODING_LZ4: u8 = 1;
/// Bytes of the block checksum that starts an LZ4 payload.
const LZ4_CHECKSUM_LEN: usize = 8;
/// States shorter than this are stored raw without trying LZ4. On them it saves a few dozen
/// bytes at best, and an attempt costs more than the rest of a compress and restore together
/// (`lz4_flex` clears an 8 KiB hash table per call): with 16, a 72-byte state took about 350 ns
/// to compress and restore, 140 ns raw, a twentieth of a virtual actor's whole passivation and
/// reactivation. A million passivated 72-byte states take ~50 MB more raw.
const MIN_COMPRESSIBLE: usize = 128;
/// An LZ4 block expands at most about 255 times; a header claiming more is corrupt. Checking it
/// before allocating keeps a forged length from reserving gigabytes.
const MAX_LZ4_RATIO: usize = 255;

/// A validated token: only [`Token::encode`] and [`Token::parse`] build one, so holding a `Token`
/// means its header is well formed (the payload is checked again on every decode).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Box<[u8]>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("state_len", &self.state_len())
            .field("token_len", &self.0.len())
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Encode `state`: digest, length, and the payload (LZ4 when that shrinks a state of
    /// `MIN_COMPRESSIBLE` bytes or more, raw otherwise).
    ///
    /// Fails with [`Error::InvalidArgument`] when the state is 4 GiB or longer.
    pub fn encode(state: &[u8]) -> Result<Token> {
        let length = u32::try_from(state.len()).map_err(|_| Error::InvalidArgument {
            detail: format!(
                "agent state is {} bytes; the limit is {}",
                state.len(),
                u32::MAX
            ),
        })?;
        let block = if state.len() >= MIN_COMPRESSIBLE {
            Some(lz4_flex::block::compress(state))
                .filter(|block| LZ4_CHECKSUM_LEN + block.len() < state.len())
        } else {
            None
        };
        let payload_len = block
            .as_ref()
            .map_or(state.len(), |b| LZ4_CHECKSUM_LEN + b.len());
        // Exact capacity: the boxed slice is the one allocation, with no slack.
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload_len);
        bytes.extend_from_slice(&MAGIC);
        bytes.push(VERSION);
        bytes.push(if block.is_some() {
            ENCODING_LZ4
        } else {
            ENCODING_RAW
        });
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes.extend_from_slice(&xxh3_128(state).to_le_bytes());
        match &block {
            Some(block) => {
                bytes.extend_from_slice(&xxh3_64(block).to_le_bytes());
                bytes.extend_from_slice(block);
            }
            None => bytes.extend_from_slice(state),
        }
        Ok(Token(bytes.into_boxed_slice()))
    }

    /// Validate serialized token bytes completely (header, lengths, decompression, digest) and
    /// copy them into a `Token`. `id` only labels the [`Error::CorruptState`] on failure.
    pub fn parse(id: u64, bytes: &[u8]) -> Result<Token> {
        decode_bytes(bytes).map_err(|detail| Error::CorruptState { id, detail })?;
        Ok(Token(bytes.into()))
    }

    /// Decode the original state, verifying its length and digest again.
    /// `id` only labels the [`Error::CorruptState`] on failure.
    pub fn decode(&self, id: u64) -> Result<Vec<u8>> {
        decode_bytes(&self.0).map_err(|detail| Error::CorruptState { id, detail })
    }

    /// The serialized token.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length of the original state, from the header.
    pub fn state_len(&self) -> usize {
        read_u32(&self.0[4..8]) as usize
    }

    /// Whether the payload is LZ4-compressed (otherwise it is stored raw).
    pub fn is_compressed(&self) -> bool {
        self.0[3] == ENCODING_LZ4
    }

    /// Overwrite one byte (tests of the digest check on restore).
    #[cfg(test)]
    pub(crate) fn flip_byte(&mut self, at: usize) {
        self.0[at] ^= 0x5a;
    }
}

fn read_u32(bytes: &[u8]) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(bytes);
    u32::from_le_bytes(word)
}

/// Decode and verify a serialized token; `Err` carries a message for `CorruptState`.
fn decode_bytes(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "token is {} bytes, shorter than its {HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    if header[..2] != MAGIC {
        return Err(format!(
            "bad magic {:02x?} (expected {MAGIC:02x?})",
            &header[..2]
        ));
    }
    if header[2] != VERSION {
        return Err(format!(
            "unsupported token version {} (this build reads {VERSION})",
            header[2]
        ));
    }
    let length = read_u32(&header[4..8]) as usize;
    let mut digest = [0; 16];
    digest.copy_from_slice(&header[8..24]);
    let digest = u128::from_le_bytes(digest);
    let state = match header[3] {
        ENCODING_RAW => {
            if payload.len() != length {
                return Err(format!(
                    "raw payload is {} bytes but the header says {length}",
                    payload.len()
                ));
            }
            payload.to_vec()
        }
        ENCODING_LZ4 => {
            if payload.len() < LZ4_CHECKSUM_LEN
                || payload.len() >= length
                || length > payload.len().saturating_mul(MAX_LZ4_RATIO)
            {
                return Err(format!(
                    "LZ4 payload of {} bytes cannot hold a {length}-byte state",
                    payload.len()
                ));
            }
            let (checksum, block) = payload.split_at(LZ4_CHECKSUM_LEN);
            let mut expected = [0; LZ4_CHECKSUM_LEN];
            expected.copy_from_slice(checksum);
            if xxh3_64(block) != u64::from_le_bytes(expected) {
                return Err("LZ4 block checksum mismatch: the token bytes were altered".to_owned());
            }
            let mut state = vec![0; length];
            match lz4_flex::block::decompress_into(block, &mut state) {
                Ok(n) if n == length => state,
                Ok(n) => return Err(format!("LZ4 payload decoded to {n} bytes, not {length}")),
                Err(e) => return Err(format!("LZ4 payload does not decode: {e}")),
            }
        }
        other => return Err(format!("unknown payload encoding {other}")),
    };
    if xxh3_128(&state) != digest {
        return Err("digest mismatch: the state bytes were altered".to_owned());
    }
    Ok(state)
}
