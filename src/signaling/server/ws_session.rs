//! One WebSocket subscription: the key proof, then the mailbox and publishes until either
//! side ends it. The WebSocket twin of the gRPC `Subscribe` call, with the same limits: the
//! same challenge and timeouts, the same per-connection rate (each publish costs its
//! envelopes, every other frame one token), the same bounded queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::OsRng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use wice_proto::signaling as proto;

use super::State;
use super::connection::{ConnectionInfo, OpenCall};
use super::counters::ServerCounters;
use super::mailboxes::{AddError, OpenMailbox};
use super::publish::{PublishRefusal, publish_envelopes, within_rate};
use super::queue::SubscriberQueue;
use crate::signaling::ws_frame::{ClientFrame, Refusal, RefusalCode, ServerFrame};
use crate::signaling::ws_socket;
use wice_core::keys::{KEY_LEN, PublicKey};
use wice_core::signaling::challenge::PendingChallenge;

/// How often the server pings a quiet client.
pub(super) const PING_INTERVAL: Duration = Duration::from_secs(30);
/// A client silent this long (no frame, no pong) is gone.
pub(super) const SILENCE_LIMIT: Duration = Duration::from_secs(50);
/// A subscriber that does not take a frame within this time is dropped.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

/// What came in from the client.
enum Inbound {
    Frame(ClientFrame),
    /// A ping or pong: keepalive, already answered by tungstenite.
    Keepalive,
    /// A frame that is not ours.
    Malformed,
    /// Closed, failed, or over the rate.
    Gone,
}

async fn next_inbound<S>(
    ws: &mut WebSocketStream<S>,
    state: &State,
    connection: &ConnectionInfo,
) -> Inbound
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let message = match ws_socket::next(ws).await {
        Some(Ok(message)) => message,
        Some(Err(_)) | None => return Inbound::Gone,
    };
    match message {
        Message::Binary(bytes) => match ClientFrame::decode(&bytes) {
            Ok(frame) => Inbound::Frame(frame),
            Err(_) => Inbound::Malformed,
        },
        // Keepalives cost the sender's rate like any frame: a ping flood is refused.
        Message::Ping(_) | Message::Pong(_) => {
            if within_rate(state, Some(connection), 1) {
                Inbound::Keepalive
            } else {
                Inbound::Gone
            }
        }
        Message::Text(_) | Message::Frame(_) => Inbound::Malformed,
        Message::Close(_) => Inbound::Gone,
    }
}

/// Sends `frame`, giving up after [`WRITE_TIMEOUT`].
async fn send<S>(ws: &mut WebSocketStream<S>, frame: prost::bytes::Bytes) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, ws_socket::send(ws, Message::Binary(frame))).await,
        Ok(Ok(()))
    )
}

fn event(event: proto::subscribe_response::Event) -> prost::bytes::Bytes {
    ServerFrame::Event(proto::SubscribeResponse { event: Some(event) }).encode()
}

/// Refuses the socket: counts, sends the reason, closes.
async fn refuse<S>(
    ws: &mut WebSocketStream<S>,
    counter: &std::sync::atomic::AtomicU64,
    code: RefusalCode,
    reason: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ServerCounters::add(counter, 1);
    tracing::debug!(target: "wice::signal", reason, "WebSocket subscription refused");
    let frame = ServerFrame::Refused(Refusal {
        code,
        reason: reason.to_owned(),
    });
    let _ = send(ws, frame.encode()).await;
    let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(None)).await;
}

