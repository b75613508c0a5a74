//! The plain HTTP publish endpoint: for a sender behind something that passes HTTP/1.1
//! requests but not WebSockets. It takes the same key proof, made without server state:
//!
//! 1. `POST /v1/challenge` with the sender's 32-byte public key as the body. The answer is an
//!    8-byte expiry (Unix seconds, big endian) and a protobuf `Challenge` whose sealed
//!    secret is a MAC, under a key this server drew at start, over the public key and the
//!    expiry. Only the key's holder can open it.
//! 2. `POST /v1/publish` with headers `Wice-Key` (base64 public key), `Wice-Expiry` (the
//!    decimal expiry) and `Wice-Proof` (base64 of the opened secret), and one encoded
//!    envelope as the body. The server recomputes the MAC; the envelope's sender must be the
//!    proven key. One proof serves until its expiry ([`PROOF_LIFETIME`]); a restarted server
//!    (a new MAC key) answers 401 and the sender asks for a new challenge.
//!
//! | input | answer |
//! |---|---|
//! | body over the limit (32 bytes, one envelope) | 413, `rejected_oversized` |
//! | a challenge body that is not 32 bytes, an envelope that does not parse | 400, `rejected_malformed` |
//! | missing, wrong or expired proof | 401, `auth_failed` |
//! | envelope whose sender is not the proven key | 403, `sender_not_proven` |
//! | over the connection's or address's rate | 429, `rate_limited` |
//! | body not complete within [`BODY_TIMEOUT`] | 408 |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use blake2::Blake2sMac256;
use blake2::digest::{KeyInit, Mac as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming as Body;
use hyper::{Request, Response, StatusCode};
use prost::Message as _;
use prost::bytes::Bytes;
use rand_core::OsRng;

use super::State;
use super::connection::ConnectionInfo;
use super::counters::ServerCounters;
use super::publish::{PublishRefusal, publish_envelopes, within_rate};
use crate::signaling::ws_frame::{EXPIRY_HEADER, KEY_HEADER, PROOF_HEADER};
use wice_core::keys::{KEY_LEN, PublicKey};
use wice_core::signaling::challenge::{self, SECRET_LEN};

/// How long one proof lets its key publish over HTTP.
pub(super) const PROOF_LIFETIME: Duration = Duration::from_secs(300);
/// Time a client has to send a request body.
pub(super) const BODY_TIMEOUT: Duration = Duration::from_secs(10);

const MAC_CONTEXT: &[u8] = b"wice http publish proof v1";

/// The secret a proof for `key` until `expiry` carries.
pub(super) fn proof_secret(mac_key: &[u8; 32], key: &PublicKey, expiry: u64) -> [u8; SECRET_LEN] {
    let mut mac = mac(mac_key);
    mac.update(MAC_CONTEXT);
    mac.update(key.as_bytes());
    mac.update(&expiry.to_be_bytes());
    mac.finalize().into_bytes().into()
}

fn mac(mac_key: &[u8; 32]) -> Blake2sMac256 {
    <Blake2sMac256 as KeyInit>::new(mac_key.into())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// The body, up to `limit` bytes, within [`BODY_TIMEOUT`].
async fn read_body(
    request: Request<Body>,
    limit: usize,
    state: &State,
) -> Result<Bytes, Response<Full<Bytes>>> {
    let body = Limited::new(request.into_body(), limit);
    match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            ServerCounters::add(&state.counters.rejected_oversized, 1);
            Err(reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body over the limit\n",
            ))
        }
        Ok(Err(_)) => Err(reply(StatusCode::BAD_REQUEST, "body unreadable\n")),
        Err(_) => Err(reply(StatusCode::REQUEST_TIMEOUT, "body too slow\n")),
    }
}

