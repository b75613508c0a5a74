//! The largest envelope a real message can make, computed from the message limits in
//! [`message`](super::message), and the request sizes that follow from it.
//!
//! Every field is counted at its worst-case protobuf size (the longest varint, the longest
//! string the codec accepts, the most candidates), so a message that passes
//! [`SignalingMessage::validate`](super::SignalingMessage::validate) always seals within
//! [`MAX_ENVELOPE_LEN`]; a unit test builds that worst case and checks it.

use super::message::{MAX_CANDIDATES, MAX_CREDENTIAL_LEN, MAX_FOUNDATION_LEN};
use crate::community::announcement::{
    MAX_ADDRESSES, MAX_HOSTNAME_LEN, MAX_HOSTNAMES, MAX_NAME_LEN, MAX_NETWORKS,
};
use crate::community::xeddsa::SIGNATURE_LEN;

/// Bytes of a varint holding `value`.
const fn varint_len(value: u64) -> usize {
    let mut len = 1;
    let mut rest = value >> 7;
    while rest != 0 {
        len += 1;
        rest >>= 7;
    }
    len
}

/// A length-delimited field (tag below 16) with a body of `body` bytes.
const fn delimited(body: usize) -> usize {
    1 + varint_len(body as u64) + body
}

/// A varint field (tag below 16) holding at most `max`.
const fn varint_field(max: u64) -> usize {
    1 + varint_len(max)
}

const KEY_FIELD: usize = delimited(32);
const IP_FIELD: usize = delimited(16);
const PORT_FIELD: usize = varint_field(u16::MAX as u64);

/// `Candidate`: type, transport, address, port, priority, foundation, related address.
const CANDIDATE: usize = varint_field(4)
    + varint_field(2)
    + IP_FIELD
    + PORT_FIELD
    + varint_field(u32::MAX as u64)
    + delimited(MAX_FOUNDATION_LEN)
    + delimited(IP_FIELD + PORT_FIELD);

/// `SessionDescription` at its limits.
const SESSION_DESCRIPTION: usize = varint_field(u64::MAX) // session_id
    + varint_field(u64::MAX) // version
    + 2 * delimited(MAX_CREDENTIAL_LEN) // ufrag, pwd
    + MAX_CANDIDATES * delimited(CANDIDATE)
    + varint_field(1); // end_of_candidates

/// `Announcement` at its limits (`community::announcement`): key, name, addresses, networks,
/// exit flag, host names, leaving flag, sequence, signature.
const ANNOUNCEMENT: usize = KEY_FIELD
    + delimited(MAX_NAME_LEN)
    + MAX_ADDRESSES * IP_FIELD
    + MAX_NETWORKS * delimited(IP_FIELD + varint_field(128))
    + varint_field(1)
    + MAX_HOSTNAMES * delimited(MAX_HOSTNAME_LEN)
    + varint_field(1)
    + varint_field(u64::MAX)
    + delimited(SIGNATURE_LEN);

// The envelope limit is computed from the session description; an announcement must fit it.
const _: () = assert!(ANNOUNCEMENT <= SESSION_DESCRIPTION);

/// `SealedContent`: both keys, counter, message, boot id (fixed64), sealing time.
const MAX_SEALED_CONTENT_LEN: usize = 2 * KEY_FIELD
    + varint_field(u64::MAX)
    + delimited(delimited(SESSION_DESCRIPTION))
    + (1 + 8)
    + varint_field(u64::MAX);

/// Largest encoded envelope sealed, accepted or relayed: the largest real message (a session
/// description with [`MAX_CANDIDATES`] candidates and every string at its limit) sealed, with
/// its keys and nonce. About 6.5 KiB.
pub const MAX_ENVELOPE_LEN: usize =
    2 * KEY_FIELD + delimited(24) + delimited(MAX_SEALED_CONTENT_LEN + 16);

/// Most envelopes one publish request carries; a client splits larger batches.
pub const MAX_BATCH: usize = 128;

/// Largest publish request: [`MAX_BATCH`] envelopes of [`MAX_ENVELOPE_LEN`], each framed as a
/// repeated bytes field. About 840 KiB.
pub const MAX_REQUEST_LEN: usize = MAX_BATCH * delimited(MAX_ENVELOPE_LEN);

/// Largest message a client accepts from the server: one envelope in a `SubscribeResponse`.
pub const MAX_RESPONSE_LEN: usize = delimited(MAX_ENVELOPE_LEN) + 16;

// Checked when compiling: a full batch of the largest envelopes fits one request, and the
// limits stay small (an envelope under 8 KiB, a request under 1 MiB).
const _: () = assert!(MAX_REQUEST_LEN >= MAX_BATCH * (MAX_ENVELOPE_LEN + 3));
const _: () = assert!(MAX_ENVELOPE_LEN < 8 * 1024);
const _: () = assert!(MAX_REQUEST_LEN < 1024 * 1024);

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, UNIX_EPOCH};

    use rand_core::OsRng;

    use super::*;
    use crate::keys::PrivateKey;
    use crate::signaling::envelope::Sealer;
    use crate::signaling::message::{
        Candidate, CandidateKind, SessionDescription, SignalingMessage, Transport,
    };

    fn largest_message() -> SignalingMessage {
        let v6: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .expect("addr");
        SignalingMessage::SessionDescription(SessionDescription {
            session_id: u64::MAX,
            version: u64::MAX,
            ice_ufrag: "u".repeat(MAX_CREDENTIAL_LEN),
            ice_pwd: "p".repeat(MAX_CREDENTIAL_LEN),
            candidates: vec![
                Candidate {
                    kind: CandidateKind::Relayed,
                    transport: Transport::Tcp,
                    address: v6,
                    priority: u32::MAX,
                    foundation: "f".repeat(MAX_FOUNDATION_LEN),
                    related: Some(v6),
                };
                MAX_CANDIDATES
            ],
            end_of_candidates: true,
        })
    }

    #[test]
    fn the_largest_real_message_seals_within_the_envelope_limit_and_the_limit_is_tight() {
        let mut sealer = Sealer::new(&PrivateKey::from_bytes([1; 32]));
        let now = UNIX_EPOCH + Duration::from_secs(4_000_000_000);
        let envelope = sealer
            .seal(
                &PrivateKey::from_bytes([2; 32]).public_key(),
                &largest_message(),
                now,
                &mut OsRng,
            )
            .expect("the largest valid message seals");
        let len = envelope.encoded_len();
        assert!(len <= MAX_ENVELOPE_LEN, "{len} > {MAX_ENVELOPE_LEN}");
        // Within the few bytes the counter's varint has not grown into yet.
        assert!(MAX_ENVELOPE_LEN - len <= 16, "{len} vs {MAX_ENVELOPE_LEN}");
    }
}
