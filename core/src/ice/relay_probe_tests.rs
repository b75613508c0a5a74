//! The allocation probe against what a real server says: it names us as the crate's requests
//! do, and an error answer that says nothing of the allocation never costs it.

use std::time::{Duration, Instant};

use turn_client_proto::types::attribute::Lifetime;
use turn_client_proto::types::message::{ALLOCATE, REFRESH};
use turn_client_proto::types::stun::attribute::{ErrorCode, Nonce, Realm, Userhash, Username};
use turn_client_proto::types::stun::message::{Message, MessageClass, MessageWriteVec};
use turn_client_proto::types::stun::prelude::*;

use super::relay_probe::{AllocationProbe, AllocationVerdict, PROBE_TIMEOUT, SILENCE_BEFORE_PROBE};

const USER: &str = "wice";
const PASSWORD: &str = "secret";
const REALM: &str = "example.org";
const NONCE: &str = "obMatJos2AAACnonce-one";

/// A 401 to the crate's first Allocate, as every server sends it: realm and nonce.
fn unauthorized() -> Vec<u8> {
    let request = Message::builder_request(ALLOCATE, MessageWriteVec::new()).finish();
    let request = Message::from_bytes(&request).unwrap();
    error_to(&request, ErrorCode::UNAUTHORIZED, Some(NONCE))
}

fn error_to(request: &Message<'_>, code: u16, nonce: Option<&str>) -> Vec<u8> {
    let mut reply = Message::builder_error(request, MessageWriteVec::new());
    reply
        .add_attribute(&ErrorCode::builder(code).build().unwrap())
        .unwrap();
    if let Some(nonce) = nonce {
        reply.add_attribute(&Realm::new(REALM).unwrap()).unwrap();
        reply.add_attribute(&Nonce::new(nonce).unwrap()).unwrap();
    }
    reply.finish()
}

/// The crate's authenticated Allocate naming us by USERHASH (the server's nonce offered
/// username anonymity).
fn crate_request_by_userhash() -> Vec<u8> {
    let mut request = Message::builder_request(ALLOCATE, MessageWriteVec::new());
    let hash = Userhash::compute(USER, REALM);
    request.add_attribute(&Userhash::new(hash)).unwrap();
    request.add_attribute(&Lifetime::new(1800)).unwrap();
    request.finish()
}

/// The server's success to that Allocate, granting `seconds`.
fn allocated_for(seconds: u32) -> Vec<u8> {
    let request = crate_request_by_userhash();
    let request = Message::from_bytes(&request).unwrap();
    let mut reply = Message::builder_success(&request, MessageWriteVec::new());
    reply.add_attribute(&Lifetime::new(seconds)).unwrap();
    reply.finish()
}

/// A probe that has seen the 401 and the crate's request, with relayed checks unanswered
/// for long enough: it sends its Refresh. Returns the probe, the time and the Refresh.
fn probing(t0: Instant) -> (AllocationProbe, Instant, Vec<u8>) {
    let mut probe = AllocationProbe::default();
    assert_eq!(probe.handle_server_datagram(&unauthorized()), None);
    probe.handle_client_datagram(&crate_request_by_userhash());
    assert_eq!(probe.handle_server_datagram(&allocated_for(1200)), None);
    probe.handle_relayed_request(t0);
    let now = t0 + SILENCE_BEFORE_PROBE;
    assert_eq!(probe.handle_timeout(now, USER, PASSWORD), None);
    let refresh = probe.poll_transmit().expect("the probe's Refresh");
    (probe, now, refresh)
}

#[test]
fn the_probe_names_us_by_userhash_when_the_crate_does() {
    let (_, _, refresh) = probing(Instant::now());
    let refresh = Message::from_bytes(&refresh).unwrap();
    assert_eq!(refresh.method(), REFRESH);
    let hash = refresh
        .attribute::<Userhash>()
        .expect("USERHASH, as the crate");
    assert_eq!(*hash.hash(), Userhash::compute(USER, REALM));
    assert!(
        refresh.attribute::<Username>().is_err(),
        "a server knows the allocation under one name only"
    );
}

#[test]
fn an_error_answer_to_the_probe_keeps_the_allocation_and_is_not_asked_again_at_once() {
    let (mut probe, now, refresh) = probing(Instant::now());
    let refresh = Message::from_bytes(&refresh).unwrap();
    // 441 Wrong Credentials, signed with the same nonce: the server is up.
    let answer = error_to(&refresh, ErrorCode::WRONG_CREDENTIALS, Some(NONCE));
    assert_eq!(
        probe.handle_server_datagram(&answer),
        Some(AllocationVerdict::Refused(ErrorCode::WRONG_CREDENTIALS))
    );
    assert_eq!(probe.poll_transmit(), None, "no resend of a refused probe");
    // Past the probe's deadline nothing says the server stopped answering.
    let later = now + PROBE_TIMEOUT + Duration::from_millis(1);
    assert_eq!(probe.handle_timeout(later, USER, PASSWORD), None);
    assert_eq!(
        probe.poll_transmit(),
        None,
        "the next probe waits its spacing"
    );
}

#[test]
fn a_stale_nonce_answer_is_asked_again_with_the_new_nonce_and_a_437_then_means_lost() {
    let (mut probe, now, refresh) = probing(Instant::now());
    let refresh = Message::from_bytes(&refresh).unwrap();
    let stale = error_to(
        &refresh,
        ErrorCode::STALE_NONCE,
        Some("obMatJos2AAACnonce-two"),
    );
    assert_eq!(probe.handle_server_datagram(&stale), None);
    assert_eq!(probe.handle_timeout(now, USER, PASSWORD), None);
    let again = probe.poll_transmit().expect("asked again at once");
    let again = Message::from_bytes(&again).unwrap();
    assert_eq!(
        again.attribute::<Nonce>().unwrap().nonce(),
        "obMatJos2AAACnonce-two"
    );
    let mismatch = error_to(&again, ErrorCode::ALLOCATION_MISMATCH, None);
    assert!(again.has_class(MessageClass::Request));
    assert_eq!(
        probe.handle_server_datagram(&mismatch),
        Some(AllocationVerdict::Mismatch)
    );
}

#[test]
fn the_probe_asks_for_the_lifetime_the_allocation_was_granted_not_the_server_default() {
    let (_, _, refresh) = probing(Instant::now());
    let refresh = Message::from_bytes(&refresh).unwrap();
    let lifetime = refresh
        .attribute::<Lifetime>()
        .expect("without LIFETIME the server cuts the allocation to its 10 min default");
    assert_eq!(
        lifetime.seconds(),
        1200,
        "as granted (the crate asked 1800)"
    );
}
