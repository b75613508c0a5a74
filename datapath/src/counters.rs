//! Counters for everything the datapath drops, so nothing is lost silently.
//!
//! Relaxed atomics: each counter is independent and only read for display.

use std::sync::atomic::{AtomicU64, Ordering};

use boringtun::noise::errors::WireGuardError;

macro_rules! counters {
    ($(#[$meta:meta])* $name:ident / $snapshot:ident { $($(#[$fmeta:meta])* $field:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: AtomicU64,)*
        }

        /// A point-in-time copy of the counters.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct $snapshot {
            $($(#[$fmeta])* pub $field: u64,)*
        }

        impl $name {
            /// Reads every counter.
            pub fn snapshot(&self) -> $snapshot {
                $snapshot { $($field: self.$field.load(Ordering::Relaxed),)* }
            }
        }

        impl $snapshot {
            /// `(name, value)` pairs in declaration order, for logs and status output.
            pub fn fields(&self) -> [(&'static str, u64); counters!(@count $($field)*)] {
                [$((stringify!($field), self.$field),)*]
            }
        }
    };
    (@count) => { 0 };
    (@count $head:ident $($tail:ident)*) => { 1 + counters!(@count $($tail)*) };
}

counters! {
    /// Why packets were dropped, device-wide.
    DropCounters / DropSnapshot {
        /// Outbound packet whose destination is in no peer's allowed IPs.
        no_route,
        /// Outbound packet for a peer with no known endpoint yet.
        no_endpoint,
        /// Outbound packet that is not IPv4 or IPv6.
        malformed_inner,
        /// Datagram that is not a well-formed WireGuard message (type or size wrong).
        invalid_packet,
        /// Handshake message whose mac1 does not verify.
        invalid_mac,
        /// Handshake from a key that is not a configured peer, or a receiver index we never issued.
        unknown_peer,
        /// Data or handshake that failed authentication or decryption.
        decrypt_failed,
        /// Data with a counter already seen or too old (replay protection).
        replayed,
        /// Decrypted packet whose inner source address is not in the sending peer's allowed IPs.
        source_not_allowed,
        /// Handshake answered with a cookie reply because the device is under load.
        under_load,
        /// Any other WireGuard protocol error (expired session, wrong state, ...).
        protocol_error,
        /// ChannelData from an address that is not one of our TURN servers.
        channel_data_unknown_server,
        /// ChannelData from a TURN server whose length field or channel number is wrong.
        channel_data_malformed,
        /// STUN/TURN datagram with no control-plane consumer, or its queue was full.
        control_dropped,
        /// UDP send failed.
        udp_send_error,
        /// Control-plane datagram (STUN/TURN, or a handshake the control plane
        /// asked for) not sent because the socket's send buffer was full: the
        /// control plane never waits for the socket.
        control_send_dropped,
        /// Write to the TUN device failed.
        tun_write_error,
    }
}

impl DropCounters {
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a WireGuard error under the reason an operator would look for.
    pub(crate) fn count_wireguard_error(&self, err: &WireGuardError) {
        use WireGuardError as E;
        let counter = match err {
            E::IncorrectPacketLength | E::WrongPacketType | E::InvalidPacket => {
                &self.invalid_packet
            }
            E::InvalidMac => &self.invalid_mac,
            E::WrongIndex | E::WrongKey => &self.unknown_peer,
            E::InvalidAeadTag | E::InvalidTai64nTimestamp => &self.decrypt_failed,
            E::InvalidCounter | E::DuplicateCounter | E::WrongTai64nTimestamp => &self.replayed,
            E::UnderLoad => &self.under_load,
            E::DestinationBufferTooSmall
            | E::UnexpectedPacket
            | E::NoCurrentSession
            | E::LockFailed
            | E::ConnectionExpired => &self.protocol_error,
        };
        Self::bump(counter);
    }
}
