//! Randomness for ICE: session ids, credentials, tie-breakers and STUN transaction ids.
//!
//! Everything here comes from ChaCha20 (a CSPRNG) keyed with 256 bits: from the OS in the
//! daemon ([`IceRandom::from_os`]), from a fixed seed in tests ([`IceRandom::from_seed`]), so a
//! test sees the same ids and credentials every run. Each purpose draws from its own stream:
//! the node's root generator only makes keys for the others, so nothing sent on the wire (a
//! transaction id, a session id, a tie-breaker) is output of the generator that made a
//! password, and ChaCha's output reveals nothing about its key or other streams anyway.
//! (The issue this replaced: one SplitMix64 made everything, and one transaction id carried a
//! whole raw output, from which every session's password could be computed.)

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Characters allowed in ICE ufrag and pwd (RFC 8445 `ice-char`, without `+` and `/`).
const ICE_CHARS: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Length of a generated username fragment: about 95 bits, above RFC 8445's 24.
const UFRAG_LEN: usize = 16;
/// Length of a generated password: about 131 bits, above RFC 8445's 128.
const PWD_LEN: usize = 22;

/// ChaCha stream numbers under one session key, one per purpose.
const STREAM_CREDENTIALS: u64 = 1;
const STREAM_SESSION_IDS: u64 = 2;
const STREAM_TIE_BREAKERS: u64 = 3;
const STREAM_CHECK_IDS: u64 = 4;

/// The node's root of ICE randomness: makes the keys of per-session generators and of the
/// STUN transaction-id stream.
#[derive(Debug, Clone)]
pub struct IceRandom {
    root: ChaCha20Rng,
}

impl IceRandom {
    /// Keyed from the OS's entropy: what the daemon uses.
    #[cfg(any(test, feature = "os-rng"))]
    pub fn from_os() -> Self {
        let mut key = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
        Self {
            root: ChaCha20Rng::from_seed(key),
        }
    }

    /// Keyed from a fixed `seed`, so ids and credentials repeat from run to run: for tests
    /// and simulations only (64 bits are guessable).
    pub fn from_seed(seed: u64) -> Self {
        Self {
            root: ChaCha20Rng::seed_from_u64(seed),
        }
    }

    /// A generator for one session, under a key of its own.
    pub(crate) fn session(&mut self) -> SessionRandom {
        SessionRandom::from_key(self.key())
    }

    /// A generator of STUN transaction ids, under a key of its own.
    pub(crate) fn transaction_ids(&mut self) -> TransactionIds {
        TransactionIds(ChaCha20Rng::from_seed(self.key()))
    }

    fn key(&mut self) -> [u8; 32] {
        let mut key = [0u8; 32];
        self.root.fill_bytes(&mut key);
        key
    }
}

/// A fixed test seed.
impl From<u64> for IceRandom {
    fn from(seed: u64) -> Self {
        Self::from_seed(seed)
    }
}

/// One session's randomness: separate streams for credentials, session ids and tie-breakers.
#[derive(Debug, Clone)]
pub struct SessionRandom {
    credentials: ChaCha20Rng,
    session_ids: ChaCha20Rng,
    tie_breakers: ChaCha20Rng,
    check_ids: ChaCha20Rng,
}

impl SessionRandom {
    fn from_key(key: [u8; 32]) -> Self {
        let stream = |number| {
            let mut rng = ChaCha20Rng::from_seed(key);
            rng.set_stream(number);
            rng
        };
        Self {
            credentials: stream(STREAM_CREDENTIALS),
            session_ids: stream(STREAM_SESSION_IDS),
            tie_breakers: stream(STREAM_TIE_BREAKERS),
            check_ids: stream(STREAM_CHECK_IDS),
        }
    }

    /// A fresh session id (published in offers).
    pub(crate) fn session_id(&mut self) -> u64 {
        self.session_ids.next_u64()
    }

