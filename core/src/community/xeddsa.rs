//! XEdDSA (Signal's "XEdDSA and VXEdDSA" specification, rev. 1): Ed25519-style signatures
//! made with an X25519 private key and checked against its X25519 public key, so that a
//! member's WireGuard key alone proves who announced.
//!
//! Why it is needed: an announcement envelope is sealed to the community key, and every
//! passphrase holder has the community *private* key. crypto_box authenticates the sender only
//! to someone who does not hold the recipient's private key (the shared key X25519(s, C)
//! equals X25519(c, S)), so any holder could seal an envelope "from" any key. A signature by
//! the announced key closes that.
//!
//! Differences from the specification, both allowed by it: the nonce is deterministic,
//! `r = SHA-512(NONCE_DOMAIN || a || M) mod q` (like Ed25519's, keyed by the private scalar),
//! instead of mixing in 64 random bytes; verification is the specification's.

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use sha2::{Digest as _, Sha512};

use crate::keys::{PrivateKey, PublicKey};

/// Length of a signature: R (32) and s (32).
pub const SIGNATURE_LEN: usize = 64;
/// Hashed before the private scalar for the nonce, so it is never the plain Ed25519 hash.
const NONCE_DOMAIN: &[u8] = b"wice xeddsa nonce v1";

/// Signs `message` with `private` (an X25519 key).
pub fn sign(private: &PrivateKey, message: &[u8]) -> [u8; SIGNATURE_LEN] {
    let k = Scalar::from_bytes_mod_order(clamp_integer(private.to_bytes()));
    let edwards = &k * ED25519_BASEPOINT_TABLE;
    let compressed = edwards.compress();
    // The public Edwards key has sign bit 0; when kB's is 1, -k has the same y and sign 0.
    let a = if compressed.as_bytes()[31] & 0x80 != 0 {
        -k
    } else {
        k
    };
    let mut public = compressed.to_bytes();
    public[31] &= 0x7f;
    let r = Scalar::from_hash(
        Sha512::new()
            .chain_update(NONCE_DOMAIN)
            .chain_update(a.as_bytes())
            .chain_update(message),
    );
    let big_r = (&r * ED25519_BASEPOINT_TABLE).compress();
    let h = Scalar::from_hash(
        Sha512::new()
            .chain_update(big_r.as_bytes())
            .chain_update(public)
            .chain_update(message),
    );
    let s = r + h * a;
    let mut signature = [0u8; SIGNATURE_LEN];
    signature[..32].copy_from_slice(big_r.as_bytes());
    signature[32..].copy_from_slice(s.as_bytes());
    signature
}

/// True when `signature` is `public`'s (an X25519 key) over `message`.
pub fn verify(public: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    let Ok(signature) = <[u8; SIGNATURE_LEN]>::try_from(signature) else {
        return false;
    };
    let u = public.to_bytes();
    if !is_canonical_field_element(&u) {
        return false;
    }
    let Some(a) = MontgomeryPoint(u).to_edwards(0) else {
        return false;
    };
    if a.is_small_order() {
        return false;
    }
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signature[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&signature[32..]);
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    let h = Scalar::from_hash(
        Sha512::new()
            .chain_update(r_bytes)
            .chain_update(a.compress().as_bytes())
            .chain_update(message),
    );
    let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&-h, &a, &s);
    check.compress() == CompressedEdwardsY(r_bytes)
}

/// `u < 2^255 - 19`, as XEdDSA requires of a public key.
fn is_canonical_field_element(u: &[u8; 32]) -> bool {
    if u[31] & 0x80 != 0 {
        return false;
    }
    // The 19 values from p to 2^255 - 1: 0x7f, then 30 bytes of 0xff, then ≥ 0xed.
    let top_all_ones = u[31] == 0x7f && u[1..31].iter().all(|b| *b == 0xff);
    !(top_all_ones && u[0] >= 0xed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_the_x25519_public_key_and_nothing_else() {
        for seed in 0..32u8 {
            let private = PrivateKey::from_bytes([seed.wrapping_mul(37).wrapping_add(1); 32]);
            let public = private.public_key();
            let signature = sign(&private, b"hello");
            assert!(verify(&public, b"hello", &signature), "seed {seed}");
            assert!(!verify(&public, b"hellO", &signature));
            let other = PrivateKey::from_bytes([seed.wrapping_add(100); 32]).public_key();
            assert!(!verify(&other, b"hello", &signature));
            let mut bent = signature;
            bent[seed as usize % SIGNATURE_LEN] ^= 1;
            assert!(!verify(&public, b"hello", &bent));
        }
    }

    #[test]
    fn malformed_signatures_and_keys_are_refused_without_panicking() {
        let private = PrivateKey::from_bytes([9; 32]);
        let signature = sign(&private, b"m");
        assert!(!verify(&private.public_key(), b"m", &signature[..63]));
        assert!(!verify(&private.public_key(), b"m", &[0; SIGNATURE_LEN]));
        assert!(!verify(&PublicKey::from_bytes([0; 32]), b"m", &signature));
        assert!(!verify(
            &PublicKey::from_bytes([0xff; 32]),
            b"m",
            &signature
        ));
        // s ≥ q is not canonical.
        let mut big_s = signature;
        big_s[32..].copy_from_slice(&[0xff; 32]);
        assert!(!verify(&private.public_key(), b"m", &big_s));
    }
}
