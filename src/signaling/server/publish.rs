//! Publishing, as every transport of `wice signal` does it: the gRPC `Publish` call, the
//! WebSocket's publish frame and the HTTP publish endpoint all hand their envelopes here.

use std::time::Instant;

use prost::bytes::Bytes;
use wice_proto::signaling as proto;

use super::State;
use super::check_published;
use super::connection::ConnectionInfo;
use super::counters::ServerCounters;
use wice_core::signaling::envelope::EnvelopeError;

/// Why a whole publish was refused (single envelopes are skipped and counted instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PublishRefusal {
    /// No key was proven on the connection.
    Unauthenticated,
    /// More envelopes than one call may carry.
    TooMany {
        /// How many came.
        n: usize,
        /// The limit.
        max: usize,
    },
    /// Over the connection's or its source address's rate.
    RateLimited,
}

impl std::fmt::Display for PublishRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unauthenticated => {
                f.write_str("prove a key (subscribe) on this connection before publishing")
            }
            Self::TooMany { n, max } => write!(f, "{n} envelopes in one call; at most {max}"),
            Self::RateLimited => f.write_str("rate limit exceeded; slow down"),
        }
    }
}

/// Takes `n` tokens from `connection`'s rate limits; false (counted) when over.
pub(super) fn within_rate(state: &State, connection: Option<&ConnectionInfo>, n: u32) -> bool {
    match connection {
        Some(connection) if !connection.try_take(n, Instant::now()) => {
            ServerCounters::add(&state.counters.rate_limited, n.into());
            false
        }
        _ => true,
    }
}

/// Checks and fans out `envelopes` published on `connection`: each must be well formed,
/// within the size limit, and sent as a key proven on that connection.
pub(super) async fn publish_envelopes(
    state: &State,
    connection: Option<&ConnectionInfo>,
    envelopes: Vec<Bytes>,
) -> Result<proto::PublishResponse, PublishRefusal> {
    let counters = &state.counters;
    let config = &state.config;
    // Publishing needs the key proof a subscription on this connection made.
    if !connection.is_some_and(ConnectionInfo::has_proven_any) {
        ServerCounters::add(&counters.unauthenticated_publish, 1);
        return Err(PublishRefusal::Unauthenticated);
    }
    if envelopes.len() > config.max_batch {
        ServerCounters::add(&counters.rejected_malformed, 1);
        return Err(PublishRefusal::TooMany {
            n: envelopes.len(),
            max: config.max_batch,
        });
    }
    let n = u32::try_from(envelopes.len()).unwrap_or(u32::MAX);
    if !within_rate(state, connection, n) {
        return Err(PublishRefusal::RateLimited);
    }
    let remote_ip = connection.map(|c| c.remote.ip());
    let mut response = proto::PublishResponse::default();
    for bytes in envelopes {
        let envelope = match check_published(&bytes, config.max_envelope_len) {
            Ok(envelope) => envelope,
            Err(EnvelopeError::Oversized { .. }) => {
                ServerCounters::add(&counters.rejected_oversized, 1);
                response.rejected += 1;
                continue;
            }
            Err(error) => {
                ServerCounters::add(&counters.rejected_malformed, 1);
                tracing::debug!(target: "wice::signal", remote = ?connection.map(|c| c.remote), %error, "malformed envelope");
                response.rejected += 1;
                continue;
            }
        };
        if !connection.is_some_and(|c| c.is_proven(&envelope.sender)) {
            ServerCounters::add(&counters.sender_not_proven, 1);
            response.rejected += 1;
            continue;
        }
        ServerCounters::add(&counters.accepted, 1);
        // Copied out: a slice would keep the whole request buffer alive while queued.
        let owned = Bytes::copy_from_slice(&bytes);
        if state.mailboxes.deliver(
            &envelope.recipient,
            &owned,
            (envelope.sender, remote_ip),
            &state.budgets,
            counters,
        ) {
            response.delivered += 1;
        }
        #[cfg(feature = "nats")]
        if let Some(bus) = &state.bus
            && !bus.publish(&envelope.recipient, owned, counters).await
        {
            response.rejected += 1;
        }
    }
    Ok(response)
}
