//! Finding 7 of issue 9: clocks that jump, run fast, or restart must not wedge signaling,
//! and replays must stay refused. Sans-IO: every clock here is an argument.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::OsRng;

use super::envelope::{Envelope, MAX_CLOCK_SKEW, OpenError, Opener, Sealer, SenderPolicy};
use super::message::tests::sample;
use super::replay::ReplayError;
use crate::keys::PrivateKey;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn alice() -> PrivateKey {
    PrivateKey::from_bytes([1; 32])
}

fn bob() -> PrivateKey {
    PrivateKey::from_bytes([2; 32])
}

fn seal(sealer: &mut Sealer, at: SystemTime) -> Envelope {
    sealer
        .seal(&bob().public_key(), &sample(), at, &mut OsRng)
        .expect("seal")
}

#[test]
fn a_forward_clock_jump_at_the_sender_does_not_wedge_its_later_envelopes() {
    let mut sealer = Sealer::new(&alice());
    let mut opener = Opener::new(&bob(), SenderPolicy::AnyKey);
    opener
        .open(&seal(&mut sealer, now()), now())
        .expect("before the jump");
    // The sender's clock jumps an hour ahead for one envelope: refused, rightly.
    let jumped = seal(&mut sealer, now() + Duration::from_secs(3600));
    assert!(matches!(
        opener.open(&jumped, now()),
        Err(OpenError::FromTheFuture { .. })
    ));
    // Its clock is back: the very next envelopes open.
    for i in 1..=3 {
        let at = now() + Duration::from_secs(i);
        opener
            .open(&seal(&mut sealer, at), at)
            .expect("after the clock came back");
    }
}

#[test]
fn a_sender_that_ran_fast_and_restarted_with_a_fixed_clock_is_accepted_at_once() {
    let mut opener = Opener::new(&bob(), SenderPolicy::AnyKey);
    // Five minutes fast: within the skew bound, so accepted.
    let mut fast = Sealer::new(&alice());
    for i in 0..3 {
        let at = now() + Duration::from_secs(300 + i);
        opener
            .open(&seal(&mut fast, at), now())
            .expect("fast but within skew");
    }
    // The sender fixes its clock and restarts: heard at once, not minutes later.
    let mut fixed = Sealer::new(&alice());
    let at = now() + Duration::from_secs(1);
    opener
        .open(&seal(&mut fixed, at), at)
        .expect("a fixed clock is heard at once");
    // Without a restart too: the same sealer, clock set back.
    let at = now() + Duration::from_secs(2);
    opener
        .open(&seal(&mut fast, at), at)
        .expect("the fast sealer with its clock set back");
}

#[test]
fn a_restarted_sender_is_heard_at_once_and_replays_of_its_previous_run_are_still_refused() {
    let mut opener = Opener::new(&bob(), SenderPolicy::AnyKey);
    let mut first_run = Sealer::new(&alice());
    let old: Vec<_> = (0..3).map(|_| seal(&mut first_run, now())).collect();
    for envelope in &old {
        opener.open(envelope, now()).expect("first run");
    }
    let later = now() + Duration::from_secs(10);
    let mut second_run = Sealer::new(&alice());
    opener
        .open(&seal(&mut second_run, later), later)
        .expect("the restarted sender");
    for envelope in &old {
        assert!(
            matches!(
                opener.open(envelope, later),
                Err(OpenError::Replayed(ReplayError::Replayed(_)))
            ),
            "a replay of the previous run"
        );
    }
}

#[test]
fn a_receiver_whose_clock_jumped_hears_its_peers_again_once_the_clock_is_back() {
    let mut sealer = Sealer::new(&alice());
    let mut opener = Opener::new(&bob(), SenderPolicy::AnyKey);
    opener
        .open(&seal(&mut sealer, now()), now())
        .expect("before");
    let receiver_jumped = now() + Duration::from_secs(3600);
    assert!(matches!(
        opener.open(&seal(&mut sealer, now()), receiver_jumped),
        Err(OpenError::Stale { .. })
    ));
    let at = now() + Duration::from_secs(1);
    opener.open(&seal(&mut sealer, at), at).expect("after");
}

#[test]
fn a_restarted_receiver_accepts_no_recording_older_than_the_clock_skew() {
    // What survives a receiver restart: only the freshness bound (see the README).
    let mut sealer = Sealer::new(&alice());
    let recording = seal(&mut sealer, now());
    Opener::new(&bob(), SenderPolicy::AnyKey)
        .open(&recording, now())
        .expect("the original");
    let mut restarted = Opener::new(&bob(), SenderPolicy::AnyKey);
    let later = now() + MAX_CLOCK_SKEW + Duration::from_secs(1);
    assert!(matches!(
        restarted.open(&recording, later),
        Err(OpenError::Stale { .. })
    ));
}
