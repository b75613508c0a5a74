//! The controller's one deadline: the earliest of its children's, with the child named.

use std::net::SocketAddr;
use std::time::Instant;

use crate::keys::PublicKey;
use crate::session;

use super::Controller;

/// Why the controller wants [`Controller::handle_timeout`] called: which child's deadline is
/// the earliest, and that child's own reason where it has one. Ties go to sessions (in key
/// order), then STUN probes, then relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutReason {
    /// A peer's session: an offer resend, a give-up, a restart or its ICE agent's checks.
    Session {
        /// The peer.
        peer: PublicKey,
        /// The session's own reason.
        reason: session::TimeoutReason,
    },
    /// A STUN server probe: a retransmission, or the next probe (refresh or retry).
    StunProbe {
        /// The server asked.
        server: SocketAddr,
    },
    /// A TURN relay: its client's retransmissions and refreshes, the allocation's deadline, a
    /// reallocation after loss, or a probe of the allocation.
    Relay {
        /// The TURN server.
        server: SocketAddr,
    },
}

impl Controller {
    /// When to call [`Controller::handle_timeout`], and why.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<(Instant, TimeoutReason)> {
        // Cached: only an input moves a session's deadline, and each input refreshes it.
        let sessions = self.peers.iter().filter_map(|(peer, entry)| {
            let (at, reason) = entry.deadline?;
            Some((
                at,
                TimeoutReason::Session {
                    peer: *peer,
                    reason,
                },
            ))
        });
        let probes = self.probes.iter().filter_map(|probe| {
            let server = probe.server();
            Some((probe.poll_timeout()?, TimeoutReason::StunProbe { server }))
        });
        let relays = self.relays.iter_mut().filter_map(|relay| {
            let server = relay.server();
            Some((relay.poll_timeout(now)?, TimeoutReason::Relay { server }))
        });
        sessions
            .chain(probes)
            .chain(relays)
            .min_by_key(|(at, _)| *at)
    }
}