/// Runs one socket's subscription to the end. `call` keeps the connection counted busy.
pub(super) async fn run<S>(
    state: Arc<State>,
    connection: ConnectionInfo,
    mut ws: WebSocketStream<S>,
    call: OpenCall,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use proto::subscribe_request::Step;
    use proto::subscribe_response::Event;

    let counters = &state.counters;
    let timeout = state.config.auth_timeout;
    let next_step = async |ws: &mut WebSocketStream<S>| loop {
        match tokio::time::timeout(timeout, next_inbound(ws, &state, &connection)).await {
            Ok(Inbound::Keepalive) => {}
            Ok(Inbound::Frame(ClientFrame::Step(step))) => return Ok(step.step),
            Ok(Inbound::Frame(ClientFrame::Publish(_))) => {
                return Err(Some((
                    RefusalCode::Unauthenticated,
                    "publish before the key proof",
                )));
            }
            Ok(Inbound::Malformed) => {
                return Err(Some((RefusalCode::Malformed, "malformed frame")));
            }
            Ok(Inbound::Gone) => return Err(None),
            Err(_) => return Err(Some((RefusalCode::Unauthenticated, "no key proof in time"))),
        }
    };

    // 1. Hello: which key, and whether it is a group key. Each attempt costs one token.
    if !within_rate(&state, Some(&connection), 1) {
        return refuse(
            &mut ws,
            &counters.rate_limited,
            RefusalCode::RateLimited,
            "rate limit exceeded",
        )
        .await;
    }
    let (key, group) = match next_step(&mut ws).await {
        Ok(Some(Step::Hello(hello))) => {
            match <[u8; KEY_LEN]>::try_from(hello.public_key.as_ref()) {
                Ok(bytes) => (PublicKey::from_bytes(bytes), hello.group),
                Err(_) => {
                    return refuse(
                        &mut ws,
                        &counters.rejected_malformed,
                        RefusalCode::Malformed,
                        "the public key must be 32 bytes",
                    )
                    .await;
                }
            }
        }
        Ok(_) => {
            return refuse(
                &mut ws,
                &counters.rejected_malformed,
                RefusalCode::Malformed,
                "the first message must be a hello",
            )
            .await;
        }
        Err(Some((RefusalCode::Unauthenticated, reason))) => {
            return refuse(
                &mut ws,
                &counters.auth_failed,
                RefusalCode::Unauthenticated,
                reason,
            )
            .await;
        }
        Err(Some((code, reason))) => {
            return refuse(&mut ws, &counters.rejected_malformed, code, reason).await;
        }
        Err(None) => return,
    };

    // 2. The challenge, and its answer.
    let (pending, challenge) = PendingChallenge::issue(&key, &mut OsRng);
    if !send(&mut ws, event(Event::Challenge(challenge))).await {
        return;
    }
    let proven = match next_step(&mut ws).await {
        Ok(Some(Step::Answer(answer))) => pending.verify(&answer.secret),
        Err(None) => return,
        _ => false,
    };
    if !proven {
        return refuse(
            &mut ws,
            &counters.auth_failed,
            RefusalCode::Unauthenticated,
            "proof of key ownership failed",
        )
        .await;
    }

    // 3. The mailbox; and this connection may now publish as `key`.
    connection.prove(key);
    let mailbox = match OpenMailbox::open(&state, key, group) {
        Ok(mailbox) => mailbox,
        Err(AddError::Full) => {
            return refuse(
                &mut ws,
                &counters.refused_capacity,
                RefusalCode::Capacity,
                "server at its subscription limit",
            )
            .await;
        }
        Err(AddError::Closing) => {
            let frame = ServerFrame::Refused(Refusal {
                code: RefusalCode::Unavailable,
                reason: "shutting down".to_owned(),
            });
            let _ = send(&mut ws, frame.encode()).await;
            return;
        }
    };
    tracing::debug!(target: "wice::signal", remote = %connection.remote, %key, "subscribed over WebSocket");
    if send(&mut ws, event(Event::Subscribed(proto::Subscribed {}))).await {
        serve_mailbox(&state, &connection, &mut ws, &mailbox.queue).await;
    }
    drop(mailbox);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(None)).await;
    drop(call);
    tracing::debug!(target: "wice::signal", remote = %connection.remote, %key, "unsubscribed");
}

/// What to send next, decided inside the select and sent after it (one writer).
enum Next {
    Send(prost::bytes::Bytes),
    Ping,
    Idle,
    End,
}

/// Streams the mailbox and serves publishes until the client leaves, falls silent, breaks
/// a rule, or the queue is closed (shutdown, or a newer subscription of the same key).
async fn serve_mailbox<S>(
    state: &State,
    connection: &ConnectionInfo,
    ws: &mut WebSocketStream<S>,
    queue: &SubscriberQueue,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.reset();
    loop {
        let next = tokio::select! {
            envelope = queue.pop() => match envelope {
                Some(bytes) => Next::Send(ServerFrame::envelope(bytes)),
                None => Next::End,
            },
            inbound = next_inbound(ws, state, connection) => {
                last_heard = Instant::now();
                match inbound {
                    Inbound::Keepalive => Next::Idle,
                    Inbound::Frame(ClientFrame::Publish(request)) => {
                        let frame = match publish_envelopes(state, Some(connection), request.envelopes).await {
                            Ok(response) => ServerFrame::Published(response),
                            Err(refusal) => ServerFrame::Refused(Refusal {
                                code: match refusal {
                                    PublishRefusal::Unauthenticated => RefusalCode::Unauthenticated,
                                    PublishRefusal::TooMany { .. } => RefusalCode::Malformed,
                                    PublishRefusal::RateLimited => RefusalCode::RateLimited,
                                },
                                reason: refusal.to_string(),
                            }),
                        };
                        Next::Send(frame.encode())
                    }
                    // Nothing else is expected now; extra frames cost the sender's rate.
                    Inbound::Frame(ClientFrame::Step(_)) | Inbound::Malformed => {
                        ServerCounters::add(&state.counters.rejected_malformed, 1);
                        if within_rate(state, Some(connection), 1) { Next::Idle } else { Next::End }
                    }
                    Inbound::Gone => Next::End,
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    Next::End
                } else {
                    Next::Ping
                }
            }
        };
        let sent = match next {
            Next::Send(frame) => send(ws, frame).await,
            Next::Ping => matches!(
                tokio::time::timeout(
                    WRITE_TIMEOUT,
                    ws_socket::send(ws, Message::Ping(prost::bytes::Bytes::new()))
                )
                .await,
                Ok(Ok(()))
            ),
            Next::Idle => true,
            Next::End => false,
        };
        if !sent {
            return;
        }
    }
}
