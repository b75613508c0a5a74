//! wice's packet engine.
//!
//! A TUN device and one UDP socket, with one boringtun `Tunn` per peer between
//! them. Outbound packets are routed by longest-prefix match over the peers'
//! allowed IPs (`tx`); inbound datagrams are classified (STUN / TURN
//! ChannelData / WireGuard), decrypted and checked against the sender's allowed
//! IPs (`rx`). STUN and TURN datagrams leave through a bounded queue to the
//! control plane, which sends its own through [`Device::send_control`]; WireGuard
//! data never crosses into the control plane.
//!
//! A peer's path is an [`Endpoint`]: its address, or a TURN server and channel.
//! Relayed WireGuard is framed and unframed as ChannelData on the packet
//! threads themselves, in place; the control plane only picks the path
//! ([`Engine::set_path`]) and names the TURN servers ([`Engine::set_relay_servers`]).

pub mod allowed_ips;
// The wire rules the control plane shares (classification, ChannelData framing, the peer's
// path) live in the sans-IO core; the datapath applies them.
pub use wice_core::wire::{classify, endpoint};
pub mod counters;
mod device;
mod engine;
mod peer;
mod reconfigure;
pub mod rx;
mod threads;
pub mod tun_write;
pub mod tx;
pub mod udp;

pub use device::{ControlDatagram, Device, DeviceConfig, DeviceError};
pub use endpoint::Endpoint;
pub use engine::{Engine, HANDSHAKE_SCRATCH, PeerTable, PeerTableError};
pub use peer::{Peer, PeerConfig, PeerStats};
pub use rx::{InboundSink, RxBatch};
pub use threads::ThreadExit;
pub use tx::{Outbound, TxBatch};

/// Packets per batch on both paths: tun-rs's `IDEAL_BATCH_SIZE`, the most
/// segments one TSO super-packet splits into, and wireguard-go's figure.
pub const BATCH_SIZE: usize = 128;

/// Largest datagram or packet the datapath handles: a 64 KiB IP packet plus
/// WireGuard's 32 bytes of framing and ChannelData's 4, rounded up.
pub const MAX_DATAGRAM: usize = 65_536 + 64;

/// First 8 characters of a key's base64, for logs.
pub fn short_key(key: &[u8; 32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(8);
    for chunk in key[..6].chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            s.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
        }
    }
    s
}

#[cfg(test)]
mod attack_tests;
#[cfg(test)]
mod forge;
#[cfg(test)]
mod tests;