    /// A fresh ICE tie-breaker (sent in every check).
    pub(crate) fn tie_breaker(&mut self) -> u64 {
        self.tie_breakers.next_u64()
    }

    /// The transaction ids of one ICE agent's connectivity checks: 96 bits each from a
    /// ChaCha20 stream under a key of its own (a new one per agent), handed to the patched
    /// `is` agent (`IceAgent::set_transaction_id_source`) in place of its `fastrand` ids.
    pub(crate) fn check_transaction_ids(&mut self) -> impl FnMut() -> [u8; 12] + Send + 'static {
        let mut key = [0u8; 32];
        self.check_ids.fill_bytes(&mut key);
        let mut ids = ChaCha20Rng::from_seed(key);
        move || {
            let mut id = [0u8; 12];
            ids.fill_bytes(&mut id);
            id
        }
    }

    /// Fresh ICE credentials: (ufrag, pwd).
    pub(crate) fn ice_credentials(&mut self) -> is::IceCreds {
        is::IceCreds {
            ufrag: ice_string(&mut self.credentials, UFRAG_LEN),
            pass: ice_string(&mut self.credentials, PWD_LEN),
        }
    }
}

/// A fixed test seed.
impl From<u64> for SessionRandom {
    fn from(seed: u64) -> Self {
        IceRandom::from_seed(seed).session()
    }
}

/// STUN transaction ids: 96 bits each (RFC 8489 §5), straight from a CSPRNG.
#[derive(Debug, Clone)]
pub(crate) struct TransactionIds(ChaCha20Rng);

impl TransactionIds {
    pub(crate) fn next_id(&mut self) -> u128 {
        let mut id = [0u8; 16];
        self.0.fill_bytes(&mut id[4..]);
        u128::from_be_bytes(id)
    }
}

fn ice_string(rng: &mut ChaCha20Rng, len: usize) -> String {
    // Rejection sampling keeps every character equally likely (62 does not divide 256).
    let limit = 256 - 256 % ICE_CHARS.len();
    let mut text = String::with_capacity(len);
    while text.len() < len {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        for byte in bytes {
            if usize::from(byte) < limit && text.len() < len {
                text.push(char::from(ICE_CHARS[usize::from(byte) % ICE_CHARS.len()]));
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_different_seeds_differ() {
        let mut a = IceRandom::from_seed(7).session();
        let mut b = IceRandom::from_seed(7).session();
        let mut c = IceRandom::from_seed(8).session();
        let first = a.session_id();
        assert_eq!(first, b.session_id());
        assert_ne!(first, c.session_id());
    }

    #[test]
    fn the_os_keys_every_node_differently() {
        let mut a = IceRandom::from_os();
        let mut b = IceRandom::from_os();
        assert_ne!(a.transaction_ids().next_id(), b.transaction_ids().next_id());
        assert_ne!(
            a.session().ice_credentials().pass,
            b.session().ice_credentials().pass
        );
    }

    #[test]
    fn sessions_and_purposes_draw_from_separate_streams() {
        let mut root = IceRandom::from_seed(1);
        let mut one = root.session();
        let mut two = root.session();
        assert_ne!(one.session_id(), two.session_id());
        assert_ne!(one.session_id(), one.tie_breaker());
    }

    #[test]
    fn transaction_ids_are_96_bits() {
        let mut ids = IceRandom::from_seed(3).transaction_ids();
        for _ in 0..100 {
            assert_eq!(ids.next_id() >> 96, 0);
        }
    }

    #[test]
    fn credentials_have_the_documented_lengths_and_alphabet() {
        let creds = IceRandom::from_seed(1).session().ice_credentials();
        assert_eq!(creds.ufrag.len(), 16);
        assert_eq!(creds.pass.len(), 22);
        assert!(
            creds
                .ufrag
                .bytes()
                .chain(creds.pass.bytes())
                .all(|b| b.is_ascii_alphanumeric())
        );
    }
}
