//! Proof that a subscriber holds the private key of the mailbox it asks for.
//!
//! The server picks a random secret and seals it to the subscriber's public key with a
//! one-off X25519 key of its own; only the holder of the subscriber's private key can open
//! it and send the secret back. Nothing outlives the exchange: the server keeps the secret
//! in the subscription's own task, so the server stays stateless between connections.
//!
//! The sealed plaintext starts with a fixed context string, and a client answers only a
//! challenge that does: otherwise a hostile server could pass a peer's signaling
//! ciphertext off as a challenge and have the client decrypt it.

use crypto_box::aead::{Aead as _, AeadCore as _};
use crypto_box::{Nonce, SalsaBox};
use prost::bytes::Bytes;
use rand_core::CryptoRngCore;
use wice_proto::signaling as proto;

use crate::keys::{KEY_LEN, PrivateKey, PublicKey};

/// Prefix of every challenge plaintext; no signaling content can start with it.
const CHALLENGE_CONTEXT: &[u8; 24] = b"wice signal challenge v1";
/// Length of the random secret.
pub const SECRET_LEN: usize = 32;

/// Why a challenge could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// A field has the wrong length.
    #[error("malformed challenge")]
    Malformed,
    /// It did not open with our key: sealed to someone else, or altered.
    #[error("challenge is not sealed to our key")]
    NotForUs,
    /// It opened but is not a challenge (no context prefix): refused, not an oracle.
    #[error("sealed data is not a challenge")]
    NotAChallenge,
}

/// The server's side of one challenge: the secret it expects back.
pub struct PendingChallenge {
    secret: [u8; SECRET_LEN],
}

impl PendingChallenge {
    /// A challenge for `subscriber`, and the message that carries it.
    pub fn issue(subscriber: &PublicKey, rng: &mut impl CryptoRngCore) -> (Self, proto::Challenge) {
        let mut secret = [0u8; SECRET_LEN];
        rng.fill_bytes(&mut secret);
        let message = seal_secret(subscriber, &secret, rng);
        (Self { secret }, message)
    }

    /// True when `answer` is the secret, compared in constant time.
    pub fn verify(&self, answer: &[u8]) -> bool {
        answer.len() == SECRET_LEN
            && answer
                .iter()
                .zip(&self.secret)
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

/// A challenge carrying a `secret` the caller chose: for a server that derives the secret
/// from a key of its own (a MAC over the subscriber's key and an expiry) instead of keeping
/// it, so that a plain HTTP request can carry the answer later. [`answer`] opens it.
pub fn seal_secret(
    subscriber: &PublicKey,
    secret: &[u8; SECRET_LEN],
    rng: &mut impl CryptoRngCore,
) -> proto::Challenge {
    let server_key = crypto_box::SecretKey::generate(rng);
    let nonce = SalsaBox::generate_nonce(rng);
    let mut plaintext = Vec::with_capacity(CHALLENGE_CONTEXT.len() + SECRET_LEN);
    plaintext.extend_from_slice(CHALLENGE_CONTEXT);
    plaintext.extend_from_slice(secret);
    let sealed = SalsaBox::new(
        &crypto_box::PublicKey::from(subscriber.to_bytes()),
        &server_key,
    )
    .encrypt(&nonce, plaintext.as_slice())
    // A 56-byte message is far below XSalsa20-Poly1305's limit.
    .unwrap_or_default();
    proto::Challenge {
        server_public_key: Bytes::copy_from_slice(server_key.public_key().as_bytes()),
        nonce: Bytes::copy_from_slice(&nonce),
        sealed_secret: Bytes::from(sealed),
    }
}

/// The client's side: opens `challenge` with `identity` and returns the secret to send back.
pub fn answer(
    identity: &PrivateKey,
    challenge: &proto::Challenge,
) -> Result<Vec<u8>, ChallengeError> {
    let server_key = <[u8; KEY_LEN]>::try_from(challenge.server_public_key.as_ref())
        .map_err(|_| ChallengeError::Malformed)?;
    if challenge.nonce.len() != 24 {
        return Err(ChallengeError::Malformed);
    }
    let plaintext = SalsaBox::new(
        &crypto_box::PublicKey::from(server_key),
        &crypto_box::SecretKey::from(identity.to_bytes()),
    )
    .decrypt(
        Nonce::from_slice(&challenge.nonce),
        challenge.sealed_secret.as_ref(),
    )
    .map_err(|_| ChallengeError::NotForUs)?;
    match plaintext.strip_prefix(CHALLENGE_CONTEXT.as_slice()) {
        Some(secret) if secret.len() == SECRET_LEN => Ok(secret.to_vec()),
        _ => Err(ChallengeError::NotAChallenge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::envelope::Sealer;
    use crate::signaling::message::tests::sample;
    use rand_core::OsRng;
    use std::time::SystemTime;

    #[test]
    fn the_key_holder_answers_and_the_answer_verifies() {
        let identity = PrivateKey::generate();
        let (pending, challenge) = PendingChallenge::issue(&identity.public_key(), &mut OsRng);
        let secret = answer(&identity, &challenge).unwrap();
        assert!(pending.verify(&secret));
    }

    #[test]
    fn someone_without_the_private_key_cannot_answer() {
        let victim = PrivateKey::generate();
        let attacker = PrivateKey::generate();
        let (pending, challenge) = PendingChallenge::issue(&victim.public_key(), &mut OsRng);
        assert_eq!(answer(&attacker, &challenge), Err(ChallengeError::NotForUs));
        // Guessing does not work either.
        assert!(!pending.verify(&[0u8; SECRET_LEN]));
        assert!(!pending.verify(&[]));
    }

    #[test]
    fn a_signaling_ciphertext_posing_as_a_challenge_is_not_decrypted_for_the_server() {
        // A hostile server holds an envelope from `peer` to `victim` and asks the victim to
        // "answer" it: the victim must not return the plaintext.
        let victim = PrivateKey::generate();
        let peer = PrivateKey::generate();
        let envelope = Sealer::new(&peer)
            .seal(
                &victim.public_key(),
                &sample(),
                SystemTime::now(),
                &mut OsRng,
            )
            .unwrap();
        let fake = proto::Challenge {
            server_public_key: Bytes::copy_from_slice(peer.public_key().as_bytes()),
            nonce: Bytes::copy_from_slice(&envelope.nonce),
            sealed_secret: envelope.ciphertext,
        };
        assert_eq!(answer(&victim, &fake), Err(ChallengeError::NotAChallenge));
    }

    #[test]
    fn a_challenge_with_bad_field_lengths_is_malformed() {
        let identity = PrivateKey::generate();
        let (_, mut challenge) = PendingChallenge::issue(&identity.public_key(), &mut OsRng);
        challenge.nonce = challenge.nonce.slice(..10);
        assert_eq!(
            answer(&identity, &challenge),
            Err(ChallengeError::Malformed)
        );
    }
}
