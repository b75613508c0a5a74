//! Telling datagrams apart on the shared UDP socket.
//!
//! WireGuard, STUN (ICE checks, binding requests to STUN servers, TURN control)
//! and TURN ChannelData all arrive on the one socket. The first byte alone is
//! ambiguous: WireGuard message types 1..=4 fall inside STUN's 0..=3 range. The
//! rule below decides without it:
//!
//! 1. STUN (RFC 8489 §5): at least 20 bytes, top two bits of byte 0 clear, the
//!    magic cookie `21 12 A4 42` at bytes 4..8, and a length field (bytes 2..4)
//!    that equals the rest of the datagram and is a multiple of 4. No WireGuard
//!    message can pass: bytes 1..4 of every WireGuard message are zero, so its
//!    "length field" is 0, which would need a 20-byte datagram, and the shortest
//!    WireGuard message (a keepalive) is 32 bytes.
//! 2. TURN ChannelData (RFC 8656 §12.4): at least the 4-byte header and byte 0
//!    in 0x40..=0x7F (channel numbers 0x4000..=0x7FFF; RFC 5766 allowed all of
//!    them). No WireGuard message starts that way (types 1..=4). Only meaningful
//!    from a TURN server, which the caller checks before it trusts the header
//!    ([`crate::wire::endpoint::parse_channel_data`] checks the length field and the
//!    channel number, so a bad one is counted as ChannelData, not as WireGuard).
//! 3. Everything else goes to WireGuard, whose own parser checks type and exact
//!    sizes.

use crate::wire::endpoint::CHANNEL_DATA_HEADER_LEN;

/// What a datagram on the shared socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// A STUN message: an ICE connectivity check, a STUN server reply or TURN control.
    Stun,
    /// TURN ChannelData framing around a relayed datagram.
    ChannelData,
    /// Anything else: handed to WireGuard, which validates it.
    WireGuard,
}

/// STUN magic cookie (RFC 8489 §5).
pub const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// Size of the STUN message header.
const STUN_HEADER_LEN: usize = 20;

/// Classifies one datagram. Never panics, whatever the bytes.
#[inline]
pub fn classify(datagram: &[u8]) -> DatagramKind {
    if is_stun(datagram) {
        DatagramKind::Stun
    } else if is_channel_data(datagram) {
        DatagramKind::ChannelData
    } else {
        DatagramKind::WireGuard
    }
}

/// Whether a datagram is STUN: the one test the datapath's demux, the controller's routing,
/// the relay and the simulator all apply, so that no datagram is STUN to one of them and
/// WireGuard to another.
///
/// The rule is RFC 8489 §5's, not only RFC 7983's first-byte demux: RFC 7983 (first byte
/// 0..=3 is STUN) tells STUN from DTLS, RTP and ZRTP, none of which share our socket, and it
/// cannot tell STUN from WireGuard (types 1..=4). What does is what every STUN message of
/// RFC 5389 and later promises: the top two bits clear, the magic cookie, and a length field
/// that covers exactly the attributes, which are padded to 4 bytes, so the length is a
/// multiple of 4. The controller's copy of this test used to skip that last clause and took
/// datagrams the datapath hands to WireGuard (a 22-byte "request" with length 2) for checks;
/// `a_datagram_the_datapath_gives_wireguard_is_not_a_check_to_the_controller` pins it.
#[inline]
pub fn is_stun(d: &[u8]) -> bool {
    if d.len() < STUN_HEADER_LEN || d[0] & 0xC0 != 0 || d[4..8] != STUN_MAGIC_COOKIE {
        return false;
    }
    let length = usize::from(u16::from_be_bytes([d[2], d[3]]));
    length == d.len() - STUN_HEADER_LEN && length.is_multiple_of(4)
}

#[inline]
fn is_channel_data(d: &[u8]) -> bool {
    d.len() >= CHANNEL_DATA_HEADER_LEN && (0x40..=0x7F).contains(&d[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN Binding request with no attributes (RFC 5769-style header).
    static STUN_BINDING_REQUEST: [u8; 20] = [
        0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 0xB7, 0xE7, 0xA7, 0x01, 0xBC, 0x34, 0xD6,
        0x86, 0xFA, 0x87, 0xDF, 0xAE,
    ];

    /// A ChannelData frame on channel 0x4000 carrying 4 bytes.
    static CHANNEL_DATA: [u8; 8] = [0x40, 0x00, 0x00, 0x04, 0xDE, 0xAD, 0xBE, 0xEF];

    fn wireguard(kind: u8, len: usize) -> Vec<u8> {
        let mut d = vec![0xA5; len];
        d[0] = kind;
        d[1..4].fill(0);
        d
    }

    #[test]
    fn a_stun_binding_request_is_stun() {
        assert_eq!(classify(&STUN_BINDING_REQUEST), DatagramKind::Stun);
    }

    #[test]
    fn stun_with_a_wrong_length_field_is_not_stun() {
        let mut d = STUN_BINDING_REQUEST.to_vec();
        d.extend_from_slice(&[0; 4]);
        assert_eq!(classify(&d), DatagramKind::WireGuard);
    }

    #[test]
    fn stun_whose_length_is_not_a_multiple_of_four_is_not_stun() {
        // Header plus 2 bytes, and a length field that says so: no padded attribute list
        // is 2 bytes long.
        let mut d = STUN_BINDING_REQUEST.to_vec();
        d.extend_from_slice(&[0; 2]);
        d[3] = 2;
        assert!(!is_stun(&d));
        assert_eq!(classify(&d), DatagramKind::WireGuard);
        d.extend_from_slice(&[0; 2]);
        d[3] = 4;
        assert!(is_stun(&d));
    }

    #[test]
    fn channel_data_is_channel_data() {
        assert_eq!(classify(&CHANNEL_DATA), DatagramKind::ChannelData);
    }

    #[test]
    fn channel_data_with_a_bad_length_is_still_channel_data() {
        // The receiver checks the length against the source; WireGuard never sees it.
        assert_eq!(
            classify(&[0x40, 0x00, 0xFF, 0xFF, 1, 0, 0, 0]),
            DatagramKind::ChannelData
        );
    }

    #[test]
    fn every_wireguard_message_type_is_wireguard() {
        for (kind, len) in [(1, 148), (2, 92), (3, 64), (4, 32), (4, 1452)] {
            assert_eq!(
                classify(&wireguard(kind, len)),
                DatagramKind::WireGuard,
                "type {kind}"
            );
        }
    }

    #[test]
    fn wireguard_with_a_cookie_shaped_sender_index_stays_wireguard() {
        let mut d = wireguard(1, 148);
        d[4..8].copy_from_slice(&STUN_MAGIC_COOKIE);
        assert_eq!(classify(&d), DatagramKind::WireGuard);
    }

    #[test]
    fn short_and_empty_datagrams_do_not_panic() {
        for len in 0..24 {
            let _ = classify(&vec![0x40; len]);
            let _ = classify(&vec![0x00; len]);
        }
    }
}
