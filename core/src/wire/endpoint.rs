//! Where a peer's datagrams go: straight to its address, or through a TURN
//! relay as ChannelData (RFC 8656 §12).
//!
//! A ChannelData message is a 4-byte header — channel number and payload
//! length, both big-endian `u16` — followed by the payload, here one
//! WireGuard datagram. Senders write WireGuard at [`Endpoint::headroom`]
//! bytes into their buffer and the header in front of it ([`Endpoint::frame`]),
//! so relaying costs no copy.

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;

/// Size of the ChannelData header (RFC 8656 §12.4).
pub const CHANNEL_DATA_HEADER_LEN: usize = 4;

/// Channel numbers a client may bind (RFC 8656 §12: 0x4000 through 0x4FFF;
/// 0x5000..=0xFFFF are reserved).
pub const CHANNEL_NUMBERS: RangeInclusive<u16> = 0x4000..=0x4FFF;

/// Most padding bytes a ChannelData datagram may carry after its payload:
/// padding rounds `4 + length` up to a multiple of 4 and is optional over UDP
/// (RFC 8656 §12.5).
const MAX_CHANNEL_DATA_PADDING: usize = 3;

/// A peer's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Datagrams go to this address as they are.
    Direct(SocketAddr),
    /// Datagrams go to the TURN `server` as ChannelData on `channel`; the
    /// server forwards the payload to the peer address bound to that channel.
    Relayed {
        /// The TURN server's address (where our allocation lives).
        server: SocketAddr,
        /// The bound channel, in [`CHANNEL_NUMBERS`].
        channel: u16,
    },
}

impl Endpoint {
    /// The UDP destination on the wire: the peer's address, or the TURN server.
    #[inline]
    pub fn destination(self) -> SocketAddr {
        match self {
            Self::Direct(addr) | Self::Relayed { server: addr, .. } => addr,
        }
    }

    /// Bytes a sender keeps free in front of the WireGuard datagram for
    /// [`Endpoint::frame`]: the ChannelData header when relayed, else none.
    #[inline]
    pub fn headroom(self) -> usize {
        match self {
            Self::Direct(_) => 0,
            Self::Relayed { .. } => CHANNEL_DATA_HEADER_LEN,
        }
    }

    /// The datagram to put on the wire for a `len`-byte WireGuard datagram
    /// that sits at `buf[self.headroom()..]`: the header is written into the
    /// headroom in place. `None` when the payload is too long for the 16-bit
    /// length field (never for a datagram that fits in UDP).
    ///
    /// No padding: over UDP it is optional (RFC 8656 §12.5, "Over UDP, the
    /// padding is not required but MAY be included"), and the receiver takes
    /// the length from the header.
    #[inline]
    pub fn frame(self, buf: &mut [u8], len: usize) -> Option<&[u8]> {
        match self {
            Self::Direct(_) => buf.get(..len),
            Self::Relayed { channel, .. } => {
                let length = u16::try_from(len).ok()?;
                let framed = buf.get_mut(..CHANNEL_DATA_HEADER_LEN + len)?;
                framed[..2].copy_from_slice(&channel.to_be_bytes());
                framed[2..4].copy_from_slice(&length.to_be_bytes());
                Some(framed)
            }
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self::Direct(addr)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Direct(addr) => write!(f, "{addr}"),
            Self::Relayed { server, channel } => {
                write!(f, "relay {server} channel {channel:#06x}")
            }
        }
    }
}

/// Why a ChannelData datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChannelDataError {
    /// Shorter than its header, or than the length its header claims
    /// (RFC 8656 §12.6: silently discarded).
    #[error("ChannelData shorter than its length field")]
    Truncated,
    /// More bytes after the payload than padding explains.
    #[error("ChannelData longer than its length field and padding")]
    Oversized,
    /// A channel number outside 0x4000..=0x4FFF.
    #[error("ChannelData on a reserved channel number")]
    ReservedChannel,
}

/// Splits a ChannelData datagram into its channel number and payload.
/// Never panics, whatever the bytes.
#[inline]
pub fn parse_channel_data(datagram: &[u8]) -> Result<(u16, &[u8]), ChannelDataError> {
    let Some((header, rest)) = datagram.split_first_chunk::<CHANNEL_DATA_HEADER_LEN>() else {
        return Err(ChannelDataError::Truncated);
    };
    let channel = u16::from_be_bytes([header[0], header[1]]);
    let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if !CHANNEL_NUMBERS.contains(&channel) {
        return Err(ChannelDataError::ReservedChannel);
    }
    if rest.len() < length {
        return Err(ChannelDataError::Truncated);
    }
    if rest.len() - length > MAX_CHANNEL_DATA_PADDING {
        return Err(ChannelDataError::Oversized);
    }
    Ok((channel, &rest[..length]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: SocketAddr = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 5)),
        3478,
    );

    #[test]
    fn a_relayed_frame_is_channel_then_length_then_payload() {
        let relayed = Endpoint::Relayed {
            server: SERVER,
            channel: 0x4001,
        };
        let mut buf = [0u8; 9];
        buf[4..].copy_from_slice(b"hello");
        let framed = relayed.frame(&mut buf, 5).expect("fits");
        assert_eq!(framed, b"\x40\x01\x00\x05hello");
        assert_eq!(parse_channel_data(framed), Ok((0x4001, &b"hello"[..])));
    }

    #[test]
    fn a_direct_frame_is_the_datagram_itself() {
        let mut buf = *b"hello";
        assert_eq!(
            Endpoint::Direct(SERVER).frame(&mut buf, 5),
            Some(&b"hello"[..])
        );
        assert_eq!(Endpoint::Direct(SERVER).headroom(), 0);
    }

    #[test]
    fn padding_up_to_three_bytes_is_ignored_more_is_refused() {
        let padded = b"\x40\x00\x00\x01x\0\0\0";
        assert_eq!(parse_channel_data(padded), Ok((0x4000, &b"x"[..])));
        let oversized = b"\x40\x00\x00\x01x\0\0\0\0";
        assert_eq!(
            parse_channel_data(oversized),
            Err(ChannelDataError::Oversized)
        );
    }

    #[test]
    fn short_reserved_and_truncated_frames_are_refused() {
        assert_eq!(
            parse_channel_data(b"\x40\x00\x00"),
            Err(ChannelDataError::Truncated)
        );
        assert_eq!(
            parse_channel_data(b"\x40\x00\x00\x05abcd"),
            Err(ChannelDataError::Truncated)
        );
        assert_eq!(
            parse_channel_data(b"\x50\x00\x00\x00"),
            Err(ChannelDataError::ReservedChannel)
        );
        for len in 0..16 {
            let _ = parse_channel_data(&vec![0x40; len]);
        }
    }

    #[test]
    fn endpoints_print_readably() {
        assert_eq!(Endpoint::Direct(SERVER).to_string(), "203.0.113.5:3478");
        let relayed = Endpoint::Relayed {
            server: SERVER,
            channel: 0x4001,
        };
        assert_eq!(relayed.to_string(), "relay 203.0.113.5:3478 channel 0x4001");
    }
}
