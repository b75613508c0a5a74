//! The community key: one X25519 key pair every holder of the passphrase derives alike.
//!
//! ```text
//! secret = Argon2id(password = passphrase (UTF-8 bytes),
//!                   salt = "wice community key v1",
//!                   memory = 65536 KiB, iterations = 3, lanes = 1, output = 32 bytes)
//! ```
//!
//! used as a WireGuard-style X25519 private key (clamped by the curve operation), and
//!
//! ```text
//! membership secret = SHA-256("wice community membership v1" || secret)
//! ```
//!
//! which every announcement's signature covers: the community *public* key is visible to
//! every signaling server (envelopes are addressed to it), so anyone could seal an
//! announcement to it; only a passphrase holder can sign over the membership secret. The salt is
//! fixed so that every holder derives the same key with nothing else shared; the memory-hard
//! KDF makes each guess at a passphrase cost 64 MiB and a few hundred milliseconds. A short
//! passphrase can still be guessed offline by anyone who sees one announcement envelope (a
//! signaling server does): use a long random one (`head -c 32 /dev/urandom | base64`).

use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest as _, Sha256};

use crate::keys::{KEY_LEN, PrivateKey, PublicKey};

/// The fixed Argon2 salt: a domain string, so no other use of the passphrase yields this key.
pub const COMMUNITY_SALT: &[u8] = b"wice community key v1";
/// Hashed before the KDF output for the membership secret.
pub const MEMBERSHIP_DOMAIN: &[u8] = b"wice community membership v1";
/// Argon2id memory cost in KiB (64 MiB).
pub const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes over memory.
pub const ARGON2_ITERATIONS: u32 = 3;
/// Argon2id parallelism.
pub const ARGON2_LANES: u32 = 1;

/// Why a passphrase cannot make a community key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommunityKeyError {
    /// Empty (after trimming the trailing newline of a file).
    #[error("the community passphrase is empty")]
    Empty,
    /// Argon2 refused the input (a passphrase over 4 GiB).
    #[error("argon2: {0}")]
    Kdf(String),
}

/// The community's key pair.
#[derive(Clone)]
pub struct CommunityKey {
    private: PrivateKey,
    membership_secret: [u8; 32],
}

impl std::fmt::Debug for CommunityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommunityKey({})", self.public_key())
    }
}

impl CommunityKey {
    /// Derives the key from `passphrase` (see the module docs). Takes 64 MiB of memory and
    /// a fraction of a second: derive once per configuration.
    pub fn derive(passphrase: &str) -> Result<Self, CommunityKeyError> {
        if passphrase.is_empty() {
            return Err(CommunityKeyError::Empty);
        }
        let params = Params::new(
            ARGON2_MEMORY_KIB,
            ARGON2_ITERATIONS,
            ARGON2_LANES,
            Some(KEY_LEN),
        )
        .map_err(|e| CommunityKeyError::Kdf(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut secret = [0u8; KEY_LEN];
        argon
            .hash_password_into(passphrase.as_bytes(), COMMUNITY_SALT, &mut secret)
            .map_err(|e| CommunityKeyError::Kdf(e.to_string()))?;
        Ok(Self::from_secret(secret))
    }

    /// The key pair and membership secret from the KDF's output.
    pub fn from_secret(secret: [u8; KEY_LEN]) -> Self {
        let membership_secret = Sha256::new()
            .chain_update(MEMBERSHIP_DOMAIN)
            .chain_update(secret)
            .finalize()
            .into();
        Self {
            private: PrivateKey::from_bytes(secret),
            membership_secret,
        }
    }

    /// What every announcement's signature covers besides the announcement: proof that its
    /// signer holds the passphrase.
    pub fn membership_secret(&self) -> &[u8; 32] {
        &self.membership_secret
    }

    /// The private half, which every member holds: it opens announcements and subscribes the
    /// group mailbox.
    pub fn private_key(&self) -> &PrivateKey {
        &self.private
    }

    /// The public half: announcements are sealed to it, and backends address the group by it.
    pub fn public_key(&self) -> PublicKey {
        self.private.public_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_holder_of_a_passphrase_derives_the_same_key_and_another_passphrase_another() {
        let a = CommunityKey::derive("correct horse battery staple").unwrap();
        let b = CommunityKey::derive("correct horse battery staple").unwrap();
        let c = CommunityKey::derive("correct horse battery stapler").unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), c.public_key());
        // A fixed vector: the parameters and salt are part of the protocol.
        assert_eq!(
            a.public_key().to_base64(),
            "xt0Y0ZvH80EaFq0NUbB/FpOlHSTA+bGGewQOOIZ2eDI="
        );
    }

    #[test]
    fn an_empty_passphrase_is_refused() {
        assert_eq!(
            CommunityKey::derive("").unwrap_err(),
            CommunityKeyError::Empty
        );
    }
}