/// `POST /v1/challenge`: a challenge for the key in the body.
pub(super) async fn challenge(
    request: Request<Body>,
    state: &State,
    connection: &ConnectionInfo,
) -> Response<Full<Bytes>> {
    // Sealing costs an X25519 operation: each challenge costs the asker a token.
    if !within_rate(state, Some(connection), 1) {
        return reply(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
    }
    let body = match read_body(request, KEY_LEN, state).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Ok(key) = <[u8; KEY_LEN]>::try_from(body.as_ref()) else {
        ServerCounters::add(&state.counters.rejected_malformed, 1);
        return reply(
            StatusCode::BAD_REQUEST,
            "the body must be a 32-byte public key\n",
        );
    };
    let key = PublicKey::from_bytes(key);
    let expiry = unix_now() + PROOF_LIFETIME.as_secs();
    let secret = proof_secret(&state.http_mac_key, &key, expiry);
    let sealed = challenge::seal_secret(&key, &secret, &mut OsRng);
    let mut out = Vec::with_capacity(8 + sealed.encoded_len());
    out.extend_from_slice(&expiry.to_be_bytes());
    let _ = sealed.encode(&mut out);
    reply(StatusCode::OK, out)
}

/// The key a request's proof headers prove, if they do.
fn proven_key(request: &Request<Body>, mac_key: &[u8; 32]) -> Option<PublicKey> {
    let header = |name| request.headers().get(name)?.to_str().ok();
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine.decode(header(KEY_HEADER)?).ok()?;
    let key = PublicKey::from_bytes(<[u8; KEY_LEN]>::try_from(key.as_slice()).ok()?);
    let expiry: u64 = header(EXPIRY_HEADER)?.parse().ok()?;
    let now = unix_now();
    if expiry <= now || expiry > now + PROOF_LIFETIME.as_secs() {
        return None;
    }
    let proof = engine.decode(header(PROOF_HEADER)?).ok()?;
    let mut mac = mac(mac_key);
    mac.update(MAC_CONTEXT);
    mac.update(key.as_bytes());
    mac.update(&expiry.to_be_bytes());
    mac.verify_slice(&proof).ok()?;
    Some(key)
}

/// `POST /v1/publish`: one envelope, from the key the headers prove.
pub(super) async fn publish(
    request: Request<Body>,
    state: &State,
    connection: &ConnectionInfo,
) -> Response<Full<Bytes>> {
    let Some(key) = proven_key(&request, &state.http_mac_key) else {
        ServerCounters::add(&state.counters.auth_failed, 1);
        return reply(
            StatusCode::UNAUTHORIZED,
            "missing, wrong or expired proof; POST /v1/challenge for a new one\n",
        );
    };
    let body = match read_body(request, state.config.max_envelope_len, state).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    // The proof holds for this connection from now on, as a WebSocket's does.
    connection.prove(key);
    match wice_core::signaling::envelope::Envelope::decode(&body) {
        Ok(envelope) if envelope.sender != key => {
            ServerCounters::add(&state.counters.sender_not_proven, 1);
            return reply(
                StatusCode::FORBIDDEN,
                "the envelope's sender is not the proven key\n",
            );
        }
        Ok(_) => {}
        Err(_) => {
            ServerCounters::add(&state.counters.rejected_malformed, 1);
            return reply(StatusCode::BAD_REQUEST, "the body is not an envelope\n");
        }
    }
    match publish_envelopes(state, Some(connection), vec![body]).await {
        Ok(response) => reply(StatusCode::OK, response.encode_to_vec()),
        Err(PublishRefusal::RateLimited) => {
            reply(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n")
        }
        Err(refusal) => reply(StatusCode::BAD_REQUEST, format!("{refusal}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_bound_to_its_key_expiry_and_server() {
        let key = PublicKey::from_bytes([1; 32]);
        let other = PublicKey::from_bytes([2; 32]);
        let secret = proof_secret(&[9; 32], &key, 1000);
        assert_eq!(secret, proof_secret(&[9; 32], &key, 1000));
        assert_ne!(secret, proof_secret(&[9; 32], &other, 1000));
        assert_ne!(secret, proof_secret(&[9; 32], &key, 1001));
        assert_ne!(secret, proof_secret(&[8; 32], &key, 1000));
    }
}
