//! The canonical bytes a state change's hash is taken over.
//!
//! Python's `state_hash(event)` is SHA-256 over the event's `prev_hash` and the protobuf
//! encoding of the whole `SwarmEvent` (its `StateChange` with `hash` empty), fields in number
//! order, defaults (empty, zero, false) left out as proto3 leaves them out, the payload's
//! oneof member written even when empty. Verifying a journal recomputes it for every change;
//! this writes those bytes from borrowed fields in one pass (Python's `_events/_canonical.py`
//! is the reference: a differential test holds the two to the generic encoder).
//!
//! Field numbers are the `.proto`'s: `SwarmEvent` 1-9, 11 (`state_change`), 15; `StateChange`
//! 1-8 (4, `hash`, is never written: it is what is being computed).

/// The fields of an event with a `StateChange` payload, borrowed from wherever they live.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateChangeEvent<'a> {
    /// `SwarmEvent.event_id` (1).
    pub event_id: &'a str,
    /// `SwarmEvent.timestamp_ns` (2, fixed64).
    pub timestamp_ns: u64,
    /// `SwarmEvent.trace_id` (3).
    pub trace_id: &'a str,
    /// `SwarmEvent.span_id` (4).
    pub span_id: &'a str,
    /// `SwarmEvent.agent_role` (5).
    pub agent_role: &'a str,
    /// `SwarmEvent.agent_id` (6).
    pub agent_id: &'a str,
    /// `SwarmEvent.schema_version` (7), as its varint's value (see `int_field`).
    pub schema_version: u64,
    /// `SwarmEvent.sequence` (8), as its varint's value.
    pub sequence: u64,
    /// `SwarmEvent.causation_id` (9).
    pub causation_id: &'a str,
    /// `SwarmEvent.run_id` (15).
    pub run_id: &'a str,
    /// `StateChange.target_type` (1).
    pub target_type: &'a str,
    /// `StateChange.target_resource` (2).
    pub target_resource: &'a str,
    /// `StateChange.prev_hash` (3).
    pub prev_hash: &'a [u8],
    /// `StateChange.data` (5).
    pub data: &'a [u8],
    /// `StateChange.is_reversible` (6).
    pub is_reversible: bool,
    /// `StateChange.form` (7, an enum's number), as its varint's value.
    pub form: u64,
    /// `StateChange.content_type` (8).
    pub content_type: &'a str,
}

fn varint(out: &mut Vec<u8>, value: u64) {
    let mut n = value;
    while n > 0x7F {
        // Truncation is the point: the low 7 bits, with the continuation bit.
        #[allow(clippy::cast_possible_truncation)]
        out.push((n as u8 & 0x7F) | 0x80);
        n >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    out.push(n as u8);
}

/// An integer field; `value` is what its varint holds (an `int64`'s negative value is its
/// 64-bit two's complement: the caller casts it).
fn int_field(out: &mut Vec<u8>, tag: u8, value: u64) {
    if value != 0 {
        out.push(tag);
        varint(out, value);
    }
}

fn bytes_field(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    if !value.is_empty() {
        out.push(tag);
        varint(out, value.len() as u64);
        out.extend_from_slice(value);
    }
}

fn varint_len(value: u64) -> usize {
    let mut n = value;
    let mut len = 1;
    while n > 0x7F {
        n >>= 7;
        len += 1;
    }
    len
}

fn bytes_field_len(value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        1 + varint_len(value.len() as u64) + value.len()
    }
}

fn int_field_len(value: u64) -> usize {
    if value == 0 {
        0
    } else {
        1 + varint_len(value)
    }
}

impl StateChangeEvent<'_> {
    fn inner_len(&self) -> usize {
        bytes_field_len(self.target_type.as_bytes())
            + bytes_field_len(self.target_resource.as_bytes())
            + bytes_field_len(self.prev_hash)
            + bytes_field_len(self.data)
            + if self.is_reversible { 2 } else { 0 }
            + int_field_len(self.form)
            + bytes_field_len(self.content_type.as_bytes())
    }

    /// Append the canonical bytes of the event to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        bytes_field(out, 0x0a, self.event_id.as_bytes());
        if self.timestamp_ns != 0 {
            out.push(0x11);
            out.extend_from_slice(&self.timestamp_ns.to_le_bytes());
        }
        bytes_field(out, 0x1a, self.trace_id.as_bytes());
        bytes_field(out, 0x22, self.span_id.as_bytes());
        bytes_field(out, 0x2a, self.agent_role.as_bytes());
        bytes_field(out, 0x32, self.agent_id.as_bytes());
        int_field(out, 0x38, self.schema_version);
        int_field(out, 0x40, self.sequence);
        bytes_field(out, 0x4a, self.causation_id.as_bytes());
        out.push(0x5a); // the oneof member, written even when empty
        varint(out, self.inner_len() as u64);
        bytes_field(out, 0x0a, self.target_type.as_bytes());
        bytes_field(out, 0x12, self.target_resource.as_bytes());
        bytes_field(out, 0x1a, self.prev_hash);
        bytes_field(out, 0x2a, self.data);
        if self.is_reversible {
            out.extend_from_slice(&[0x30, 0x01]);
        }
        int_field(out, 0x38, self.form);
        bytes_field(out, 0x42, self.content_type.as_bytes());
        bytes_field(out, 0x7a, self.run_id.as_bytes());
    }

    /// The canonical bytes of the event.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.data.len() + self.prev_hash.len());
        self.encode_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_event_is_the_empty_oneof_member_alone() {
        assert_eq!(StateChangeEvent::default().encode(), vec![0x5a, 0x00]);
    }

    #[test]
    fn fields_are_written_in_number_order_with_their_tags() {
        let event = StateChangeEvent {
            event_id: "e",
            timestamp_ns: 1,
            agent_role: "coder",
            sequence: 300,
            target_type: "FS",
            prev_hash: &[7],
            is_reversible: true,
            form: 2,
            run_id: "r",
            ..StateChangeEvent::default()
        };
        let mut expected = vec![0x0a, 1, b'e', 0x11, 1, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&[0x2a, 5, b'c', b'o', b'd', b'e', b'r']);
        expected.extend_from_slice(&[0x40, 0xac, 0x02]); // 300 as a varint
        expected.extend_from_slice(&[0x5a, 11, 0x0a, 2, b'F', b'S', 0x1a, 1, 7, 0x30, 1, 0x38, 2]);
        expected.extend_from_slice(&[0x7a, 1, b'r']);
        assert_eq!(event.encode(), expected);
    }

    #[test]
    fn a_negative_int_is_ten_bytes_and_a_long_field_a_long_length() {
        let data = vec![1u8; 200];
        let event = StateChangeEvent {
            sequence: u64::MAX, // -1 as an int64
            data: &data,
            ..StateChangeEvent::default()
        };
        let out = event.encode();
        assert_eq!(
            &out[..11],
            &[0x40, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        // The payload: 0x5a, its length (203 = 0xcb 0x01), then data's tag and length (200).
        assert_eq!(&out[11..16], &[0x5a, 0xcb, 0x01, 0x2a, 0xc8]);
        assert_eq!(out.len(), 11 + 3 + 3 + 200);
    }
}
