//! Unit tests of sealing and opening (`envelope.rs`).

use super::*;
use crate::signaling::message::tests::sample;
use rand_core::OsRng;

const NOW_SECS: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn key(n: u8) -> PrivateKey {
    PrivateKey::from_bytes([n; 32])
}

struct Pair {
    alice: Sealer,
    bob: Opener,
}

fn pair() -> Pair {
    let bob = key(2);
    Pair {
        alice: Sealer::new(&key(1)),
        bob: Opener::new(&bob, SenderPolicy::AnyKey),
    }
}

fn seal(alice: &mut Sealer, at: SystemTime) -> Envelope {
    alice
        .seal(&key(2).public_key(), &sample(), at, &mut OsRng)
        .unwrap()
}

#[test]
fn a_sealed_message_opens_with_the_senders_key_and_the_same_content() {
    let mut p = pair();
    let envelope = seal(&mut p.alice, now());
    assert_eq!(envelope.sender, key(1).public_key());
    assert_eq!(envelope.recipient, key(2).public_key());
    let (sender, message) = p.bob.open(&envelope, now()).unwrap();
    assert_eq!(sender, key(1).public_key());
    assert_eq!(message, sample());
    assert_eq!(
        p.bob.counters(),
        OpenCounters {
            accepted: 1,
            ..OpenCounters::default()
        }
    );
}

