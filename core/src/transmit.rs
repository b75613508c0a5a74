//! The one value every control-plane state machine hands its owner to send: sessions (ICE
//! checks), STUN probes and TURN relays (requests to their server), and the controller that
//! gathers them all for the shared socket.

use std::net::SocketAddr;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Our address it leaves from, when the sender knows it: a session's check names its
    /// local candidate (a relayed address there means "through that relay", which the
    /// controller turns into a transmit to the TURN server); a relay names its address toward
    /// the server. `None`: whichever address the shared socket sends from (a STUN probe
    /// learns its base only from the answer).
    pub source: Option<SocketAddr>,
    /// Where to.
    pub destination: SocketAddr,
    /// The datagram.
    pub contents: Vec<u8>,
}
