//! The session's own small random source: SplitMix64, seeded by the caller.
//!
//! Session ids, ICE credentials and the ICE tie-breaker come from here, so a test that fixes
//! the seed sees the same ids and credentials every run. Not for keys: nothing it makes is
//! secret beyond the ICE password, which only authenticates connectivity checks.

/// Characters allowed in ICE ufrag and pwd (RFC 8445 `ice-char`, without `+` and `/`).
const ICE_CHARS: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Length of a generated username fragment: about 95 bits, above RFC 8445's 24.
const UFRAG_LEN: usize = 16;
/// Length of a generated password: about 131 bits, above RFC 8445's 128.
const PWD_LEN: usize = 22;

/// SplitMix64 (Steele, Lea, Flood 2014): one u64 of state, full period, good enough mixing.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn ice_string(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| {
                let index = (self.next_u64() % ICE_CHARS.len() as u64) as usize;
                char::from(ICE_CHARS[index])
            })
            .collect()
    }

    /// Fresh ICE credentials: (ufrag, pwd).
    pub(super) fn ice_credentials(&mut self) -> is::IceCreds {
        is::IceCreds {
            ufrag: self.ice_string(UFRAG_LEN),
            pass: self.ice_string(PWD_LEN),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_different_seeds_differ() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let mut c = SplitMix64::new(8);
        let first = a.next_u64();
        assert_eq!(first, b.next_u64());
        assert_ne!(first, c.next_u64());
    }

    #[test]
    fn credentials_have_the_documented_lengths_and_alphabet() {
        let creds = SplitMix64::new(1).ice_credentials();
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