#[test]
fn the_plaintext_does_not_appear_in_the_envelope() {
    let mut p = pair();
    let bytes = seal(&mut p.alice, now()).encode();
    let needle = b"a-password-of-22-chars";
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn every_envelope_gets_a_fresh_nonce_and_a_growing_counter() {
    let mut p = pair();
    // Same clock reading three times: counters still grow, so none looks replayed.
    let envelopes: Vec<_> = (0..3).map(|_| seal(&mut p.alice, now())).collect();
    assert_ne!(envelopes[0].nonce, envelopes[1].nonce);
    assert_ne!(envelopes[1].nonce, envelopes[2].nonce);
    for envelope in &envelopes {
        p.bob.open(envelope, now()).unwrap();
    }
}

#[test]
fn an_envelope_replayed_is_refused_and_counted() {
    let mut p = pair();
    let envelope = seal(&mut p.alice, now());
    p.bob.open(&envelope, now()).unwrap();
    assert!(matches!(
        p.bob.open(&envelope, now()),
        Err(OpenError::Replayed(ReplayError::Replayed(_)))
    ));
    assert_eq!(p.bob.counters().replayed, 1);
    assert_eq!(p.bob.counters().accepted, 1);
}

#[test]
fn envelopes_opened_out_of_order_are_all_accepted() {
    let mut p = pair();
    let mut envelopes: Vec<_> = (0..10)
        .map(|i| seal(&mut p.alice, now() + Duration::from_millis(i * 100)))
        .collect();
    envelopes.reverse();
    envelopes.swap(2, 7);
    for envelope in &envelopes {
        p.bob
            .open(envelope, now() + Duration::from_secs(1))
            .unwrap();
    }
    assert_eq!(p.bob.counters().accepted, 10);
}

#[test]
fn a_flipped_bit_anywhere_in_the_ciphertext_or_nonce_is_refused_as_tampered() {
    let mut p = pair();
    let envelope = seal(&mut p.alice, now());
    let mut refused = 0;
    for i in 0..envelope.ciphertext.len() {
        let mut bad = envelope.clone();
        let mut bytes = bad.ciphertext.to_vec();
        bytes[i] ^= 0x01;
        bad.ciphertext = Bytes::from(bytes);
        assert!(matches!(
            p.bob.open(&bad, now()),
            Err(OpenError::Tampered(_))
        ));
        refused += 1;
    }
    let mut bad = envelope.clone();
    bad.nonce[0] ^= 0x80;
    assert!(matches!(
        p.bob.open(&bad, now()),
        Err(OpenError::Tampered(_))
    ));
    assert_eq!(p.bob.counters().tampered, refused + 1);
    // The original still opens: the forgeries did not move the replay window.
    p.bob.open(&envelope, now()).unwrap();
}

#[test]
fn an_envelope_claiming_another_sender_does_not_authenticate() {
    let mut p = pair();
    let mut envelope = seal(&mut p.alice, now());
    envelope.sender = key(3).public_key();
    assert_eq!(
        p.bob.open(&envelope, now()),
        Err(OpenError::Tampered(key(3).public_key()))
    );
}

#[test]
fn an_envelope_turned_around_is_refused_as_reflected() {
    // Alice seals to Bob; an attacker swaps the keys and hands it to Alice "from Bob".
    // The shared key is the same both ways, so only the sealed copy of the keys tells.
    let mut alice_sealer = Sealer::new(&key(1));
    let mut alice_opener = Opener::new(&key(1), SenderPolicy::AnyKey);
    let mut envelope = seal(&mut alice_sealer, now());
    std::mem::swap(&mut envelope.sender, &mut envelope.recipient);
    assert_eq!(
        alice_opener.open(&envelope, now()),
        Err(OpenError::Reflected)
    );
    assert_eq!(alice_opener.counters().reflected, 1);
}

#[test]
fn an_envelope_for_another_key_is_refused_before_decryption() {
    let mut p = pair();
    let envelope = p
        .alice
        .seal(&key(3).public_key(), &sample(), now(), &mut OsRng)
        .unwrap();
    assert_eq!(
        p.bob.open(&envelope, now()),
        Err(OpenError::WrongRecipient(key(3).public_key()))
    );
    assert_eq!(p.bob.counters().wrong_recipient, 1);
}

#[test]
fn a_sender_outside_the_configured_peers_is_refused() {
    let mut alice = Sealer::new(&key(1));
    let mut bob = Opener::new(
        &key(2),
        SenderPolicy::Only([key(4).public_key()].into_iter().collect()),
    );
    let envelope = seal(&mut alice, now());
    assert_eq!(
        bob.open(&envelope, now()),
        Err(OpenError::UnknownSender(key(1).public_key()))
    );
    assert_eq!(bob.counters().unknown_sender, 1);
    bob.set_policy(SenderPolicy::Only(
        [key(1).public_key()].into_iter().collect(),
    ));
    bob.open(&envelope, now()).unwrap();
}

#[test]
fn a_truncated_envelope_is_refused_and_counted() {
    let mut p = pair();
    let envelope = seal(&mut p.alice, now());
    // Cut below the tag: cannot be checked at all.
    let mut short = envelope.clone();
    short.ciphertext = envelope.ciphertext.slice(..TAG_LEN - 1);
    assert_eq!(
        p.bob.open(&short, now()),
        Err(OpenError::Truncated { len: 15 })
    );
    // Cut by one byte: the tag no longer matches.
    let mut cut = envelope.clone();
    cut.ciphertext = envelope.ciphertext.slice(..envelope.ciphertext.len() - 1);
    assert!(matches!(
        p.bob.open(&cut, now()),
        Err(OpenError::Tampered(_))
    ));
    // The encoded bytes cut anywhere: never an envelope that opens.
    let bytes = envelope.encode();
    for end in 0..bytes.len() {
        assert!(
            p.bob.open_bytes(&bytes[..end], now()).is_err(),
            "cut at {end}"
        );
    }
    let c = p.bob.counters();
    // Cuts inside the ciphertext field decode to envelopes too short for the tag.
    assert!(c.truncated >= 2, "{c:?}");
    assert_eq!(c.accepted, 0);
    assert_eq!(c.rejected(), 2 + bytes.len() as u64);
    p.bob.open_bytes(&bytes, now()).unwrap();
}

#[test]
fn an_oversized_envelope_is_refused_unread_and_counted() {
    let mut p = pair();
    let mut envelope = seal(&mut p.alice, now());
    envelope.ciphertext = Bytes::from(vec![0u8; MAX_ENVELOPE_LEN]);
    assert!(matches!(
        p.bob.open(&envelope, now()),
        Err(OpenError::Oversized { .. })
    ));
    let bytes = vec![0u8; MAX_ENVELOPE_LEN + 1];
    assert_eq!(
        p.bob.open_bytes(&bytes, now()),
        Err(OpenError::Oversized {
            len: MAX_ENVELOPE_LEN + 1
        })
    );
    assert_eq!(p.bob.counters().oversized, 2);
}

#[test]
fn a_recording_older_than_the_clock_skew_is_refused_even_by_a_fresh_receiver() {
    let mut p = pair();
    let envelope = seal(&mut p.alice, now());
    let much_later = now() + MAX_CLOCK_SKEW + Duration::from_secs(1);
    assert!(matches!(
        p.bob.open(&envelope, much_later),
        Err(OpenError::Stale { .. })
    ));
    let much_earlier = now() - MAX_CLOCK_SKEW - Duration::from_secs(1);
    assert!(matches!(
        p.bob.open(&envelope, much_earlier),
        Err(OpenError::FromTheFuture { .. })
    ));
    assert_eq!(p.bob.counters().clock_skew, 2);
}

#[test]
fn garbage_ciphertext_from_a_real_key_is_tampered_not_a_crash() {
    let mut p = pair();
    let envelope = Envelope {
        sender: key(1).public_key(),
        recipient: key(2).public_key(),
        nonce: [7; NONCE_LEN],
        ciphertext: Bytes::from(vec![0xAB; 300]),
    };
    assert!(matches!(
        p.bob.open(&envelope, now()),
        Err(OpenError::Tampered(_))
    ));
}

#[test]
fn encoded_envelopes_with_bad_field_lengths_are_malformed() {
    let mut p = pair();
    let mut raw = seal(&mut p.alice, now()).to_proto();
    raw.nonce = raw.nonce.slice(..23);
    assert_eq!(
        Envelope::from_proto(raw.clone()),
        Err(EnvelopeError::BadNonceLength { len: 23 })
    );
    raw.sender = raw.sender.slice(..31);
    let bytes = raw.encode_to_vec();
    assert!(matches!(
        p.bob.open_bytes(&bytes, now()),
        Err(OpenError::Malformed(_))
    ));
    assert_eq!(p.bob.counters().malformed, 1);
}

#[test]
fn a_message_receivers_would_refuse_is_not_sealed() {
    let mut alice = Sealer::new(&key(1));
    let SignalingMessage::SessionDescription(mut sd) = sample() else {
        panic!("the sample is a session description")
    };
    sd.ice_ufrag = "u".repeat(300);
    assert!(matches!(
        alice.seal(
            &key(2).public_key(),
            &SignalingMessage::SessionDescription(sd),
            now(),
            &mut OsRng
        ),
        Err(SealError::InvalidMessage(MessageError::FieldTooLong { .. }))
    ));
}

#[test]
fn the_opener_keeps_windows_for_at_most_the_tracked_number_of_senders() {
    let mut bob = Opener::new(&key(2), SenderPolicy::AnyKey);
    // Cheap: one envelope from each of many distinct keys.
    for i in 0..(MAX_TRACKED_SENDERS + 10) {
        let mut bytes = [0u8; 32];
        // Byte 0 loses its low bits to clamping, so the index goes after it.
        bytes[1..9].copy_from_slice(&(i as u64).to_le_bytes());
        bytes[31] = 0x40;
        let mut sealer = Sealer::new(&PrivateKey::from_bytes(bytes));
        let envelope = seal(&mut sealer, now());
        bob.open(&envelope, now()).unwrap();
    }
    assert!(bob.windows.len() <= MAX_TRACKED_SENDERS);
}
