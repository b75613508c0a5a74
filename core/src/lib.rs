//! wice's sans-IO protocol core.
//!
//! Everything that decides what wice says on the wire and which path a peer takes, with no I/O:
//! every input carries `now`, randomness is a seeded stream the caller provides, and outputs are
//! values (datagrams to send, offers to publish, path changes) the caller acts on. The binary
//! crate owns the sockets, the clock, the TUN device and the signaling transports.
//!
//! Following a session description and a STUN datagram through the crate:
//!
//! - [`keys`]: WireGuard keys, the identities everything is addressed by;
//! - [`signaling`]: the messages peers exchange, sealed into envelopes from the sender's key to
//!   the recipient's, replay windows, the subscriber's key proof, back-off;
//! - [`session`]: one peer's offer protocol around an `is` ICE agent;
//! - [`ice`]: the node's controller: candidate sources shared by every session (host, STUN
//!   server-reflexive, TURN relays) and the routing of STUN/TURN datagrams to sessions;
//! - [`community`]: discovery among holders of a passphrase: the community key, signed member
//!   announcements and the [`community::Membership`] state machine; [`addresses`]: tunnel
//!   addresses derived from public keys;
//! - [`Transmit`]: the one datagram-to-send value every state machine above returns;
//! - [`wire`]: the rules shared with the datapath: datagram classification, ChannelData
//!   framing and a peer's path ([`wire::Endpoint`]);
//! - [`netcheck`]: NAT behaviour discovery (RFC 5780) and reachability of STUN/TURN servers,
//!   and the verdict `wice netcheck` prints;
//! - [`backoff`]: the one exponential back-off (plain for session timers, jittered for
//!   reconnecting transports);
//! - [`log_limit`], [`secret`]: rate-limited logging of attacker-triggerable lines, and text
//!   secrets that never show in `Debug`.
//!
//! `.ci/run` checks the layering: `cargo tree -p wice-core` shows no tokio, tonic, socket2,
//! tun-rs, libc or wice-datapath.

#![forbid(unsafe_code)]

pub mod addresses;
pub mod backoff;
pub mod community;
pub mod ice;
pub mod keys;
pub mod log_limit;
pub mod netcheck;
pub mod secret;
pub mod session;
pub mod signaling;
mod transmit;
pub mod wire;

pub use transmit::Transmit;
