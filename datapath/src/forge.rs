//! What an attacker who knows only a node's public key can send it: handshake
//! messages whose mac1 is valid, and initiations whose encrypted static key is
//! valid too (the first half of Noise IK needs only the responder's public key),
//! with a timestamp nobody without the claimed peer's private key can seal.
//!
//! Test support, shared by the datapath's in-memory attack tests and the
//! netns attacker suite (`tests/it/attack_handshake.rs` includes this file).

use blake2::digest::{FixedOutput, KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use boringtun::x25519::{PublicKey, StaticSecret};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

/// HASH("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s").
const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
const LABEL_MAC1: &[u8] = b"mac1----";

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <hmac::SimpleHmac<Blake2s256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize_fixed().into()
}

/// mac1 = MAC(HASH(LABEL_MAC1 || responder's public key), message up to mac1).
fn mac1(responder: &[u8; 32], message: &[u8]) -> [u8; 16] {
    let key = hash(&[LABEL_MAC1, responder]);
    let mut mac = <Blake2sMac<blake2::digest::consts::U16> as KeyInit>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("a 32-byte key fits BLAKE2s"));
    Mac::update(&mut mac, message);
    mac.finalize_fixed().into()
}

/// A handshake initiation to `responder` claiming to come from `claimed`:
/// ephemeral key from `seed`, valid encrypted static part and mac1, garbage
/// timestamp, no mac2.
pub(crate) fn forged_initiation(responder: &[u8; 32], claimed: &[u8; 32], seed: u64) -> [u8; 148] {
    let mut message = [0u8; 148];
    message[0] = 1;
    message[4..8].copy_from_slice(&(seed as u32).to_le_bytes());
    let mut ephemeral_seed = [0x5au8; 32];
    ephemeral_seed[..8].copy_from_slice(&seed.to_le_bytes());
    let ephemeral = StaticSecret::from(ephemeral_seed);
    let ephemeral_public = PublicKey::from(&ephemeral);
    message[8..40].copy_from_slice(ephemeral_public.as_bytes());

    let mut chaining_key = hash(&[CONSTRUCTION]);
    let mut h = hash(&[&hash(&[&chaining_key, IDENTIFIER]), responder]);
    h = hash(&[&h, ephemeral_public.as_bytes()]);
    chaining_key = hmac(
        &hmac(&chaining_key, &[ephemeral_public.as_bytes()]),
        &[&[1]],
    );
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*responder));
    let temp = hmac(&chaining_key, &[shared.as_bytes()]);
    chaining_key = hmac(&temp, &[&[1]]);
    let key = hmac(&temp, &[&chaining_key, &[2]]);

    let mut sealed_static = claimed.to_vec();
    let tag = ChaCha20Poly1305::new(&key.into())
        .encrypt_in_place_detached(&Nonce::default(), &h, &mut sealed_static)
        .unwrap_or_else(|_| unreachable!("32 bytes always seal"));
    message[40..72].copy_from_slice(&sealed_static);
    message[72..88].copy_from_slice(&tag);
    // The timestamp needs DH(claimed private, responder): the attacker has no
    // such key, so whatever goes here fails to open.
    for (i, byte) in message[88..116].iter_mut().enumerate() {
        *byte = (seed as u8).wrapping_add(i as u8);
    }
    let mac = mac1(responder, &message[..116]);
    message[116..132].copy_from_slice(&mac);
    message
}

/// A handshake response to `responder` with a valid mac1, for a receiver index
/// of the attacker's choosing (e.g. one nobody holds).
pub(crate) fn forged_response(responder: &[u8; 32], receiver_index: u32) -> [u8; 92] {
    let mut message = [0u8; 92];
    message[0] = 2;
    message[4..8].copy_from_slice(&0x0bad_cafe_u32.to_le_bytes());
    message[8..12].copy_from_slice(&receiver_index.to_le_bytes());
    message[12..44].copy_from_slice(&[7; 32]);
    let mac = mac1(responder, &message[..60]);
    message[60..76].copy_from_slice(&mac);
    message
}
